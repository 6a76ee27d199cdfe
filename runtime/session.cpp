// The session engine: see session.h.
#include "runtime/session.h"

#include <chrono>
#include <filesystem>
#include <fstream>

#include "model/model.h"
#include "runtime/chat.h"
#include "tensor/observe.h"
#include "tensor/sha256.h"
#include "tensor/stage.h"

namespace sailvl::runtime {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The pixels on the model's device (the same tensor on the CPU); a host step for an observer.
Tensor upload_pixels(const Tensor& pixels, const Device& device) {
  if (pixels.device() == device) return pixels;
  HostStep step("upload");
  Tensor out = pixels.to(device);
  step.out = &out;
  step.bytes = static_cast<double>(pixels.nbytes());
  return out;
}

}  // namespace

ImageInput ImageInput::from_file(const std::string& path, const image::ImageLimits& limits) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SAILVL_CHECK(!fs::is_directory(path, ec), BadImage, "image ", path, ": is a directory, not an image file");
  SAILVL_CHECK(fs::exists(path, ec), BadImage, "image ", path, ": no such file");
  SAILVL_CHECK(fs::is_regular_file(path, ec), BadImage, "image ", path, ": not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  SAILVL_CHECK(!ec, BadImage, "image ", path, ": cannot read its size (", ec.message(), ")");
  SAILVL_CHECK(size <= static_cast<uintmax_t>(limits.max_file_bytes), BadImage, "image ", path, ": ", size,
               " bytes exceeds the file-size limit of ", limits.max_file_bytes);
  SAILVL_CHECK(size > 0, BadImage, "image ", path, ": file is empty");
  std::ifstream f(path, std::ios::binary);
  SAILVL_CHECK(f.good(), BadImage, "image ", path, ": cannot open file");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  SAILVL_CHECK(f.gcount() == static_cast<std::streamsize>(size), BadImage, "image ", path, ": short read");
  ImageInput in;
  in.source = path;
  in.sha256 = sha256_hex(bytes);
  in.rgb = std::make_shared<const image::RgbImage>(image::decode_image(bytes, path, limits));
  return in;
}

Session::Session(const model::SailVL& m, SessionOptions opt)
    : m_(&m), opt_(std::move(opt)), seq_(m, opt_.context, opt_.prefill_chunk) {
  cache_ = opt_.image_cache;
  if (!cache_)
    cache_ = std::make_shared<ImageCache>(opt_.image_cache_bytes ? opt_.image_cache_bytes
                                                                 : default_image_cache_bytes(m.device()));
}

image::PreprocessOptions preprocess_for(const ImageInput& img, const image::PreprocessOptions& pp) {
  image::PreprocessOptions p = pp;
  if (img.frame)
    p.max_tiles = 1;  // the card's video path: load_image(frame, max_num=1)
  else if (img.max_tiles > 0)
    p.max_tiles = img.max_tiles;
  // The card feeds the model pixel_values.to(bfloat16): the tiles are rounded to BF16 on every
  // device (exact in the CPU's F32 activations), so CPU and GPU see the card's own inputs.
  p.dtype = DType::BF16;
  return p;
}

int64_t image_tiles(const ImageInput& img, const image::PreprocessOptions& pp) {
  const image::PreprocessOptions p = preprocess_for(img, pp);
  const image::TileGrid g = image::choose_grid(img.rgb->width, img.rgb->height, p.max_tiles, p.image_size);
  return g.tiles() + (p.use_thumbnail && g.tiles() > 1 ? 1 : 0);
}

PreparedPrompt prepare_prompt(const model::SailVL& m, ChatRequest req, std::vector<ImageInput>& images,
                              const image::PreprocessOptions& pp) {
  PreparedPrompt out;
  req.tiles.clear();
  for (const ImageInput& img : images) {
    SAILVL_CHECK(img.rgb && img.rgb->width > 0, Internal, "prepare_prompt: image ", img.source, " is not decoded");
    req.tiles.push_back(image_tiles(img, pp));
  }
  req.num_image_token = m.image_tokens_per_tile();
  out.prompt = build_chat_prompt(m.tokenizer(), req);
  out.ids.assign(out.prompt.ids.begin(), out.prompt.ids.end());
  const int64_t N = m.image_tokens_per_tile();
  for (size_t i = 0; i < images.size(); ++i) {
    ImageInput& img = images[i];
    if (img.key.empty()) img.key = image_key(*img.rgb, preprocess_for(img, pp), img.frame).hex;
    out.first_row.push_back(out.tiles * N);
    const uint64_t uid = std::stoull(img.key.substr(0, 16), nullptr, 16);
    for (int64_t r = 0; r < req.tiles[i] * N; ++r)
      out.tags.push_back(uid ^ (static_cast<uint64_t>(r) * 0x9E3779B97F4A7C15ull));
    out.tiles += req.tiles[i];
  }
  m.check_image_tokens(out.ids, out.tiles);
  return out;
}

