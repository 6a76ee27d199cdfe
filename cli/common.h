// What `sailvl run`, `chat`, `serve` and `bench` share: the model-directory lookup (a path or a
// Hugging Face cache entry), the flags (llama.cpp spellings), loading with the memory preflight and
// progress, images decoded before anything heavy, the generation options, Ctrl-C, the summary line.
#pragma once

#include <atomic>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/progress.h"
#include "image/image.h"
#include "model/sail_vl.h"
#include "runtime/generate.h"
#include "runtime/memory_plan.h"
#include "runtime/profile.h"
#include "runtime/session.h"
#include "runtime/trace.h"
#include "tensor/storage.h"

namespace sailvl::cli {

// `-m` as given: an existing directory, or ORG/NAME found in the local Hugging Face cache
// ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub: models--ORG--NAME/snapshots/REV,
// REV from refs/main when present). Never touches the network. A file (a .gguf, a .safetensors) is
// refused as such. Throws BadModel with the places tried.
std::string resolve_model_dir(const std::string& arg);

// -m, --device, -t/--threads, -v, -q
void add_model_flags(Args& a);
// -n, --temp, --top-k, --top-p, --repeat-penalty, --seed, -c/--ctx-size
void add_generation_flags(Args& a);
// -i, --max-tiles, --frames
void add_image_flags(Args& a);
// --profile, --trace, --trace-layers
void add_observe_flags(Args& a);

// --device cpu|cuda|auto (auto: cuda when usable) for the checkpoint in `model_dir`. A quantised
// checkpoint runs on the CPU only (auto picks it; cuda is ErrorKind::BadModel, exit 3).
Device pick_device(const Args& a, const std::string& model_dir);

// Tiles one image can become at most: --max-tiles plus the thumbnail (added when the grid has more
// than one tile); one per frame with --frames.
int64_t max_tiles_per_image(const Args& a);
void apply_threads(const Args& a);
// Every generation flag, parsed and checked (NaN, ranges) before anything is loaded.
runtime::GenerationOptions generation_options(const Args& a);
image::PreprocessOptions preprocess_options(const Args& a);

// Decode image files for a session (hash for /save, tiles later); --frames marks them video frames.
// ErrorKind::BadImage naming the file (a directory, a missing file, an undecodable one).
std::vector<runtime::ImageInput> read_images(const Args& a, const std::vector<std::string>& paths);

// Load `dir` on `device` for this workload: the memory preflight (run/chat/serve flags: context,
// -n, tiles, sequences; SAILVL_FAKE_FREE_BYTES=N makes it assume N free bytes, for tests), progress
// on stderr (the page cache filled from disk on the CPU, the upload on a GPU), and one-line
// warnings for random-weight checkpoints (made by make-model) and for -c above the model's
// max_position_embeddings.
model::SailVL load_model(const Args& a, const std::string& dir, const Device& device, const runtime::Workload& w);
runtime::Workload workload(const Args& a, int64_t tiles, int64_t prompt_tokens, int64_t sequences = 1);

// Session options from the flags (-c, --max-tiles, --frames, --image-cache, --system, --parse-special).
runtime::SessionOptions session_options(const Args& a);
// Generation progress (vision layers, prefill tokens) on `p`.
void attach_progress(runtime::GenerationOptions& g, Progress& p);

// Verbosity: 0 quiet, 1 normal, 2 verbose.
int verbosity(const Args& a);
void log(int level, const Args& a, const std::string& line);  // to stderr when verbosity >= level

// Ctrl-C. While busy (a turn runs): the first press sets the flag, which stops the running stage
// within a layer; a second press exits at once with 130. While idle (a prompt waits for input): a
// press prints a hint, and a second one within 2 s exits with 130.
void install_interrupt_handler();
void set_busy(bool busy);
const std::atomic<bool>& interrupted();
void clear_interrupt();
// Stop generation without a signal (e.g. stdout closed by `| head`): sets the same flag.
void request_stop();

// One-line summary: prompt tokens (cached), image tiles (encoded), TTFT split, decode tok/s.
std::string summary_line(const runtime::Timings& t);
// --json fields shared by run and chat (text, tokens, counts, stop and finish reason, timings, and
// the profile when given).
std::string turn_json(const runtime::GenerationResult& r, const std::string& text, int64_t turn = -1,
                      const nlohmann::ordered_json* profile = nullptr);

// What --profile or --trace asks for (runtime/profile.h, runtime/trace.h). The flags are checked
// when it is made, before anything loads; begin() installs the observer on this thread (once: made
// after the load, so loading is neither profiled nor traced) and starts a profiled span; end()
// closes it (if stop() has not), prints the profile table on stderr and returns its JSON (null
// without --profile). The
// limits are measured at the first end() (after the answer, so the probes do not disturb it).
class Observation {
 public:
  explicit Observation(const Args& a);
  ~Observation();
  bool profiling() const { return profiler_ != nullptr; }
  void begin(const Device& device);
  void stop();  // ends the span now (end() ends it if this was not called)
  nlohmann::ordered_json end();

 private:
  bool profile_ = false, trace_ = false;
  runtime::TraceOptions trace_opt_;
  Device device_;
  std::unique_ptr<runtime::Profiler> profiler_;
  std::unique_ptr<runtime::Tracer> tracer_;
  std::optional<ObserverScope> scope_;
  std::optional<runtime::Limits> limits_;
};

}  // namespace sailvl::cli
