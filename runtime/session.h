// The session engine: a conversation with the model that remembers what it has computed.
//
//   runtime::Session s(model, {.context = 8192});
//   s.ask("What is in the picture?", {runtime::ImageInput::from_file("cat.jpg")}, gen);   // vision + prefill
//   s.ask("And what colour is it?", {}, gen);     // prefills only the new text, no vision work
//
// A turn does what the card's model.chat(question, history=...) does, and keeps what it can:
//   1. render the whole conversation exactly as chat() would (history re-rendered, "<image>"
//      expanded to 256 × tiles <IMG_CONTEXT>; runtime/chat_template.h) and tokenize it;
//   2. find the longest common prefix with the tokens the KV cache holds, drop the rest and
//      prefill only the remainder, in chunks (runtime/sequence.h) — chat() re-tokenizes the answer
//      it stored in the history, so the prefix may end inside the previous answer: that is fine;
//   3. image rows come from the image-embedding cache (runtime/image_cache.h); only a picture not
//      seen before (with these tiling parameters) goes through the vision tower;
//   4. decode (runtime/generate.h: Decoder), streaming.
// Results are those of recomputing every turn from scratch (the tests check it token by token).
//
// Nothing is lost on failure: a turn that throws (bad image, prompt over the context, cancelled
// during vision or prefill) or is cancelled during decoding leaves the conversation as it was
// before the turn; the KV cache keeps a valid prefix, which the next turn reuses.
//
// Images attached after the first turn get their own "<image>\n" marker on that turn's question
// (the first turn gets chat()'s prefix from the template), so markers and images stay in step.
// A Session is used by one thread at a time; the image cache may be shared (the server does).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"
#include "model/sail_vl.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "runtime/image_cache.h"
#include "runtime/sequence.h"

namespace sailvl::runtime {

// One picture of the conversation.
struct ImageInput {
  std::string source;                          // a path, or a label ("data URL #2") for errors and /save
  std::string sha256;                          // of the source file's bytes when known (/save, /load)
  std::shared_ptr<const image::RgbImage> rgb;  // the decoded picture
  int64_t max_tiles = 0;                       // 0: the session's PreprocessOptions::max_tiles
  bool frame = false;                          // a video frame: one tile, no thumbnail
  std::string key;                             // image_key(...).hex under the session's tiling; set by it

  // Reads, hashes and decodes `path` (ErrorKind::BadImage naming it).
  static ImageInput from_file(const std::string& path, const image::ImageLimits& limits = {});
};

// Tiles `img` becomes under `pp` (its own max_tiles or frame flag first): the grid + a thumbnail.
image::PreprocessOptions preprocess_for(const ImageInput& img, const image::PreprocessOptions& pp);
int64_t image_tiles(const ImageInput& img, const image::PreprocessOptions& pp);

// A rendered prompt ready for a Sequence: ids, and a tag per <IMG_CONTEXT> naming its picture and
// row (runtime/sequence.h), the first placeholder of each image, the total tiles.
struct PreparedPrompt {
  ChatPrompt prompt;
  std::vector<int64_t> ids;
  std::vector<uint64_t> tags;
  std::vector<int64_t> first_row;
  int64_t tiles = 0;
};
// Renders `req` (its tiles are computed from `images`, which are all the pictures of the prompt in
// order) and tags the placeholders; sets each image's key. Throws like build_chat_prompt.
PreparedPrompt prepare_prompt(const model::SailVL& m, ChatRequest req, std::vector<ImageInput>& images,
                              const image::PreprocessOptions& pp);

struct SessionOptions {
  int64_t context = 0;                        // tokens the conversation may hold; 0 = max_position_embeddings
  image::PreprocessOptions preprocess;        // max_tiles etc. (dtype follows the device)
  std::shared_ptr<ImageCache> image_cache;    // shared cache, or nullptr: the session makes its own
  uint64_t image_cache_bytes = 0;             // its bound when the session makes it; 0 = the device default
  std::optional<std::string> system_message;  // nullopt = SAIL-VL's default (kSailSystemMessage)
  ImageLayout layout = ImageLayout::Auto;     // ImageLayout::Video for frames
  bool parse_special = false;                 // HF behaviour for user text (--parse-special)
  int64_t prefill_chunk = 0;                  // 0 = prefill_chunk_tokens(device)
};

struct TurnResult {
  std::string response;         // the card's post-processing of the answer (cut, stripped)
  GenerationResult generation;  // tokens, stop reason, timings (prompt, cached, encoded tiles)
  int64_t turn = 0;             // 1-based number of this turn in the conversation (0 if not kept)
  bool kept = false;            // appended to the history (false when cancelled)
};

class Session {
 public:
  Session(const model::SailVL& m, SessionOptions opt = {});

  // One turn. `images`: pictures attached with this question (in order). Throws on bad input
  // (ErrorKind names it) and on cancellation during vision or prefill (ErrorKind::Cancelled); the
  // conversation is then unchanged. A turn cancelled while decoding returns its partial answer with
  // stop == Cancelled and is not kept.
  TurnResult ask(const std::string& question, std::vector<ImageInput> images, const GenerationOptions& gen);

  // Forget the conversation (history and its images); the system message, the image cache and the
  // cached system prompt stay.
  void reset();
  // A new system message starts a new conversation.
  void set_system(std::optional<std::string> system);
  // Restore a saved conversation (its images decoded again by the caller). The KV cache is rebuilt
  // by the next turn.
  void restore(std::optional<std::string> system, std::vector<ChatTurn> history, std::vector<ImageInput> images);

  const std::vector<ChatTurn>& history() const { return history_; }
  const std::vector<ImageInput>& images() const { return images_; }
  const std::optional<std::string>& system() const { return opt_.system_message; }
  const Sequence& sequence() const { return seq_; }
  ImageCache& image_cache() { return *cache_; }
  int64_t context() const { return seq_.context(); }
  int64_t vision_passes() const { return vision_passes_; }  // encode_images calls so far

  // The prompt the next turn would feed for `question` with `images` appended (tests, tokenize).
  ChatPrompt render(const std::string& question, const std::vector<ImageInput>& images) const;

 private:
  // This turn's request: history, system message and `question` with markers for `new_images`.
  ChatRequest request(const std::string& question, size_t new_images) const;
  // The projector rows of image `i` of `all`: from the cache or encoded now (timings in `tm`).
  Tensor rows_of(const ImageInput& img, Timings& tm, const model::RunControl& ctl);
  // With taps (sailvl run --dump): every image of the prompt encoded in one pass, stages written.
  ImageRows encode_for_taps(const std::vector<ImageInput>& all, Timings& tm, const model::RunControl& ctl,
                            const Taps& taps);

  const model::SailVL* m_;
  SessionOptions opt_;
  std::shared_ptr<ImageCache> cache_;
  Sequence seq_;
  std::vector<ChatTurn> history_;
  std::vector<ImageInput> images_;
  int64_t vision_passes_ = 0;
};

}  // namespace sailvl::runtime
