// The server's request path without HTTP: a chat-completions JSON body -> validated request (every
// field, the messages' order, data-URL images decoded) -> the rendered prompt. Outcomes allowed: a
// prompt whose <IMG_CONTEXT> count is 256 x the images' tiles, or server::HttpError (4xx), or
// sailvl::Error; a crash, a sanitizer report or any other exception is a finding.
#include "runtime/chat_template.h"
#include "runtime/session.h"
#include "server/request.h"
#include "tests/fuzz/fuzz_common.h"
#include "tokenizer/tokenizer.h"

using namespace sailvl;

static const tokenizer::Tokenizer& tok() {
  static const tokenizer::Tokenizer t = tokenizer::Tokenizer::load(fuzz_source_dir() + "/tests/data/sailvl-tokenizer");
  return t;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tok();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  server::Limits lim;
  lim.max_body_bytes = 1 << 20;
  lim.max_images = 4;
  lim.max_tiles = 4;
  lim.image.max_pixels = 4 << 20;  // keep decoding cheap: a fuzzer's picture has no reason to be big
  try {
    server::ChatCompletion c = server::parse_chat_completion(as_text(data, size), lim, 16);
    SAILVL_FUZZ_EXPECT(c.gen.max_new_tokens >= 1 && static_cast<int64_t>(c.images.size()) <= lim.max_images);
    runtime::ChatRequest req;
    req.question = c.question;
    req.history = c.history;
    req.system_message = c.system;
    image::PreprocessOptions pp;
    pp.max_tiles = c.max_tiles;
    int64_t tiles = 0;
    for (const auto& img : c.images) {
      req.tiles.push_back(runtime::image_tiles(img, pp));
      tiles += req.tiles.back();
    }
    const auto p = runtime::build_chat_prompt(tok(), req);
    const auto ctx = tok().require_added_token("<IMG_CONTEXT>");
    int64_t count = 0;
    for (auto id : p.ids) {
      SAILVL_FUZZ_EXPECT(id >= 0 && id < tok().size());
      count += id == ctx;
    }
    SAILVL_FUZZ_EXPECT(count == 256 * tiles);
  } catch (const server::HttpError& e) {
    SAILVL_FUZZ_EXPECT(e.status >= 400 && e.status < 500);
  } catch (const Error&) {
  }
  return 0;
}
