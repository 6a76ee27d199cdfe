// The request path: see request.h.
#include "server/request.h"

#include <openssl/evp.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "loader/json_strict.h"
#include "runtime/chat_template.h"
#include "tensor/sha256.h"

namespace sailvl::server {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& msg) { throw HttpError(400, msg, param); }

const json* field(const json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& j, const char* key, double def, double lo, double hi) {
  const json* v = field(j, key);
  if (!v) return def;
  if (!v->is_number()) bad(key, std::string(key) + " must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(key, str_cat(key, " must be in [", lo, ", ", hi, "], got ", v->dump()));
  return x;
}

int64_t integer(const json& j, const char* key, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v) return def;
  if (!v->is_number_integer()) bad(key, std::string(key) + " must be an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    bad(key, str_cat(key, " must be in [", lo, ", ", hi, "], got ", v->dump()));
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad(key, str_cat(key, " must be in [", lo, ", ", hi, "], got ", x));
  return x;
}

bool boolean(const json& j, const char* key, bool def) {
  const json* v = field(j, key);
  if (!v) return def;
  if (!v->is_boolean()) bad(key, std::string(key) + " must be true or false");
  return v->get<bool>();
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// One picture from an image_url part.
runtime::ImageInput load_url(const std::string& url, const Limits& lim, const std::string& param, int64_t index) {
  std::vector<uint8_t> bytes;
  std::string source;
  if (starts_with(url, "data:")) {
    bytes = decode_data_url(url, param);
    source = str_cat("image ", index + 1, " (data URL)");
  } else if (starts_with(url, "file://")) {
    if (!lim.allow_files) bad(param, "file:// URLs are refused (the server was started without --allow-files DIR)");
    std::error_code ec;
    const std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::path(url.substr(7)), ec);
    const std::filesystem::path root = std::filesystem::weakly_canonical(*lim.allow_files, ec);
    const std::string ps = p.string(), rs = root.string();
    if (ec || ps.size() <= rs.size() || ps.compare(0, rs.size(), rs) != 0 || ps[rs.size()] != '/')
      bad(param, "file:// URL outside the --allow-files directory");
    if (!std::filesystem::is_regular_file(p, ec)) bad(param, "file:// URL: no such file");
    if (std::filesystem::file_size(p, ec) > static_cast<uintmax_t>(lim.image.max_file_bytes))
      bad(param, "file:// URL: the file exceeds the image size limit");
    std::ifstream f(p, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
    source = ps;
  } else if (starts_with(url, "http://") || starts_with(url, "https://")) {
    bad(param, "remote image URLs are not fetched: send the picture as a data:image/...;base64 URL");
  } else {
    bad(param, "image_url.url must be a data:image/...;base64 URL (or file:// under --allow-files)");
  }
  if (static_cast<int64_t>(bytes.size()) > lim.image.max_file_bytes) bad(param, "the image exceeds the size limit");
  runtime::ImageInput in;
  in.source = source;
  in.sha256 = sha256_hex(bytes);
  try {
    in.rgb = std::make_shared<const image::RgbImage>(image::decode_image(bytes, source, lim.image));
  } catch (const Error& e) {
    bad(param, e.what());
  }
  return in;
}

// The text and pictures of one message's content (a string, or a list of parts).
struct Content {
  std::string text;
  std::vector<runtime::ImageInput> images;
};

Content read_content(const json& m, const std::string& where, bool images_allowed, const Limits& lim,
                     int64_t& image_count) {
  const json* c = field(m, "content");
  if (!c) bad(where + ".content", "a message needs content");
  Content out;
  if (c->is_string()) {
    out.text = c->get<std::string>();
    return out;
  }
  if (!c->is_array()) bad(where + ".content", "content must be a string or a list of parts");
  for (size_t i = 0; i < c->size(); ++i) {
    const json& p = (*c)[i];
    const std::string pw = str_cat(where, ".content[", i, "]");
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) bad(pw, "each part needs a string \"type\"");
    const std::string type = p["type"].get<std::string>();
    if (type == "text") {
      if (!p.contains("text") || !p["text"].is_string()) bad(pw + ".text", "a text part needs a string \"text\"");
      if (!out.text.empty()) out.text += "\n";
      out.text += p["text"].get<std::string>();
    } else if (type == "image_url") {
      if (!images_allowed) bad(pw, "only user messages may carry images");
      const json* iu = field(p, "image_url");
      std::string url;
      if (iu && iu->is_string())
        url = iu->get<std::string>();  // a lenient form some clients send
      else if (iu && iu->is_object() && iu->contains("url") && (*iu)["url"].is_string())
        url = (*iu)["url"].get<std::string>();
      else
        bad(pw + ".image_url", "an image_url part needs {\"url\": ...}");
      if (++image_count > lim.max_images) bad(pw, str_cat("more than ", lim.max_images, " images in one request"));
      out.images.push_back(load_url(url, lim, pw + ".image_url.url", image_count - 1));
    } else {
      bad(pw + ".type", "unsupported content part type \"" + escape_for_print(type) + "\" (text, image_url)");
    }
  }
  return out;
}

}  // namespace

