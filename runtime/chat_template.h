// The `sailvl-chat` conversation template (docs/MODEL.md §11) and InternVL's image expansion.
//
// Rendering (separator "<|im_end|>" with no newline after it):
//   <|im_start|>system\n{SYS}<|im_end|>
//   for each (q, a) in history:  <|im_start|>user\n{q}<|im_end|><|im_start|>assistant\n{a}<|im_end|>
//   <|im_start|>user\n{question}<|im_end|><|im_start|>assistant\n
// Images (InternVL chat(), modeling_internvl_chat.py):
//   - first turn (empty history) with images and no "<image>" in the question: a prefix is added —
//     "<image>\n" for one image (ImageLayout::Auto/Single), "Image-1: <image>\nImage-2: <image>\n..."
//     for ImageLayout::MultiImage (and Auto with several images), "Frame-1: <image>\n..." for Video;
//   - in the rendered query (history included, as InternVL does with query.replace('<image>', ..., 1)),
//     the k-th "<image>" becomes <img> + <IMG_CONTEXT> x num_image_token x tiles[k] + </img>.
//   The number of "<image>" markers must equal the number of images (InternVL silently ignores the
//   surplus; we refuse: Error(Usage)).
// Token ids are built as segments: template and user text are encoded with special-token parsing OFF
// (a user typing "<|im_end|>" gets text tokens), control tokens are inserted by id. Adjacent text is
// joined before encoding so BPE sees the same pieces Hugging Face sees between control tokens.
// History stores the un-expanded question.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace sailvl::runtime {

// SAIL-VL's default system message (UniVL), docs/MODEL.md §11.
extern const char* const kSailSystemMessage;

enum class ImageLayout {
  Auto,        // one image: "<image>\n" prefix; several: "Image-k: <image>\n" prefixes
  Single,      // "<image>\n" prefix for exactly one image (InternVL's "combined images" mode:
               // pass the summed tiles as one image)
  MultiImage,  // "Image-1: <image>\nImage-2: <image>\n..."
  Video,       // "Frame-1: <image>\nFrame-2: <image>\n..." (one image per frame)
};

struct ChatTurn {
  std::string question;  // un-expanded (may contain "<image>")
  std::string answer;
};

struct ChatRequest {
  std::string question;
  std::vector<ChatTurn> history;
  std::vector<int64_t> tiles;  // tiles per image, in order; empty = text only
  ImageLayout layout = ImageLayout::Auto;
  std::optional<std::string> system_message;  // default kSailSystemMessage
  int64_t num_image_token = 256;              // <IMG_CONTEXT> per tile (config num_image_token)
  bool parse_special = false;                 // HF behaviour for user text (--parse-special)
};

struct ChatPrompt {
  std::vector<tokenizer::TokenId> ids;  // the prompt, ending with "<|im_start|>assistant\n"
  std::string rendered;                 // the expanded prompt as text (debugging; not re-tokenised)
  std::string question;                 // the question as stored in history (with any added prefix)
  int64_t image_context_tokens = 0;     // number of <IMG_CONTEXT> ids == 256 x total tiles
};

// Control-token ids looked up once from the tokenizer (Error(BadTokenizer) if one is missing).
struct ChatTokens {
  tokenizer::TokenId im_start, im_end, img_start, img_end, img_context;
  static ChatTokens from(const tokenizer::Tokenizer& tok);
};

// Builds the prompt for one `chat()` call. Throws Error(Usage) on marker/image count mismatch,
// non-positive tiles, or invalid UTF-8 in the question/history (BadTokenizer, with byte offset).
ChatPrompt build_chat_prompt(const tokenizer::Tokenizer& tok, const ChatRequest& req);

// An upper bound on build_chat_prompt(tok, req).ids.size() that needs no tokenizer (the memory
// preflight runs before one is needed): every control token counts one, each image its
// <img>, </img> and num_image_token × tiles, and text 3 tokens per byte — a byte-level BPE token
// covers at least one byte, and NFC normalisation grows UTF-8 text at most 3× (UAX #15).
int64_t max_prompt_tokens(const ChatRequest& req);

// The question as a conversation stores it when `images` pictures come with it: on the first turn
// chat()'s prefix ("<image>\n" for one, "Image-k: <image>\n" for several, "Frame-k: ..." for
// video), on a later turn "<image>\n" per picture (how sailvl places pictures sent mid-conversation);
// a question that already holds "<image>" markers is left as it is.
std::string question_with_images(const std::string& question, int64_t images, bool first_turn, ImageLayout layout);

// Appends the finished turn to a history (question as returned in ChatPrompt::question).
void append_turn(std::vector<ChatTurn>& history, const ChatPrompt& prompt, std::string answer);

}  // namespace sailvl::runtime
