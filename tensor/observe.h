// Watching the forward pass: the one hook behind `--profile` and `--trace`.
//
// Every op goes through ops/dispatch.cpp, every stage runs in a StageScope and every layer of a
// stack in a LayerScope (tensor/stage.h). While an Observer is installed on a thread, those three
// places tell it what that thread does, in order:
//
//   stage_entered(vision)
//     op_begin(patch_embed) op_end(patch_embed) ...
//     layer_entered(0, 24)  op_begin(layer_norm) op_end(layer_norm) ...  layer_left(0, 24)
//     ...
//   stage_left(vision)
//
// Nothing is installed by default. Then each of those places costs one thread-local load and a
// branch that is always taken the same way: no clock is read, no cost is computed, no string is
// built (ops/dispatch.cpp fills an OpCall only when someone watches).
//
// The observer runs on the computing thread, inside the forward pass: it must be quick and must
// not throw (stage_left and layer_left are called from destructors, also while an exception
// unwinds). Ops issued by other threads (the server's scheduler) are not seen.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "tensor/stage.h"
#include "tensor/tensor.h"

namespace sailvl {

// One operand as the observer sees it: its name in ops/ops.h and the tensor (or, for a quantised
// weight, a description of it: "q4[896, 4864] g32", since its data tensor is packed codes).
struct OpArg {
  const char* name = nullptr;
  const Tensor* tensor = nullptr;
  std::string text;  // replaces the tensor's dtype[shape] when not empty
};

// One op call, described from its shapes before it runs.
struct OpCall {
  const char* op = nullptr;     // the op's name in ops/ops.h ("linear", "attention", ...), or a host step's
  Device device;                // where it runs
  const Tensor* out = nullptr;  // the tensor it writes (the same as an input when in place); nullptr: none
  std::array<OpArg, 4> in{};    // its inputs in argument order
  int n_in = 0;
  std::string note;     // what the shapes do not say: "causal, 12 cached keys"; empty: nothing
  double flops = 0;     // 2 per multiply-add, for the ops model/cost.h counts (linear, attention, patch_embed)
  double bytes = 0;     // every operand read once and every output written once (ops/op_cost.h)
  int64_t result = -1;  // sample: the token chosen (set before op_end)

  void add_input(const char* name, const Tensor* t, std::string text = {}) {
    if (n_in < static_cast<int>(in.size())) in[static_cast<size_t>(n_in++)] = {name, t, std::move(text)};
  }
};

class Observer {
 public:
  virtual void stage_entered(const Stage& s) {}
  virtual void stage_left(const Stage& s) {}  // `s`: the stage being left
  virtual void layer_entered(int64_t layer, int64_t layers) {}
  virtual void layer_left(int64_t layer, int64_t layers) {}
  virtual void op_begin(const OpCall& c) {}
  virtual void op_end(const OpCall& c) {}

 protected:
  ~Observer() = default;  // not owned through this interface
};

namespace detail {
inline constinit thread_local Observer* t_observer = nullptr;
}

// This thread's observer; nullptr when nobody watches (the default).
inline Observer* observer() { return detail::t_observer; }

// Installs `o` on this thread for the scope's lifetime; the previous observer comes back after.
class ObserverScope {
 public:
  explicit ObserverScope(Observer* o) noexcept : prev_(detail::t_observer) { detail::t_observer = o; }
  ~ObserverScope() { detail::t_observer = prev_; }
  ObserverScope(const ObserverScope&) = delete;
  ObserverScope& operator=(const ObserverScope&) = delete;

 private:
  Observer* prev_;
};

// A step of the host's own (not an op of ops/ops.h: image tiling, the upload of the pixels), shown
// to the observer as an op so the profile and the trace account for it. `out`, if set before the
// scope ends, is reported as the step's result, and `bytes` as the bytes it moved. It runs on the
// host and is timed by the host's clock.
//
//   { HostStep step("tile+normalize"); px = image::preprocess_decoded(...); step.out = &px.pixels; }
class HostStep {
 public:
  explicit HostStep(const char* name) noexcept : o_(observer()) {
    if (!o_) return;
    call_.op = name;
    o_->op_begin(call_);
  }
  ~HostStep() {
    if (!o_) return;
    call_.out = out;
    call_.bytes = bytes;
    o_->op_end(call_);
  }
  HostStep(const HostStep&) = delete;
  HostStep& operator=(const HostStep&) = delete;

  const Tensor* out = nullptr;
  double bytes = 0;

 private:
  Observer* o_;
  OpCall call_;
};

}  // namespace sailvl