std::vector<uint8_t> decode_data_url(std::string_view url, const std::string& param) {
  const size_t comma = url.find(',');
  if (!starts_with(url, "data:image/") || comma == std::string_view::npos)
    bad(param, "a data URL must look like data:image/png;base64,...");
  const std::string_view meta = url.substr(5, comma - 5);
  if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64")
    bad(param, "the data URL must be base64 (;base64,)");
  const std::string_view b64 = url.substr(comma + 1);
  if (b64.empty()) bad(param, "the data URL holds no data");
  std::vector<uint8_t> out(b64.size() / 4 * 3 + 4);
  EVP_ENCODE_CTX* ctx = EVP_ENCODE_CTX_new();
  if (!ctx) throw HttpError(500, "base64 decoder unavailable", param, "server_error");
  EVP_DecodeInit(ctx);
  int n1 = 0, n2 = 0;
  const int r = EVP_DecodeUpdate(ctx, out.data(), &n1, reinterpret_cast<const unsigned char*>(b64.data()),
                                 static_cast<int>(b64.size()));
  const int f = r < 0 ? -1 : EVP_DecodeFinal(ctx, out.data() + n1, &n2);
  EVP_ENCODE_CTX_free(ctx);
  if (r < 0 || f < 0 || b64.size() % 4 != 0) bad(param, "the data URL's base64 is malformed");
  out.resize(static_cast<size_t>(n1 + n2));
  return out;
}

