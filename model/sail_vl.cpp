// SAIL-VL glue: load, image path, prompt embedding. See sail_vl.h.
#include "model/sail_vl.h"

#include <chrono>

#include "model/model.h"
#include "ops/ops.h"
#include "tensor/stage.h"

namespace sailvl::model {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

SailVL SailVL::load(const std::string& model_dir, const Device& device, const LoadOptions& opt) {
  SailVL m;
  m.cfg_ = load_config(model_dir);
  m.device_ = device;
  m.weights_ = std::make_shared<loader::WeightMap>(loader::WeightMap::open(model_dir));
  m.tok_ = std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(model_dir));
  const ModelConfig& c = m.cfg_;
  const loader::WeightMap& w = *m.weights_;

  check_against_config(w, c);
  const int64_t G = c.vision.image_size / c.vision.patch_size;
  SAILVL_CHECK(c.num_image_token * 4 == G * G, BadModel, model_dir, ": num_image_token ", c.num_image_token,
               " does not match a ", G, "x", G, " patch grid shuffled 2x2");
  m.special_.im_end = m.tok_->require_added_token("<|im_end|>");
  m.special_.img_context = m.tok_->require_added_token("<IMG_CONTEXT>");
  SAILVL_CHECK(m.tok_->size() <= c.llm.vocab, BadModel, model_dir, ": the tokenizer has ", m.tok_->size(),
               " tokens but the embedding table only ", c.llm.vocab, " rows");

  if (opt.before_weights) {  // after the cheap checks, before the first weight is placed
    StageScope stage("memory preflight");
    opt.before_weights(c, w);
  }

  StageScope stage("load weights");
  UploadMeter meter{opt.progress, 0, w.total_bytes()};
  struct Scope {  // g_upload_meter points at `meter` for this load only, even if it throws
    explicit Scope(UploadMeter* m) { g_upload_meter = m; }
    ~Scope() { g_upload_meter = nullptr; }
  } scope(device.is_cuda() ? &meter : nullptr);
  m.vision_ = vision_family(c).load(w, c, device);
  m.projector_ = std::make_shared<Projector>(Projector::load(w, c, device));
  m.llm_ = llm_family(c).load(w, c.llm, device);
  if (device.is_cuda() && opt.progress) opt.progress(meter.total, meter.total);
  return m;
}

Tensor SailVL::vision_features(const Tensor& pixels, const RunControl& ctl) const {
  return vision_->forward(pixels, ctl);
}

Tensor SailVL::encode_images(const Tensor& pixels, ImageStages* stages, const RunControl& ctl) const {
  auto t0 = std::chrono::steady_clock::now();
  Tensor features;
  {
    StageScope stage("vision");
    features = vision_features(pixels, ctl);  // [T, G², C]
    finish_stage(device_);
  }
  const double vision_ms = ms_since(t0);
  t0 = std::chrono::steady_clock::now();
  Tensor shuffled, rows;
  {
    StageScope stage("projector");
    rows = projector_->forward(features, &shuffled);  // [T, 256, D]
    finish_stage(device_);
  }
  if (stages) {
    stages->features = features;
    stages->shuffled = shuffled;
    stages->rows = rows;
    stages->vision_ms = vision_ms;
    stages->projector_ms = ms_since(t0);
  }
  return rows;
}

void SailVL::check_image_tokens(std::span<const int64_t> ids, int64_t tiles) const {
  int64_t n = 0;
  for (int64_t id : ids) n += id == special_.img_context;
  const int64_t want = cfg_.num_image_token * tiles;
  SAILVL_CHECK(n == want, Usage, "the prompt has ", n, " <IMG_CONTEXT> tokens but the images give ", tiles, " tiles x ",
               cfg_.num_image_token, " = ", want, " image rows");
}

void SailVL::embed_slice(const Tensor& out, std::span<const int64_t> ids, int64_t first, const Tensor& image_rows,
                         int64_t rows_first) const {
  const int64_t n = out.size(0), D = cfg_.llm.hidden;
  SAILVL_CHECK(out.dim() == 2 && out.size(1) == D && first >= 0 && first + n <= static_cast<int64_t>(ids.size()),
               Internal, "embed_slice: ", out.describe(), " at ", first, " of ", ids.size(), " ids");
  // The placeholders of the slice: the k-th of the whole prompt takes row k - rows_first.
  int64_t k = 0;
  for (int64_t s = 0; s < first; ++s) k += ids[static_cast<size_t>(s)] == special_.img_context;
  Tensor ids_t = Tensor::empty({n}, DType::I64);
  std::vector<int64_t> where;  // slice positions of the placeholders
  const int64_t k0 = k;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t id = ids[static_cast<size_t>(first + s)];
    SAILVL_CHECK(id >= 0 && id < cfg_.llm.vocab, Usage, "token id ", id, " is outside the vocabulary [0, ",
                 cfg_.llm.vocab, ")");
    ids_t.data<int64_t>()[s] = id;
    if (id == special_.img_context) where.push_back(s);
  }
  llm_->embed(out, ids_t);  // E = embed_tokens(ids)     [n, D]
  if (where.empty()) return;
  const int64_t K = static_cast<int64_t>(where.size());
  const int64_t avail = image_rows.defined() && image_rows.numel() % D == 0 ? image_rows.numel() / D : 0;
  SAILVL_CHECK(k0 >= rows_first && k0 - rows_first + K <= avail, Internal, "embed_slice: image rows ", k0, "..", k0 + K,
               " needed, ", avail, " given from row ", rows_first);
  const Tensor rows = image_rows.reshape({avail, D});
  Tensor where_t = Tensor::empty({K}, DType::I64);
  std::copy(where.begin(), where.end(), where_t.data<int64_t>());
  // The slice's placeholders are consecutive in the prompt's order: rows k0 .. k0 + K - 1.
  ops::scatter_rows(out, place(where_t, device_), rows.narrow(0, k0 - rows_first, K));  // E[where[j]] = rows[k0+j]
}

Tensor SailVL::embed_prompt(std::span<const int64_t> ids, const Tensor& image_rows) const {
  const int64_t S = static_cast<int64_t>(ids.size()), D = cfg_.llm.hidden;
  SAILVL_CHECK(S > 0, Usage, "empty prompt");
  int64_t K = 0;
  if (image_rows.defined()) {
    SAILVL_CHECK(image_rows.size(-1) == D && image_rows.numel() % D == 0, Internal, "image rows ",
                 image_rows.describe(), " are not [.., ", D, "]");
    K = image_rows.numel() / D;
  }
  SAILVL_CHECK(K % cfg_.num_image_token == 0, Internal, K, " image rows are not whole tiles");
  check_image_tokens(ids, K / cfg_.num_image_token);
  Tensor E = Tensor::empty({S, D}, activation_dtype(device_), device_);
  embed_slice(E, ids, 0, image_rows);  // E = embed_tokens(ids), <IMG_CONTEXT> rows replaced  [S, D]
  return E;
}

}  // namespace sailvl::model
