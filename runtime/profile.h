// `--profile`: where the time of a run goes, stage by stage and op by op, and how far each op is
// from what this machine can do.
//
//   runtime::Profiler prof(model.device());
//   {
//     ObserverScope watch(&prof);                        // tensor/observe.h
//     prof.begin();
//     session.ask(question, images, gen);
//     prof.end();
//   }
//   const runtime::Profile p = prof.result(runtime::measure_limits(device));
//   std::cerr << runtime::format_profile(p);
//
// Stages are the StageScopes the runtime opens (tensor/stage.h): preprocess, vision, projector,
// prefill, decode (a decode step's sampling is counted in decode). A stage's time is its wall time
// on the host's steady clock from entering to leaving; each stage's end waits for the device
// (model::finish_stage), so on a GPU too it is the time the stage really took. Time spent in a
// stage nested inside another counts for the inner one only.
//
// Inside a stage, one row per op kind: calls, time, share of the stage, bytes moved and FLOPs
// (ops/op_cost.h: from the shapes), the rates they give, and % of limit:
//
//   limit time = max(bytes / memory limit, FLOPs / compute limit)     (the roofline)
//   % of limit = limit time / measured time;  bound = whichever term is larger
//
// with the limits measured in-process by the probes `sailvl bench` uses (ops/probes.h): on the CPU
// the read-bandwidth probe (the faster of its two bandwidth probes, so no op is flattered) and the
// F32 FMA probe; on CUDA the device-to-device copy and the cuBLASLt BF16 GEMM probes. The memory
// limit is the DRAM's: an op whose operands were still in cache (a small tensor written by the op
// before) can show more than 100 %. The row
// "(outside ops)" is the stage's time in no op: host work between ops (tensor copies, allocation,
// the decode loop's bookkeeping). Op times:
//   CPU   steady clock before and after each op (CPU ops return when done);
//   CUDA  an event recorded on the op stream before and after each op (ops/timing.h), resolved
//         when the stage ends: nothing inside the forward pass waits for the device. Each op costs
//         the host two cudaEventRecord calls while profiling. Kernel launches are counted per op
//         (tensor/cuda_runtime.h: cuda::launches), so the decode stage says how many one token takes.
// When no Profiler is installed nothing of this runs (tensor/observe.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/timing.h"
#include "tensor/observe.h"

namespace sailvl::runtime {

// The two ceilings every op is compared with.
struct Limits {
  double memory_gbs = 0;      // bytes per second, GB/s (0: unknown)
  std::string memory_probe;   // "read (ops/probes.h)" ...
  double compute_gflops = 0;  // FLOP/s, GFLOP/s (0: unknown)
  std::string compute_probe;
  std::string error;  // why a probe could not run (the limits are then 0 and % of limit is not shown)
};
// The probes on `device` (~0.5 s on a CPU; on a GPU they need 2 GiB free for a moment). Never
// throws: a probe that fails leaves its limits at 0 and says why in `error`.
Limits measure_limits(const Device& device);

struct ProfileOp {
  std::string op;  // "linear", ... or a host step ("resize+normalize", "upload")
  int64_t calls = 0;
  double ms = 0;
  double share = 0;  // % of the stage's time
  double bytes = 0, flops = 0;
  double gbs = 0, gflops = 0;    // bytes / time, FLOPs / time (GB/s, GFLOP/s)
  double percent_of_limit = -1;  // -1: no cost counted or no limits
  std::string bound;             // "memory", "compute" or ""
  uint64_t launches = 0;         // CUDA kernel launches (0 on the CPU)
};

struct ProfileStage {
  std::string name;
  int64_t entries = 0;  // times the stage was entered (decode: one per forward step)
  double ms = 0;
  double share = 0;                          // % of the profiled span
  std::vector<ProfileOp> ops;                // slowest first
  double outside_ms = 0, outside_share = 0;  // the stage's time in no op
  uint64_t launches = 0;                     // every kernel launch inside the stage
  // decode: forward steps and samples (the sampling steps counted in it), and per token
  int64_t steps = 0, samples = 0;
  double launches_per_token = 0;  // forward launches / steps + sampling launches / samples
};

struct Profile {
  std::string device;
  int threads = 0;
  Limits limits;
  double span_ms = 0;                        // begin() .. end()
  std::vector<ProfileStage> stages;          // preprocess, vision, projector, prefill, decode, then others
  double outside_ms = 0, outside_share = 0;  // the span's time in no stage
  std::string error;                         // a failure of the CUDA op timing (rows incomplete)
};

class Profiler final : public Observer {
 public:
  explicit Profiler(const Device& device);  // the model's device
  ~Profiler();

  // The profiled span: begin() forgets everything recorded so far and starts the span's clock.
  void begin();
  void end();
  // The table's numbers, against `limits` (measure_limits).
  Profile result(const Limits& limits) const;

  void stage_entered(const Stage& s) override;
  void stage_left(const Stage& s) override;
  void op_begin(const OpCall& c) override;
  void op_end(const OpCall& c) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Row {
    std::string op;
    int64_t calls = 0;
    double ms = 0, bytes = 0, flops = 0;
    uint64_t launches = 0;
  };
  struct StageRec {
    std::string name;  // the StageScope's name ("sampling" kept apart here, merged into decode by result())
    int64_t entries = 0;
    double ms = 0;
    uint64_t launches = 0;
    std::vector<Row> rows;
  };
  struct Open {  // a stage on the stack of entered stages
    size_t stage;
    Clock::time_point since;
    uint64_t launches_since;
  };
  struct Pending {  // a CUDA op whose time is known once its stage ends
    size_t stage, row, from, to;
  };

  size_t stage_index(const char* name);
  size_t row_index(StageRec& s, const char* op);
  void resolve_marks();  // the CUDA ops' times, once their stage is over

  Device device_;
  std::vector<StageRec> stages_;
  std::vector<Open> open_;
  Clock::time_point span_begin_{}, span_end_{};
  bool running_ = false;
  // The op in flight (ops do not nest).
  Clock::time_point op_since_{};
  uint64_t op_launches_ = 0;
  size_t op_mark_ = 0;
  ops::StreamMarks marks_;
  std::vector<Pending> pending_;
  std::string error_;  // a CUDA failure while timing (the profile is then incomplete)
};

// The table `--profile` prints on stderr: the stages, then each stage's ops.
std::string format_profile(const Profile& p);
// The same numbers for `--json` (times in ms, bytes and FLOPs as counts, rates in GB/s and GFLOP/s).
nlohmann::ordered_json profile_json(const Profile& p);

}  // namespace sailvl::runtime
