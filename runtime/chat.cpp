// chat(): see chat.h.
#include "runtime/chat.h"

namespace sailvl::runtime {

std::string clean_response(const std::string& decoded) {
  std::string s = decoded;
  const size_t cut = s.find("<|im_end|>");  // `response.split(template.sep.strip())[0]`
  if (cut != std::string::npos) s.resize(cut);
  // Python's str.strip(): ASCII whitespace plus the Unicode spaces; we strip the ASCII ones and
  // U+00A0/U+3000-style spaces are kept (they never end a Qwen2 reply in practice).
  const char* ws = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

ChatResult chat(const model::SailVL& model, const std::string& question, const image::PixelBatch* images,
                const std::vector<ChatTurn>& history, const GenerationOptions& opt, ImageLayout layout) {
  ChatRequest req;
  req.question = question;
  req.history = history;
  req.layout = layout;
  req.num_image_token = model.image_tokens_per_tile();
  if (images) req.tiles = images->tiles_per_image;
  const ChatPrompt prompt = build_chat_prompt(model.tokenizer(), req);

  ChatResult r;
  r.prompt_ids.assign(prompt.ids.begin(), prompt.ids.end());
  r.generation = generate(model, r.prompt_ids, images ? images->pixels : Tensor(), opt);
  // Decode the new tokens with special tokens skipped (the stop token is one of them).
  std::vector<tokenizer::TokenId> ids(r.generation.tokens.begin(), r.generation.tokens.end());
  r.response = clean_response(model.tokenizer().decode(ids, /*skip_special=*/true));
  r.history = history;
  append_turn(r.history, prompt, r.response);
  return r;
}

}  // namespace sailvl::runtime
