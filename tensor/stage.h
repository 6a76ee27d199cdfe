// Which stage of the model the current thread is in, so a CUDA failure can say where it happened.
//
//   { StageScope s("vision"); tower.forward(pixels); }     // "vision" inside, the previous stage after
//   for (int64_t step = 0;; ++step) {
//     StageScope s("decode", step);                         // "decode step 12"
//     ...
//   }
//
// A stage is a name with static storage (a string literal) and an optional step number, kept in a
// thread-local slot: entering and leaving a scope are a few stores, no allocation, so the decode
// loop can set one every step. Scopes nest; leaving one restores the stage that was current when
// it was entered. The CUDA checks (tensor/cuda/check.h) read it through cuda_error_message().
// Nothing here depends on CUDA.
//
// Inside a stage, the model's loops over a stack of layers mark each layer with a LayerScope:
//
//   for (int64_t l = 0; l < nl; ++l) {
//     LayerScope layer(l, nl);                              // layer l of the nl this stack runs
//     ...
//   }
//
// Both scopes tell the thread's Observer (tensor/observe.h: --profile, --trace) when one is
// installed; when none is, a LayerScope costs one thread-local load and a branch.
#pragma once

#include <cstdint>
#include <string>

namespace sailvl {

struct Stage {
  const char* name = nullptr;  // nullptr: outside any stage
  int64_t step = -1;           // >= 0: shown as "<name> step <step>"
};

// The innermost stage entered on this thread and not yet left ({nullptr, -1} when none).
Stage current_stage();

// "vision", "decode step 12"; empty outside any stage.
std::string stage_label(const Stage& s);

class StageScope {
 public:
  // `name` must outlive the scope (pass a string literal).
  explicit StageScope(const char* name, int64_t step = -1) noexcept;
  ~StageScope();
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;

 private:
  Stage prev_;
};

// Layer `layer` of a stack of `layers` (a vision tower's, the LLM's), for the Observer.
class LayerScope {
 public:
  LayerScope(int64_t layer, int64_t layers) noexcept;
  ~LayerScope();
  LayerScope(const LayerScope&) = delete;
  LayerScope& operator=(const LayerScope&) = delete;

 private:
  int64_t layer_, layers_;
};

// The message of a failed CUDA / cuBLAS call: the current stage, the error's name, the call
// and its place, then one line on why the process stops.
//   CUDA error during vision: cudaErrorIllegalAddress in cudaMemcpy(...) at ops/cuda/x.cu:42
//   a sticky CUDA error leaves the device unusable for the rest of this process, so it exits ...
std::string cuda_error_message(const char* what, const char* expr, const char* file, int line);

}  // namespace sailvl
