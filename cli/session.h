// What `sailvl run`, `sailvl chat` and `sailvl bench` share: the model-directory lookup (a path or
// a Hugging Face cache entry), the generation flags (llama.cpp spellings), device selection,
// logging verbosity and the Ctrl-C handling.
#pragma once

#include <atomic>
#include <string>

#include "cli/command.h"
#include "image/image.h"
#include "runtime/generate.h"
#include "tensor/storage.h"

namespace sailvl::cli {

// `-m` as given: an existing directory, or ORG/NAME found in the local Hugging Face cache
// ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub: models--ORG--NAME/snapshots/REV,
// REV from refs/main when present). Never touches the network. Throws BadModel with the places tried.
std::string resolve_model_dir(const std::string& arg);

// -m, --device, --threads, -v, --quiet
void add_model_flags(Args& a);
// -n, --temp, --top-k, --top-p, --repeat-penalty, --seed, --ctx-size
void add_generation_flags(Args& a);
// -i, --max-tiles, --frames
void add_image_flags(Args& a);

Device pick_device(const Args& a);  // --device cpu|cuda|auto (auto: cuda when usable)

// Tiles one image can become at most: --max-tiles plus the thumbnail (added when the grid has more
// than one tile); one per frame with --frames.
int64_t max_tiles_per_image(const Args& a);
// model::SailVL::load options with the memory preflight for this command's flags: context (-c),
// new tokens (-n), `tiles` image tiles per request and the CPU threads. `prompt_tokens` bounds the
// prompt when it is known before loading (run), 0 when not (chat: the history grows to the context).
// SAILVL_FAKE_FREE_BYTES=N (for tests) makes the preflight assume N bytes of free memory.
model::LoadOptions load_options(const Args& a, int64_t tiles, int64_t prompt_tokens);
void apply_threads(const Args& a);
runtime::GenerationOptions generation_options(const Args& a);
image::PreprocessOptions preprocess_options(const Args& a);
// Preprocess the -i images (or --frames video frames); empty batch when none.
// Decoded and tiled as the card does; BF16 when the model runs on a GPU.
image::PixelBatch load_images(const Args& a, const std::vector<std::string>& paths, const Device& device);

// Verbosity: 0 quiet, 1 normal, 2 verbose.
int verbosity(const Args& a);
void log(int level, const Args& a, const std::string& line);  // to stderr when verbosity >= level

// Ctrl-C: the first SIGINT sets the flag (generation stops and keeps its partial answer); a second
// exits at once with 130.
void install_interrupt_handler();
const std::atomic<bool>& interrupted();
void clear_interrupt();
// Stop generation without a signal (e.g. stdout closed by `| head`): sets the same flag.
void request_stop();

// One-line summary: prompt tokens, image tiles, TTFT split, decode tok/s.
std::string summary_line(const runtime::Timings& t);

}  // namespace sailvl::cli
