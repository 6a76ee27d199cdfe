// SAIL-VL glue: load, image path, prompt embedding. See sail_vl.h.
#include "model/sail_vl.h"

#include <chrono>
#include <set>

#include "model/model.h"
#include "ops/ops.h"
#include "tensor/stage.h"

namespace sailvl::model {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The layer indices present under `prefix` ("language_model.model.layers."), e.g. {0, 1, 2}.
std::set<int64_t> layer_indices(const std::vector<std::string>& names, const std::string& prefix) {
  std::set<int64_t> out;
  for (const std::string& n : names) {
    if (n.compare(0, prefix.size(), prefix) != 0) continue;
    int64_t v = 0;
    size_t i = prefix.size();
    bool digits = false;
    while (i < n.size() && n[i] >= '0' && n[i] <= '9' && v < (int64_t{1} << 40)) {
      v = v * 10 + (n[i] - '0');
      ++i;
      digits = true;
    }
    if (digits && i < n.size() && n[i] == '.') out.insert(v);
  }
  return out;
}

// config.json's layer count must match the checkpoint: no missing layer, no extra layer.
void check_layer_count(const loader::WeightMap& w, const std::string& prefix, int64_t layers, const char* key) {
  const std::set<int64_t> idx = layer_indices(w.names(), prefix);
  const int64_t found = static_cast<int64_t>(idx.size());
  const int64_t top = idx.empty() ? -1 : *idx.rbegin();
  SAILVL_CHECK(found == layers && top == layers - 1, BadModel, w.dir(), ": config.json says ", key, " = ", layers,
               " but the checkpoint has tensors for ", found, " layers under ", prefix, "*",
               idx.empty() ? std::string() : str_cat(" (indices 0..", top, ")"));
}

// The memory preflight: the plan for this checkpoint and workload against the free memory.
void preflight(const loader::ModelConfig& c, const loader::WeightMap& w, const Device& device, const LoadOptions& opt) {
  if (!opt.preflight) return;
  StageScope stage("memory preflight");
  const runtime::MemoryPlan plan =
      runtime::plan_memory(c, device, activation_dtype(device), *opt.preflight, w.total_bytes());
  const std::optional<uint64_t> free = opt.free_bytes ? opt.free_bytes : runtime::free_memory(device);
  if (!free) return;  // the system does not say (no MemAvailable): nothing to compare with
  runtime::check_fits(plan, *free, opt.free_bytes ? "assumed, not measured (SAILVL_FAKE_FREE_BYTES)" : "");
}

}  // namespace

SailVL SailVL::load(const std::string& model_dir, const Device& device, const LoadOptions& opt) {
  SailVL m;
  m.cfg_ = loader::load_config(model_dir);
  m.device_ = device;
  m.weights_ = std::make_shared<loader::WeightMap>(loader::WeightMap::open(model_dir));
  m.tok_ = std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(model_dir));
  const loader::ModelConfig& c = m.cfg_;
  const loader::WeightMap& w = *m.weights_;

  const bool intern = c.vision.arch == loader::VisionArch::InternViT;
  check_layer_count(w, "language_model.model.layers.", c.llm.layers, "llm_config.num_hidden_layers");
  if (intern)
    check_layer_count(w, "vision_model.encoder.layers.", c.vision.layers, "vision_config.num_hidden_layers");
  else
    check_layer_count(w, "vision_model.trunk.blocks.", c.vision.layers, "vision_config.num_hidden_layers");
  const int64_t G = c.vision.image_size / c.vision.patch_size;
  SAILVL_CHECK(c.num_image_token * 4 == G * G, BadModel, model_dir, ": num_image_token ", c.num_image_token,
               " does not match a ", G, "x", G, " patch grid shuffled 2x2");
  m.special_.im_end = m.tok_->require_added_token("<|im_end|>");
  m.special_.img_context = m.tok_->require_added_token("<IMG_CONTEXT>");
  SAILVL_CHECK(m.tok_->size() <= c.llm.vocab, BadModel, model_dir, ": the tokenizer has ", m.tok_->size(),
               " tokens but the embedding table only ", c.llm.vocab, " rows");

  preflight(c, w, device, opt);  // after the cheap checks, before the first weight is placed

  StageScope stage("load weights");
  UploadMeter meter{opt.progress, 0, w.total_bytes()};
  struct Scope {  // g_upload_meter points at `meter` for this load only, even if it throws
    explicit Scope(UploadMeter* m) { g_upload_meter = m; }
    ~Scope() { g_upload_meter = nullptr; }
  } scope(device.is_cuda() ? &meter : nullptr);
  if (intern)
    m.internvit_ = std::make_shared<InternViT>(InternViT::load(w, c.vision, c.select_layer, device));
  else
    m.aimv2_ = std::make_shared<Aimv2>(Aimv2::load(w, c.vision, c.select_layer, device));
  m.projector_ = std::make_shared<Projector>(Projector::load(w, c, device));
  m.llm_ = std::make_shared<Qwen2>(Qwen2::load(w, c.llm, device));
  if (device.is_cuda() && opt.progress) opt.progress(meter.total, meter.total);
  return m;
}

Tensor SailVL::vision_features(const Tensor& pixels) const {
  return internvit_ ? internvit_->forward(pixels) : aimv2_->forward(pixels);
}

Tensor SailVL::encode_images(const Tensor& pixels, ImageStages* stages) const {
  auto t0 = std::chrono::steady_clock::now();
  Tensor features;
  {
    StageScope stage("vision");
    features = vision_features(pixels);  // [T, G², C]
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

  for (int64_t id : ids)
    SAILVL_CHECK(id >= 0 && id < cfg_.llm.vocab, Usage, "token id ", id, " is outside the vocabulary [0, ",
                 cfg_.llm.vocab, ")");
  Tensor ids_t = Tensor::empty({S}, DType::I64);
  std::copy(ids.begin(), ids.end(), ids_t.data<int64_t>());
  Tensor E = Tensor::empty({S, D}, activation_dtype(device_), device_);
  llm_->embed(E, ids_t);  // E = embed_tokens(ids)     [S, D]
  if (K == 0) return E;

  Tensor where = Tensor::empty({K}, DType::I64);  // positions of <IMG_CONTEXT>, in order
  int64_t* wp = where.data<int64_t>();
  for (int64_t s = 0, k = 0; s < S; ++s)
    if (ids[static_cast<size_t>(s)] == special_.img_context) wp[k++] = s;
  ops::scatter_rows(E, place(where, device_), image_rows.reshape({K, D}));  // E[where[k]] = rows[k]
  return E;
}

}  // namespace sailvl::model
