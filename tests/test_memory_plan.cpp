// Memory preflight (runtime/memory_plan.h): the breakdown for the full-size SAIL-VL-2B config against
// numbers worked out here from the buffers the model allocates, the fit check and its message,
// MemAvailable parsing, and the prompt bound the CLI sizes the plan with.
#include <string>

#include "model/config.h"
#include "model/sail_vl.h"
#include "runtime/chat_template.h"
#include "runtime/memory_plan.h"
#include "tensor/error.h"
#include "tests/testutil.h"
#include "tokenizer/tokenizer.h"

using namespace sailvl;
using runtime::MemPart;

namespace {

model::ModelConfig sailvl_2b() {
  return model::parse_config(test::read_file(test::data_path("configs/sailvl-2b.json")), "sailvl-2b.json");
}

// SAIL-VL-2B (tests/data/configs/sailvl-2b.json):
//   InternViT-300M  C = 1024, MLP Fv = 4096, 24 layers, 16 heads × 64, 448 px / 14 px patches
//                   -> G = 32, N = 1024 patches, Nv = 1025 tokens with the CLS token, qkv biases
//   Qwen2.5-1.5B    D = 1536, F = 8960, L = 28, H = 12, Hkv = 2, Dh = 128, V = 151936, lm_head stored (config: tied)
//   projector       LayerNorm(4C) -> Linear(4C, D) -> GELU -> Linear(D, D); 256 rows per tile
constexpr uint64_t C = 1024, Fv = 4096, Lv = 24, N = 1024, Nv = 1025, Px = 14, S = 448;
constexpr uint64_t D = 1536, F = 8960, L = 28, H = 12, Hkv = 2, Dh = 128, V = 151936;
constexpr uint64_t MiB = 1 << 20;

// The workload of these tests: 4096 tokens of context, 512 new, 11 tiles (10 + thumbnail).
runtime::Workload workload() {
  runtime::Workload w;
  w.context = 4096;
  w.max_new_tokens = 512;
  w.tiles = 11;
  w.cpu_threads = 2;
  return w;
}
constexpr uint64_t T = 11;
constexpr uint64_t kKvTokens = 4096;  // prompt unknown: a conversation may fill the whole context
// The prefill runs in chunks (runtime::prefill_chunk_tokens): 8192 rows on CUDA, 512 on the CPU;
// a prompt may be as long as the context (-n is a cap, not a promise).
constexpr uint64_t kPrefillTokensCuda = 4096, kPrefillTokensCpu = 512;

// Parameters of the checkpoint, tensor by tensor (docs/MODEL.md §9), stored as BF16.
uint64_t sailvl_2b_params() {
  const uint64_t vit = C                                       // class_embedding
                       + Nv * C                                // position_embedding [1, 1025, C]
                       + C * 3 * Px * Px + C                   // patch_embedding conv weight + bias
                       + Lv * (2 * C                           // ls1, ls2
                               + 3 * C * C + 3 * C             // attn.qkv weight + bias
                               + C * C + C                     // attn.proj
                               + Fv * C + Fv                   // mlp.fc1
                               + C * Fv + C                    // mlp.fc2
                               + 4 * C);                       // norm1, norm2 (weight + bias)
  const uint64_t llm = V * D                                   // embed_tokens
                       + L * (H * Dh * D + H * Dh              // q_proj
                              + 2 * (Hkv * Dh * D + Hkv * Dh)  // k_proj, v_proj
                              + D * H * Dh                     // o_proj
                              + 3 * F * D                      // gate, up, down
                              + 2 * D)                         // input / post-attention RMSNorm
                       + D                                     // final norm
                       + V * D;  // lm_head (stored in SAIL-VL-2B, though its config says tied)
  const uint64_t mlp1 = 2 * 4 * C + 4 * C * D + D + D * D + D;  // LayerNorm, Linear(4C, D), Linear(D, D)
  return vit + llm + mlp1;
}

}  // namespace

