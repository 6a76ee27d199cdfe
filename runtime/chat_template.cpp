// `sailvl-chat` prompt building (see chat_template.h). Source of the rules: InternVL's
// modeling_internvl_chat.py chat() (image prefix, in-order '<image>' replacement over the whole
// query, history of un-expanded questions) and conversation.py's template as SAIL-VL configures it
// (docs/MODEL.md §11: "<|im_end|>" separators without newlines).
//
// Steps:
//   1. validate inputs (UTF-8, tiles > 0);
//   2. add the image prefix to a first-turn question without "<image>";
//   3. lay the conversation out as parts: text, or a control token by id;
//   4. expand every "<image>" inside text parts into <img> <IMG_CONTEXT>... </img> control parts and
//      check that markers and images match;
//   5. encode runs of adjacent text in one call each (special parsing off unless asked) and
//      concatenate with the control ids; render the same parts as text for debugging.
#include "runtime/chat_template.h"

#include <string_view>

#include "tensor/error.h"

namespace sailvl::runtime {

using tokenizer::TokenId;

const char* const kSailSystemMessage =
    "你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。";

static constexpr std::string_view kImageMarker = "<image>";

ChatTokens ChatTokens::from(const tokenizer::Tokenizer& tok) {
  return {tok.require_added_token("<|im_start|>"), tok.require_added_token("<|im_end|>"),
          tok.require_added_token("<img>"), tok.require_added_token("</img>"),
          tok.require_added_token("<IMG_CONTEXT>")};
}

namespace {

// A piece of the conversation: text to tokenize, or `count` copies of a control token.
struct Part {
  std::string text;
  TokenId token = -1;
  int64_t count = 1;
};

void check_text(std::string_view s, const std::string& what) {
  if (auto off = tokenizer::find_invalid_utf8(s))
    fail(ErrorKind::BadTokenizer, what, ": invalid UTF-8 at byte offset ", *off);
}

int64_t count_markers(std::string_view s) {
  int64_t n = 0;
  for (size_t p = s.find(kImageMarker); p != std::string_view::npos; p = s.find(kImageMarker, p + kImageMarker.size()))
    ++n;
  return n;
}

// Step 2: InternVL adds "<image>\n" only on the first turn, only when the question has no marker.
std::string with_image_prefix(const ChatRequest& req) {
  if (!req.history.empty()) return req.question;
  return question_with_images(req.question, static_cast<int64_t>(req.tiles.size()), /*first_turn=*/true, req.layout);
}

// Step 3: the template as parts.
std::vector<Part> layout_conversation(const ChatRequest& req, const std::string& question, const ChatTokens& ct) {
  std::vector<Part> parts;
  auto text = [&](std::string s) { parts.push_back({std::move(s), -1, 1}); };
  auto control = [&](TokenId id) { parts.push_back({"", id, 1}); };
  control(ct.im_start);
  text("system\n" + req.system_message.value_or(kSailSystemMessage));
  control(ct.im_end);
  for (const ChatTurn& turn : req.history) {
    control(ct.im_start);
    text("user\n" + turn.question);
    control(ct.im_end);
    control(ct.im_start);
    text("assistant\n" + turn.answer);
    control(ct.im_end);
  }
  control(ct.im_start);
  text("user\n" + question);
  control(ct.im_end);
  control(ct.im_start);
  text("assistant\n");
  return parts;
}

// Step 4: replace the k-th marker (in reading order, across all text) with image k's tokens.
std::vector<Part> expand_images(const std::vector<Part>& parts, const ChatRequest& req, const ChatTokens& ct) {
  int64_t markers = 0;
  for (const Part& p : parts) markers += count_markers(p.text);
  const int64_t images = static_cast<int64_t>(req.tiles.size());
  SAILVL_CHECK(markers == images, Usage, "the prompt has ", markers, " \"<image>\" marker", markers == 1 ? "" : "s",
               " but ", images, " image", images == 1 ? " was" : "s were",
               " given (each image needs exactly one marker, in order)");
  if (images == 0) return parts;
  std::vector<Part> out;
  size_t k = 0;
  for (const Part& p : parts) {
    if (p.token >= 0) {
      out.push_back(p);
      continue;
    }
    size_t from = 0;
    for (size_t m = p.text.find(kImageMarker); m != std::string::npos; m = p.text.find(kImageMarker, from)) {
      if (m > from) out.push_back({p.text.substr(from, m - from), -1, 1});
      out.push_back({"", ct.img_start, 1});
      out.push_back({"", ct.img_context, req.num_image_token * req.tiles[k++]});
      out.push_back({"", ct.img_end, 1});
      from = m + kImageMarker.size();
    }
    if (from < p.text.size()) out.push_back({p.text.substr(from), -1, 1});
  }
  return out;
}

}  // namespace

std::string question_with_images(const std::string& question, int64_t images, bool first_turn, ImageLayout layout) {
  if (images == 0 || question.find(kImageMarker) != std::string::npos) return question;
  std::string prefix;
  if (!first_turn) {  // a picture attached to a follow-up question gets its own marker
    for (int64_t k = 0; k < images; ++k) prefix += "<image>\n";
    return prefix + question;
  }
  if (layout == ImageLayout::Auto) layout = images == 1 ? ImageLayout::Single : ImageLayout::MultiImage;
  if (layout == ImageLayout::Single) {
    prefix = "<image>\n";
  } else {
    const char* label = layout == ImageLayout::Video ? "Frame-" : "Image-";
    for (int64_t k = 1; k <= images; ++k) prefix += str_cat(label, k, ": <image>\n");
  }
  return prefix + question;
}

// Step 5 and the whole pipeline.
ChatPrompt build_chat_prompt(const tokenizer::Tokenizer& tok, const ChatRequest& req) {
  check_text(req.question, "question");
  if (req.system_message) check_text(*req.system_message, "system message");
  for (size_t i = 0; i < req.history.size(); ++i) {
    check_text(req.history[i].question, str_cat("history[", i, "].question"));
    check_text(req.history[i].answer, str_cat("history[", i, "].answer"));
  }
  SAILVL_CHECK(req.num_image_token > 0, Usage, "num_image_token must be positive, got ", req.num_image_token);
  for (size_t i = 0; i < req.tiles.size(); ++i)
    SAILVL_CHECK(req.tiles[i] > 0 && req.tiles[i] <= 1024, Usage, "image ", i + 1, " has ", req.tiles[i],
                 " tiles (expected 1..1024)");

  const ChatTokens ct = ChatTokens::from(tok);
  ChatPrompt out;
  out.question = with_image_prefix(req);
  const std::vector<Part> parts = expand_images(layout_conversation(req, out.question, ct), req, ct);

  tokenizer::EncodeOptions opt;
  opt.parse_special = req.parse_special;
  std::string run;  // adjacent text, encoded in one call so BPE sees what HF sees
  auto flush = [&] {
    if (run.empty()) return;
    const auto ids = tok.encode(run, opt);
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
    run.clear();
  };
  for (const Part& p : parts) {
    if (p.token < 0) {
      run += p.text;
      out.rendered += p.text;
      continue;
    }
    flush();
    out.ids.insert(out.ids.end(), static_cast<size_t>(p.count), p.token);
    const std::string& spelling = tok.token_bytes(p.token);
    for (int64_t i = 0; i < p.count; ++i) out.rendered += spelling;
    if (p.token == ct.img_context) out.image_context_tokens += p.count;
  }
  flush();
  return out;
}

int64_t max_prompt_tokens(const ChatRequest& req) {
  const ChatTokens placeholder{0, 0, 0, 0, 0};  // ids do not matter: only parts are counted
  int64_t n = 0;
  for (const Part& p : layout_conversation(req, with_image_prefix(req), placeholder))
    n += p.token < 0 ? 3 * static_cast<int64_t>(p.text.size()) : p.count;
  for (int64_t t : req.tiles) n += 2 + req.num_image_token * t;  // <img> <IMG_CONTEXT> x 256·t </img>
  return n;
}

void append_turn(std::vector<ChatTurn>& history, const ChatPrompt& prompt, std::string answer) {
  history.push_back({prompt.question, std::move(answer)});
}

}  // namespace sailvl::runtime