ChatRequest Session::request(const std::string& question, size_t new_images) const {
  ChatRequest req;
  req.question = question;
  // After the first turn, new images need their own markers unless the question places them.
  if (!history_.empty())
    req.question = question_with_images(question, static_cast<int64_t>(new_images), false, opt_.layout);
  req.history = history_;
  req.layout = opt_.layout;
  req.system_message = opt_.system_message;
  req.parse_special = opt_.parse_special;
  return req;
}

ChatPrompt Session::render(const std::string& question, const std::vector<ImageInput>& images) const {
  std::vector<ImageInput> all = images_;
  all.insert(all.end(), images.begin(), images.end());
  return prepare_prompt(*m_, request(question, images.size()), all, opt_.preprocess).prompt;
}

Tensor Session::rows_of(const ImageInput& img, Timings& tm, const model::RunControl& ctl) {
  const image::PreprocessOptions p = preprocess_for(img, opt_.preprocess);
  const ImageKey key{img.key};
  if (std::optional<Tensor> hit = cache_->find(key)) return *hit;
  const auto t0 = Clock::now();
  double preprocess_ms = 0;
  Tensor pixels;
  {
    StageScope stage("preprocess");
    image::PixelBatch px;
    {
      HostStep step("resize+normalize");  // for an observer (--profile, --trace)
      px = image::preprocess_decoded({*img.rgb}, p);
      step.out = &px.pixels;
    }
    preprocess_ms = ms_since(t0);
    pixels = upload_pixels(px.pixels, m_->device());
  }
  model::ImageStages st;
  const Tensor rows = m_->encode_images(pixels, &st, ctl);  // [T, 256, D]
  ++vision_passes_;
  tm.vision_ms += st.vision_ms + preprocess_ms;
  tm.projector_ms += st.projector_ms;
  tm.encoded_tiles += pixels.size(0);
  const Tensor flat = rows.reshape({rows.size(0) * rows.size(1), rows.size(2)});  // [T·256, D]
  cache_->insert(key, flat);
  return flat;
}

ImageRows Session::encode_for_taps(const std::vector<ImageInput>& all, Timings& tm, const model::RunControl& ctl,
                                   const Taps& taps) {
  // Every image of the prompt in one pass, each stage written (runtime/taps.h), no cache.
  Tensor pixels;
  {
    StageScope stage("preprocess");
    std::vector<Tensor> parts;
    for (const ImageInput& img : all) {
      HostStep step("resize+normalize");  // for an observer (--profile, --trace)
      parts.push_back(image::preprocess_decoded({*img.rgb}, preprocess_for(img, opt_.preprocess)).pixels);
      step.out = &parts.back();
    }
    int64_t T = 0;
    for (const Tensor& t : parts) T += t.size(0);
    pixels = Tensor::empty({T, parts[0].size(1), parts[0].size(2), parts[0].size(3)}, parts[0].dtype());
    for (int64_t at = 0; const Tensor& t : parts) {
      pixels.narrow(0, at, t.size(0)).copy_from(t);
      at += t.size(0);
    }
    pixels = upload_pixels(pixels, m_->device());
  }
  const int64_t T = pixels.size(0);
  model::ImageStages st;
  const Tensor rows = m_->encode_images(pixels, &st, ctl);
  ++vision_passes_;
  tm.vision_ms += st.vision_ms;
  tm.projector_ms += st.projector_ms;
  tm.encoded_tiles += T;
  taps.write("pixel_values", pixels);
  taps.write("vision", st.features);
  taps.write("pixel_shuffle", st.shuffled);
  taps.write("projector", st.rows);
  return {rows, 0};
}

