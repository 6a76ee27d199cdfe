// The current model stage (see stage.h).
#include "tensor/stage.h"

#include "tensor/error.h"
#include "tensor/observe.h"

namespace sailvl {

namespace {
// Plain data, constant-initialised: no TLS constructor, no allocation.
thread_local Stage t_stage;
}  // namespace

Stage current_stage() { return t_stage; }

std::string stage_label(const Stage& s) {
  if (!s.name) return {};
  return s.step >= 0 ? str_cat(s.name, " step ", s.step) : std::string(s.name);
}

StageScope::StageScope(const char* name, int64_t step) noexcept : prev_(t_stage) {
  t_stage = Stage{name, step};
  if (Observer* o = observer()) o->stage_entered(t_stage);
}

StageScope::~StageScope() {
  if (Observer* o = observer()) o->stage_left(t_stage);
  t_stage = prev_;
}

LayerScope::LayerScope(int64_t layer, int64_t layers) noexcept : layer_(layer), layers_(layers) {
  if (Observer* o = observer()) o->layer_entered(layer_, layers_);
}

LayerScope::~LayerScope() {
  if (Observer* o = observer()) o->layer_left(layer_, layers_);
}

std::string cuda_error_message(const char* what, const char* expr, const char* file, int line) {
  const std::string stage = stage_label(current_stage());
  // Kernels run asynchronously: their errors surface at a later call, which is where we notice them.
  return str_cat("CUDA error", stage.empty() ? "" : " during " + stage, ": ", what, " in ", expr, " at ", file, ":",
                 line,
                 "\na sticky CUDA error leaves the device unusable for the rest of this process, so it exits"
                 " (CUDA_LAUNCH_BLOCKING=1 reports a kernel's error at its launch)");
}

}  // namespace sailvl