TEST(MemoryPlan, Sailvl2bBreakdownOnCudaMatchesHandComputedValues) {
  const model::ModelConfig cfg = sailvl_2b();
  const uint64_t params = sailvl_2b_params();
  EXPECT_GT(params, 2'000'000'000u);  // SAIL-VL-2B: ~2.1 B parameters
  EXPECT_LT(params, 2'200'000'000u);
  EXPECT_EQ(runtime::bf16_checkpoint_bytes(cfg, /*stored_head=*/true), 2 * params);

  const runtime::MemoryPlan p = runtime::plan_memory(cfg, Device::cuda(0), DType::BF16, workload(), 2 * params);
  const uint64_t a = 2;  // BF16 activations
  EXPECT_EQ(p.kv_tokens, 4096);
  EXPECT_EQ(p.prefill_tokens, 4096);

  EXPECT_EQ(p[MemPart::Weights], 2 * params);
  // K and V per layer: [4096, Hkv, Dh] BF16 -> 28 KiB per token, 112 MiB for 4096 tokens.
  EXPECT_EQ(p[MemPart::KvCache], 2 * L * kKvTokens * Hkv * Dh * a);
  EXPECT_EQ(p[MemPart::KvCache], 112 * MiB);

  // Vision: the tower holds the features of all tiles [T, N, C] plus the buffers of one pass,
  // which on CUDA is all 11 tiles (pixels [3, 448, 448], patches [N, C], seven [Nv, C], MLP hidden
  // [Nv, Fv], each per tile); the projector holds the features, the shuffle and LayerNorm outputs
  // ([T, 256, 4C] each) and two [T, 256, D].
  const uint64_t tower = a * (T * N * C + T * (3 * S * S + N * C + 7 * Nv * C + Nv * Fv));
  const uint64_t projector = a * T * (3 * N * C + 2 * 256 * D);
  EXPECT_GT(tower, projector);
  EXPECT_EQ(p[MemPart::Vision], tower);

  // Prefill: workspace x, n, y [P, D]; q, a [P, H·Dh]; k, v [P, Hkv·Dh]; gate, up [P, F];
  // embeddings E [P, D]; the decode input [1, D]; I64 positions (device and host) and ids.
  const uint64_t P = kPrefillTokensCuda;
  EXPECT_EQ(p[MemPart::Prefill], a * (P * (3 * D + 2 * H * Dh + 2 * Hkv * Dh + 2 * F + D) + D) + 3 * 8 * P);

  EXPECT_EQ(p[MemPart::Logits], 4 * V);  // F32 [V]

  // cuBLASLt 32 MiB; attention partials ceil(4096/64) = 64 splits × 12 heads × 130 floats (< 1 MiB,
  // so the 1 MiB minimum); sampling 37 B × V + 1 MiB; im2col of one pass (all 11 tiles)
  // [11 · 1024, 3·14·14] BF16.
  const uint64_t attention = 1 * MiB;
  EXPECT_LT(64 * H * (Dh + 2) * 4, attention);
  const uint64_t sampling = 37 * V + MiB;
  const uint64_t im2col = T * N * 3 * Px * Px * 2;
  EXPECT_EQ(p[MemPart::Workspaces], 32 * MiB + attention + sampling + im2col);

  // Margin: 256 MiB + 5% of everything else.
  const uint64_t rest = p[MemPart::Weights] + p[MemPart::KvCache] + p[MemPart::Vision] + p[MemPart::Prefill] +
                        p[MemPart::Logits] + p[MemPart::Workspaces];
  EXPECT_EQ(p[MemPart::Margin], 256 * MiB + rest * 5 / 100);
  EXPECT_EQ(p.total(), rest + p[MemPart::Margin]);
  EXPECT_EQ(p.needed(), p.total());  // on CUDA the weights count too
}

TEST(MemoryPlan, Sailvl2bOnCpuLeavesTheMmappedWeightsOut) {
  const model::ModelConfig cfg = sailvl_2b();
  const uint64_t weights = 2 * sailvl_2b_params();
  const runtime::MemoryPlan p = runtime::plan_memory(cfg, Device::cpu(), DType::F32, workload(), weights);
  const uint64_t a = 4;  // F32 activations
  EXPECT_EQ(p[MemPart::Weights], weights);
  EXPECT_EQ(p[MemPart::KvCache], 2 * L * kKvTokens * Hkv * Dh * a);  // 56 KiB per token
  EXPECT_EQ(p[MemPart::KvCache], 224 * MiB);
  // Per thread: the GEMM packing buffers (MC × KC + KC × NC = 120 × 256 + 256 × 4096 floats) + the
  // larger of 64 rows of causal attention scores over 4096 keys and 128 rows over a tile's 1025
  // tokens, each plus q and out rows (Dh 128 / 64); once: one tile's im2col columns in F32.
  const uint64_t panels = (120 * 256 + 256 * 4096) * 4;
  const uint64_t scores = std::max<uint64_t>(64 * (kKvTokens + 2 * Dh) * 4, 128 * (Nv + 2 * 64) * 4);
  EXPECT_EQ(p[MemPart::Workspaces], 2 * (panels + scores) + N * 3 * Px * Px * 4);
  EXPECT_EQ(p.prefill_tokens, kPrefillTokensCpu);
  const uint64_t rest =
      p[MemPart::KvCache] + p[MemPart::Vision] + p[MemPart::Prefill] + p[MemPart::Logits] + p[MemPart::Workspaces];
  EXPECT_EQ(p[MemPart::Margin], 64 * MiB + rest * 5 / 100);  // 5% of the counted parts only
  EXPECT_EQ(p.needed(), rest + p[MemPart::Margin]);
  EXPECT_EQ(p.total(), p.needed() + weights);
}

TEST(MemoryPlan, PromptBoundAndContextSizeTheTokenCounts) {
  const model::ModelConfig cfg = sailvl_2b();
  runtime::Workload w = workload();
  w.prompt_tokens = 1000;  // a known prompt: the cache holds it and the new tokens only
  runtime::MemoryPlan p = runtime::plan_memory(cfg, Device::cuda(0), DType::BF16, w, 0);
  EXPECT_EQ(p.prefill_tokens, 1000);
  EXPECT_EQ(p.kv_tokens, 1000 + 512);
  w.prompt_tokens = 0;
  w.context = 0;  // the model's own limit: max_position_embeddings = 32768
  p = runtime::plan_memory(cfg, Device::cuda(0), DType::BF16, w, 0);
  EXPECT_EQ(p.kv_tokens, 32768);
  EXPECT_EQ(p.prefill_tokens, 8192);  // one chunk
  w.sequences = 4;                    // the server's slots: a cache and logits each
  const runtime::MemoryPlan p4 = runtime::plan_memory(cfg, Device::cuda(0), DType::BF16, w, 0);
  EXPECT_EQ(p4[MemPart::KvCache], 4 * p[MemPart::KvCache]);
  EXPECT_EQ(p4[MemPart::Logits], 4 * p[MemPart::Logits]);
  w.sequences = 1;
  w.tiles = 0;  // no images: no vision activations, no im2col scratch
  p = runtime::plan_memory(cfg, Device::cuda(0), DType::BF16, w, 0);
  EXPECT_EQ(p[MemPart::Vision], 0u);
  EXPECT_EQ(p.detail[static_cast<size_t>(MemPart::Vision)], "no images");
}

TEST(MemoryPlan, FittingPlanPassesAndOneByteShortIsOutOfMemoryNamingEveryPart) {
  const runtime::MemoryPlan p = runtime::plan_memory(sailvl_2b(), Device::cuda(0), DType::BF16, workload(),
                                                     runtime::bf16_checkpoint_bytes(sailvl_2b(), /*stored_head=*/true));
  EXPECT_NO_THROW(runtime::check_fits(p, p.needed()));
  try {
    runtime::check_fits(p, p.needed() - 1);
    FAIL() << "expected ErrorKind::OutOfMemory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_EQ(e.exit_code(), 6);
    const std::string msg = e.what();
    for (const char* part : {"weights", "KV cache", "vision activations", "LLM prefill activations", "logits",
                             "library workspaces", "safety margin", "total", "free", "cudaMemGetInfo"})
      EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in:\n" << msg;
    EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("before loading any weights"), std::string::npos) << msg;
    EXPECT_NE(msg.find("112.0 MiB"), std::string::npos) << msg;  // the KV cache in human units
    for (const char* hint : {"--max-tiles", "-c", "-n", "--device cpu"})
      EXPECT_NE(msg.find(hint), std::string::npos) << "missing hint '" << hint << "' in:\n" << msg;
  }
}

TEST(MemoryPlan, CpuRefusesOnlyWhenTheNonWeightPartDoesNotFit) {
  const uint64_t weights = runtime::bf16_checkpoint_bytes(sailvl_2b(), /*stored_head=*/true);
  const runtime::MemoryPlan p = runtime::plan_memory(sailvl_2b(), Device::cpu(), DType::F32, workload(), weights);
  EXPECT_NO_THROW(runtime::check_fits(p, p.needed()));  // less than the total: weights are page cache
  try {
    runtime::check_fits(p, p.needed() - 1);
    FAIL() << "expected ErrorKind::OutOfMemory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    const std::string msg = e.what();
    for (const char* s : {"page cache", "needed (without weights)", "available", "MemAvailable", "--max-tiles"})
      EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in:\n" << msg;
    EXPECT_EQ(msg.find("--device cpu"), std::string::npos) << msg;
  }
}

TEST(MemoryPlan, FormatsBytesInBinaryUnits) {
  EXPECT_EQ(runtime::format_bytes(1000), "1000 B");
  EXPECT_EQ(runtime::format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(runtime::format_bytes(112 * MiB), "112.0 MiB");
  EXPECT_EQ(runtime::format_bytes(uint64_t{3} << 30), "3.00 GiB");
}

TEST(MemoryPlan, ParsesMemAvailable) {
  EXPECT_EQ(runtime::parse_mem_available("MemTotal:       16318684 kB\nMemFree:  1 kB\nMemAvailable:    8000000 kB\n"),
            uint64_t{8000000} * 1024);
  EXPECT_EQ(runtime::parse_mem_available("MemTotal: 1 kB\n"), std::nullopt);       // old kernels
  EXPECT_EQ(runtime::parse_mem_available("MemAvailable: lots\n"), std::nullopt);   // malformed
  EXPECT_EQ(runtime::parse_mem_available("MemAvailable: 12 MB\n"), std::nullopt);  // not kB
  EXPECT_TRUE(runtime::free_memory(Device::cpu()).has_value());                    // this machine's
}

TEST(MemoryPlan, PromptTokenBoundHoldsWithoutTheTokenizer) {
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(test::data_path("sailvl-tokenizer").string());
  runtime::ChatRequest text;
  text.question = "What is in the picture? Ｆｕｌｌｗｉｄｔｈ and 漢字 and e\xcc\x81";  // NFC-sensitive text
  runtime::ChatRequest one = text;
  one.tiles = {7};
  runtime::ChatRequest two = one;
  two.tiles = {3, 1};
  two.history = {{"<image>\nhi", "hello"}};
  two.question = "<image>\nand this one?";
  two.tiles = {3, 1};
  runtime::ChatRequest frames = one;
  frames.layout = runtime::ImageLayout::Video;
  frames.tiles = {1, 1, 1};
  frames.system_message = "short";
  for (const runtime::ChatRequest* r : {&text, &one, &two, &frames}) {
    const int64_t real = static_cast<int64_t>(runtime::build_chat_prompt(tok, *r).ids.size());
    EXPECT_GE(runtime::max_prompt_tokens(*r), real) << r->question;
  }
}

TEST(MemoryPlan, KvCacheAndPrefillEqualWhatTheModelAllocates) {
  // The formulas against the real buffers of a loaded model (tiny preset, CPU, F32).
  const model::SailVL m = model::SailVL::load(test::tiny_model("tiny-internvit").string());
  runtime::Workload w;
  w.context = 300;
  w.max_new_tokens = 20;
  w.prompt_tokens = 100;
  const runtime::MemoryPlan p =
      runtime::plan_memory(m.config(), Device::cpu(), DType::F32, w, m.weights().total_bytes());
  EXPECT_EQ(p[MemPart::Weights], m.weights().total_bytes());
  EXPECT_EQ(p[MemPart::KvCache], m.llm().make_cache(p.kv_tokens).nbytes());

  const model::LlmWorkspace ws = m.llm().make_workspace(p.prefill_tokens);
  uint64_t ws_bytes = 0;
  for (const Tensor* t : {&ws.x, &ws.n, &ws.q, &ws.k, &ws.v, &ws.a, &ws.y, &ws.gate, &ws.up, &ws.positions})
    ws_bytes += t->nbytes();
  const uint64_t P = static_cast<uint64_t>(p.prefill_tokens), Dm = static_cast<uint64_t>(m.config().llm.hidden);
  // + the prompt embeddings E [P, D] and the decode input [1, D] (F32), + I64 ids and image-row indices
  EXPECT_EQ(p[MemPart::Prefill], ws_bytes + 4 * P * Dm + 4 * Dm + 16 * P);
}

TEST(MemoryPlan, LoadWithPreflightRefusesBeforeBindingAndPassesWhenItFits) {
  const std::string dir = test::tiny_model("tiny-aimv2").string();
  model::LoadOptions opt;
  opt.before_weights = runtime::preflight(Device::cpu(), workload(), 1000);
  try {
    model::SailVL::load(dir, Device::cpu(), opt);
    FAIL() << "expected ErrorKind::OutOfMemory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("assumed, not measured"), std::string::npos) << e.what();
  }
  opt.before_weights = runtime::preflight(Device::cpu(), workload(), uint64_t{1} << 40);
  EXPECT_NO_THROW(model::SailVL::load(dir, Device::cpu(), opt));
}
