// The request path of `sailvl serve`, without any HTTP: an OpenAI chat-completions JSON body →
// a validated request → the rendered prompt and decoded images, ready for the scheduler. The HTTP
// layer (server/http.cpp) and the fuzzer (tests/fuzz/fuzz_request.cpp) both go through here.
//
// The body (OpenAI's schema; unknown fields are ignored, as OpenAI's own server does):
//   messages         [{role: system|user|assistant, content: string | [parts]}], at most one
//                    system message and only first, then user/assistant alternating, ending with a
//                    user message; parts are {"type":"text","text":...} and
//                    {"type":"image_url","image_url":{"url":...}} (user messages only), where the
//                    url is data:image/...;base64,... or, under --allow-files DIR, file:///path;
//                    nothing is ever fetched from the network
//   max_tokens | max_completion_tokens, temperature, top_p, seed, stop (string or list), stream,
//   stream_options.include_usage, n (1 only); extensions top_k, repetition_penalty, max_tiles
// A message's text parts are joined with "\n". Pictures are placed as `sailvl chat` places them
// (runtime::question_with_images): the first user message gets chat()'s prefix, a later one
// "<image>\n" per picture, unless its text holds "<image>" markers, so a conversation sent here
// renders to the same ids as the same conversation in `sailvl chat`.
//
// Every violation is an HttpError with the OpenAI error object's fields: status 400
// (invalid_request_error, `param` naming the field), 413 (body too large).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "image/image.h"
#include "model/sail_vl.h"
#include "runtime/generate.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"

namespace sailvl::server {

struct HttpError : std::runtime_error {
  int status;
  std::string type, param, code;
  HttpError(int status, const std::string& message, std::string param = "", std::string type = "invalid_request_error",
            std::string code = "")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
};

struct Limits {
  size_t max_body_bytes = size_t{32} << 20;          // larger bodies: 413
  int64_t max_images = 16;                           // pictures per request
  int64_t max_tiles = 10;                            // the default tiles per picture and the cap of max_tiles
  std::optional<std::filesystem::path> allow_files;  // file:// URLs must resolve under it
  image::ImageLimits image;                          // file size, sides, pixels, aspect
};

struct ChatCompletion {
  std::optional<std::string> system;
  std::vector<runtime::ChatTurn> history;   // (question as stored, answer) pairs
  std::string question;                     // the last user message, markers placed
  std::vector<runtime::ImageInput> images;  // every picture of the conversation, in order
  runtime::GenerationOptions gen;           // sampling, max_new_tokens, stop strings
  bool stream = false;
  bool include_usage = false;
  int64_t max_tiles = 10;
  std::string model;  // echoed back
};

// `default_max_tokens`: when the body gives none (the server's -n); every answer is also capped by
// the context (the Decoder stops there).
ChatCompletion parse_chat_completion(std::string_view body, const Limits& lim, int64_t default_max_tokens);

// The scheduler's job for a parsed request: the prompt rendered with the model's tokenizer and the
// images' tiling (errors: HttpError 400 for a marker/image mismatch or a prompt over the context).
runtime::Job make_job(const model::SailVL& m, ChatCompletion& c, int64_t context);

// "data:image/png;base64,...." -> bytes (HttpError 400 when malformed).
std::vector<uint8_t> decode_data_url(std::string_view url, const std::string& param);

}  // namespace sailvl::server
