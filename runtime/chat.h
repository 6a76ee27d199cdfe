// chat(): the model card's `model.chat(tokenizer, pixel_values, question, generation_config,
// history, return_history)` (InternVLChatModel.chat in SAIL-VL's remote code).
//
//   prompt   = sailvl-chat template over history + question, "<image>" expanded to
//              <img><IMG_CONTEXT>×256×tiles</img> (runtime/chat_template.h)
//   tokens   = generate(prompt, pixels)                       (runtime/generate.h)
//   response = decode(tokens, skip special) cut at <|im_end|>, stripped
//   history += (question as stored — un-expanded, with any "<image>\n" prefix added — , response)
#pragma once

#include <string>
#include <vector>

#include "image/image.h"
#include "model/sail_vl.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"

namespace sailvl::runtime {

struct ChatResult {
  std::string response;
  std::vector<ChatTurn> history;    // the input history plus this turn
  std::vector<int64_t> prompt_ids;  // what was fed to the model
  GenerationResult generation;
};

// `images`: pixels and tiles per image (image::preprocess_images), or nullptr for text only.
ChatResult chat(const model::SailVL& model, const std::string& question, const image::PixelBatch* images,
                const std::vector<ChatTurn>& history, const GenerationOptions& opt,
                ImageLayout layout = ImageLayout::Auto);

// The card's post-processing: cut at the first "<|im_end|>" and strip ASCII whitespace
// (Python's str.strip() also strips other Unicode spaces; see chat.cpp).
std::string clean_response(const std::string& decoded);

}  // namespace sailvl::runtime