ChatCompletion parse_chat_completion(std::string_view body, const Limits& lim, int64_t default_max_tokens) {
  if (body.size() > lim.max_body_bytes)
    throw HttpError(413, str_cat("the request body exceeds ", lim.max_body_bytes, " bytes"));
  json j;
  try {
    j = loader::parse_json_strict(body, "request body", ErrorKind::Usage);
  } catch (const Error& e) {
    bad("", str_cat("could not parse the JSON body: ", e.what()));
  }
  if (!j.is_object()) bad("", "the body must be a JSON object");
  ChatCompletion c;
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) bad("model", "model must be a string");
    c.model = m->get<std::string>();
  }
  if (integer(j, "n", 1, 1, 1 << 20) != 1) bad("n", "n must be 1 (one answer per request)");
  c.stream = boolean(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "stream_options must be an object");
    c.include_usage = boolean(*so, "include_usage", false);
  }
  c.max_tiles = integer(j, "max_tiles", lim.max_tiles, 1, lim.max_tiles);

  // Sampling: OpenAI's temperature default is 1 (sampling); 0 means greedy.
  runtime::SamplingOptions& s = c.gen.sampling;
  const double temp = number(j, "temperature", 1.0, 0, 100);
  s.do_sample = temp > 0;
  s.temperature = temp > 0 ? static_cast<float>(temp) : 1.0f;
  s.top_p = static_cast<float>(number(j, "top_p", 1.0, 0, 1));
  if (s.top_p <= 0) bad("top_p", "top_p must be in (0, 1]");
  s.top_k = integer(j, "top_k", 0, 0, 1 << 30);
  s.repetition_penalty = static_cast<float>(number(j, "repetition_penalty", 1.0, 1e-6, 100));
  s.seed = static_cast<uint64_t>(integer(j, "seed", 0, 0, INT64_MAX));
  int64_t max_tokens = integer(j, "max_completion_tokens", -1, 1, int64_t{1} << 30);
  if (max_tokens < 0) max_tokens = integer(j, "max_tokens", default_max_tokens, 1, int64_t{1} << 30);
  c.gen.max_new_tokens = max_tokens;
  if (const json* st = field(j, "stop")) {
    if (st->is_string()) {
      c.gen.stop.push_back(st->get<std::string>());
    } else if (st->is_array() && st->size() <= 4) {
      for (const json& x : *st) {
        if (!x.is_string()) bad("stop", "stop must be a string or a list of up to 4 strings");
        c.gen.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "stop must be a string or a list of up to 4 strings");
    }
    for (const auto& x : c.gen.stop)
      if (x.empty()) bad("stop", "stop strings must not be empty");
  }

  // Messages.
  const json* msgs = field(j, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty()) bad("messages", "messages must be a non-empty list");
  int64_t image_count = 0;
  size_t i = 0;
  std::string pending_user;  // a user message waiting for its answer
  bool have_user = false, first_user = true;
  std::vector<runtime::ImageInput> user_images;
  for (; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = str_cat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      bad(where + ".role", "each message needs a role");
    const std::string role = m["role"].get<std::string>();
    if (role == "system") {
      if (i != 0) bad(where + ".role", "a system message may only come first");
      c.system = read_content(m, where, false, lim, image_count).text;
    } else if (role == "user") {
      if (have_user) bad(where + ".role", "messages must alternate user and assistant");
      Content ct = read_content(m, where, true, lim, image_count);
      pending_user = runtime::question_with_images(ct.text, static_cast<int64_t>(ct.images.size()), first_user,
                                                   runtime::ImageLayout::Auto);
      for (auto& img : ct.images) {
        img.max_tiles = c.max_tiles;
        c.images.push_back(std::move(img));
      }
      have_user = true;
      first_user = false;
    } else if (role == "assistant") {
      if (!have_user) bad(where + ".role", "an assistant message must follow a user message");
      c.history.push_back({pending_user, read_content(m, where, false, lim, image_count).text});
      have_user = false;
    } else {
      bad(where + ".role", "unknown role \"" + escape_for_print(role) + "\" (system, user, assistant)");
    }
  }
  if (!have_user) bad("messages", "the last message must be a user message");
  c.question = pending_user;
  return c;
}

runtime::Job make_job(const model::SailVL& m, ChatCompletion& c, int64_t context) {
  runtime::ChatRequest req;
  req.question = c.question;
  req.history = c.history;
  req.system_message = c.system;
  image::PreprocessOptions pp;
  pp.max_tiles = c.max_tiles;
  runtime::PreparedPrompt p;
  try {
    p = runtime::prepare_prompt(m, req, c.images, pp);
  } catch (const Error& e) {
    bad("messages", e.what());
  }
  if (static_cast<int64_t>(p.ids.size()) > context)
    bad("messages", str_cat("the conversation needs ", p.ids.size(), " tokens (", p.tiles,
                            " image tiles) but a slot holds ", context, " (the server's -c)"));
  runtime::Job job;
  job.ids = std::move(p.ids);
  job.tags = std::move(p.tags);
  job.first_row = std::move(p.first_row);
  job.images = c.images;
  job.preprocess = pp;
  job.gen = c.gen;
  return job;
}

}  // namespace sailvl::server
