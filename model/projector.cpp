// Pixel shuffle + mlp1: see projector.h for the math and its source.
#include "model/projector.h"

#include <cmath>

#include "model/linear_weight.h"
#include "model/model.h"
#include "ops/ops.h"

namespace sailvl::model {

Projector Projector::load(const loader::WeightMap& weights, const model::ModelConfig& cfg, const Device& device) {
  SAILVL_CHECK(cfg.ps_version == "v1" || cfg.ps_version == "v2", BadModel, "config.json: ps_version \"", cfg.ps_version,
               "\" is not one of v1, v2");
  SAILVL_CHECK(std::fabs(cfg.downsample_ratio - 0.5) < 1e-12, BadModel, "config.json: downsample_ratio ",
               cfg.downsample_ratio, " is not supported (pixel shuffle merges 2x2 patches: 0.5)");
  Projector p;
  p.device_ = device;
  p.C_ = cfg.vision.hidden;
  p.D_ = cfg.llm.hidden;
  p.v1_ = cfg.ps_version == "v1";
  const int64_t C4 = 4 * p.C_, D = p.D_;
  auto M = weights.scope("mlp1");
  p.ln_w = place_as_activation(M.require("0.weight", {C4}), device);
  p.ln_b = place_as_activation(M.require("0.bias", {C4}), device);
  p.w1 = linear_weight(M, "1.weight", D, C4, cfg.vision.quant, device);
  p.b1 = place_as_activation(M.require("1.bias", {D}), device);
  p.w3 = linear_weight(M, "3.weight", D, D, cfg.vision.quant, device);
  p.b3 = place_as_activation(M.require("3.bias", {D}), device);
  return p;
}

Tensor Projector::pixel_shuffle(const Tensor& features) const {
  SAILVL_CHECK(features.dim() == 3 && features.size(2) == C_, Internal, "pixel_shuffle: features ", features.describe(),
               " are not [T, N, ", C_, "]");
  const int64_t T = features.size(0), N = features.size(1);
  const int64_t G = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(N))));
  SAILVL_CHECK(G * G == N && G % 2 == 0, Internal, "pixel_shuffle: ", N, " tokens are not an even square grid");
  Tensor s = Tensor::empty({T, N / 4, 4 * C_}, features.dtype(), device_);
  ops::pixel_shuffle_v2(s, features);  // s = shuffle_v2(features)  [T, G²/4, 4C]
  if (!v1_) return s;
  // v1: the merged (G/2)×(G/2) grid transposed (token j·G/2 + i).
  const int64_t g = G / 2;
  Tensor t = Tensor::empty({T, N / 4, 4 * C_}, features.dtype(), device_);
  t.reshape({T, g, g, 4 * C_}).copy_from(s.reshape({T, g, g, 4 * C_}).transpose(1, 2));
  return t;
}

Tensor Projector::forward(const Tensor& features, Tensor* shuffled) const {
  Tensor s = pixel_shuffle(features);  //                           [T, 256, 4C]
  const int64_t T = s.size(0), M = s.size(1);
  const DType act = s.dtype();
  Tensor z = Tensor::empty({T, M, 4 * C_}, act, device_);
  Tensor h = Tensor::empty({T, M, D_}, act, device_);
  Tensor out = Tensor::empty({T, M, D_}, act, device_);
  ops::layer_norm(z, s, ln_w, ln_b, ln_eps_);  // z = LayerNorm(s)          [T, 256, 4C]
  ops::linear(h, z, w1, b1);                   // h = z·W1ᵀ + b1            [T, 256, D]
  ops::gelu_erf(h, h);                         // h = GELU(h)               [T, 256, D]
  ops::linear(out, h, w3, b3);                 // out = h·W3ᵀ + b3          [T, 256, D]
  if (shuffled) *shuffled = s;
  return out;
}

// Pixel shuffle by 1/r = 2 turns C channels into 4C: LayerNorm(4C) -> Linear(4C, D) -> GELU -> Linear(D, D).
static int64_t shuffled_channels(const ModelConfig& c) {
  const int64_t r = static_cast<int64_t>(1.0 / c.downsample_ratio + 0.5);
  return c.vision.hidden * r * r;
}

void projector_tensors(const ModelConfig& c, std::vector<TensorSpec>& out) {
  const int64_t Cin = shuffled_channels(c), D = c.llm.hidden;
  out.push_back({"mlp1.0.weight", {Cin}});
  out.push_back({"mlp1.0.bias", {Cin}});
  out.push_back({"mlp1.1.weight", {D, Cin}, true});
  out.push_back({"mlp1.1.bias", {D}});
  out.push_back({"mlp1.3.weight", {D, D}, true});
  out.push_back({"mlp1.3.bias", {D}});
}

std::vector<LinearShape> projector_linears(const ModelConfig& c) {
  return {{shuffled_channels(c), c.llm.hidden}, {c.llm.hidden, c.llm.hidden}};
}

}  // namespace sailvl::model