TurnResult Session::ask(const std::string& question, std::vector<ImageInput> images, const GenerationOptions& gen) {
  // ---- the prompt, and every check, before any compute ----
  std::vector<ImageInput> all = images_;
  all.insert(all.end(), images.begin(), images.end());
  const PreparedPrompt pp = prepare_prompt(*m_, request(question, images.size()), all, opt_.preprocess);
  const ChatPrompt& prompt = pp.prompt;
  const std::vector<int64_t>& ids = pp.ids;
  const std::vector<uint64_t>& tags = pp.tags;
  const std::vector<int64_t>& first_row = pp.first_row;
  const int64_t S = static_cast<int64_t>(ids.size()), N = m_->image_tokens_per_tile(), tiles = pp.tiles;
  SAILVL_CHECK(S <= seq_.context(), ContextOverflow, "this turn's prompt needs ", S, " tokens (", tiles * N,
               " of them for ", tiles, " image tiles) but the context holds ", seq_.context(),
               " (-c); start a new conversation (/reset), use fewer tiles (--max-tiles) or a larger -c");
  Decoder dec(*m_, gen, seq_.context());
  seq_.reserve(S + gen.max_new_tokens);  // this turn's KV rows, before any compute
  GenerationResult& res = dec.result();
  Timings& tm = res.timings;
  tm.prompt_tokens = S;
  tm.image_tiles = tiles;

  // ---- prefill: the tokens the cache does not hold yet; image rows as they are needed ----
  model::RunControl vctl{gen.cancel, nullptr};
  if (gen.progress) vctl.progress = [&gen](int64_t d, int64_t t) { gen.progress(Phase::Vision, d, t); };
  auto rows_from = [&](int64_t k0) -> ImageRows {
    if (gen.taps) return encode_for_taps(all, tm, vctl, *gen.taps);
    size_t f = 0;  // the first image with a placeholder at or after k0
    while (f + 1 < all.size() && first_row[f + 1] <= k0) ++f;
    std::vector<Tensor> parts;
    for (size_t i = f; i < all.size(); ++i) parts.push_back(rows_of(all[i], tm, vctl));
    if (parts.size() == 1) return {parts[0], first_row[f]};
    int64_t n = 0;
    for (const Tensor& t : parts) n += t.size(0);
    Tensor cat = Tensor::empty({n, parts[0].size(1)}, parts[0].dtype(), parts[0].device());
    for (int64_t at = 0; const Tensor& t : parts) {
      cat.narrow(0, at, t.size(0)).copy_from(t);
      at += t.size(0);
    }
    return {cat, first_row[f]};
  };
  const Tensor logits = Tensor::empty({m_->config().llm.vocab}, DType::F32, m_->device());
  model::RunControl pctl{gen.cancel, nullptr};
  if (gen.progress) pctl.progress = [&gen](int64_t d, int64_t t) { gen.progress(Phase::Prefill, d, t); };
  const auto t0 = Clock::now();
  std::vector<Tensor> layer_outputs;
  if (gen.taps) seq_.clear();  // taps show every stage of the whole prompt, computed now
  const PrefillStats ps =
      seq_.prefill(ids, tags, rows_from, logits, pctl, gen.taps && gen.taps->layers() ? &layer_outputs : nullptr);
  tm.prefill_ms = ms_since(t0) - tm.vision_ms - tm.projector_ms;
  tm.cached_tokens = ps.reused;
  if (gen.on_prefill_logits) gen.on_prefill_logits(logits);
  if (gen.taps) {
    gen.taps->write_ids("prompt_ids", ids);
    gen.taps->write("logits", logits);
    for (size_t l = 0; l < layer_outputs.size(); ++l) gen.taps->write("layer_" + std::to_string(l), layer_outputs[l]);
  }

  // ---- decode ----
  const auto t_decode = Clock::now();
  for (;;) {
    const auto t_step = Clock::now();
    const std::optional<int64_t> next = dec.next(logits, seq_.length());
    if (!next) {
      if (res.stop != StopReason::Cancelled && !res.tokens.empty()) tm.token_ms.push_back(ms_since(t_step));
      break;
    }
    {
      StageScope stage("decode", static_cast<int64_t>(tm.token_ms.size()));
      seq_.step(*next, logits);
      model::finish_stage(m_->device());
    }
    tm.token_ms.push_back(ms_since(t_step));
  }
  tm.decode_ms = ms_since(t_decode);
  dec.finish();

  TurnResult out;
  std::vector<tokenizer::TokenId> toks(res.tokens.begin(), res.tokens.end());
  out.response = clean_response(m_->tokenizer().decode(toks, /*skip_special=*/true));
  if (res.stop == StopReason::StopString) out.response = clean_response(res.text);  // cut at the stop string
  out.generation = std::move(res);
  if (out.generation.stop != StopReason::Cancelled) {
    append_turn(history_, prompt, out.response);
    images_ = std::move(all);
    out.kept = true;
    out.turn = static_cast<int64_t>(history_.size());
  }
  return out;
}

void Session::reset() {
  history_.clear();
  images_.clear();
}

void Session::set_system(std::optional<std::string> system) {
  opt_.system_message = std::move(system);
  reset();
}

void Session::restore(std::optional<std::string> system, std::vector<ChatTurn> history,
                      std::vector<ImageInput> images) {
  for (ImageInput& img : images) img.key = image_key(*img.rgb, preprocess_for(img, opt_.preprocess), img.frame).hex;
  opt_.system_message = std::move(system);
  history_ = std::move(history);
  images_ = std::move(images);
}

}  // namespace sailvl::runtime
