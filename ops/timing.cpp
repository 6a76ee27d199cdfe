// Event marks on the op stream: see timing.h.
#include "ops/timing.h"

#include <vector>

#include "tensor/error.h"
#ifdef SAILVL_HAS_CUDA
#include "ops/cuda/context.h"
#endif

namespace sailvl::ops {

#ifdef SAILVL_HAS_CUDA

struct StreamMarks::Impl {
  std::vector<sailvl::cuda::Event> events;  // grows to the most marks of one stage, then reused
  size_t used = 0;
};

StreamMarks::StreamMarks() : impl_(std::make_unique<Impl>()) {}
StreamMarks::~StreamMarks() = default;

size_t StreamMarks::mark(const Device& device) {
  SAILVL_CHECK(device.is_cuda(), Internal, "StreamMarks::mark on ", device.str());
  Impl& m = *impl_;
  if (m.used == m.events.size()) {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDefault));  // with timing
    m.events.emplace_back(e);
  }
  CUDA_CHECK(cudaEventRecord(m.events[m.used].get(), cuda::Context::get(device.index).stream()));
  return m.used++;
}

void StreamMarks::wait() {
  if (impl_->used > 0) CUDA_CHECK(cudaEventSynchronize(impl_->events[impl_->used - 1].get()));
}

double StreamMarks::ms_between(size_t a, size_t b) {
  SAILVL_CHECK(a < impl_->used && b < impl_->used, Internal, "StreamMarks: mark ", a, " or ", b, " of ", impl_->used);
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, impl_->events[a].get(), impl_->events[b].get()));
  return ms;
}

void StreamMarks::clear() { impl_->used = 0; }
size_t StreamMarks::size() const { return impl_->used; }

#else

struct StreamMarks::Impl {};
StreamMarks::StreamMarks() = default;
StreamMarks::~StreamMarks() = default;
size_t StreamMarks::mark(const Device& device) {
  fail(ErrorKind::Cuda, "cannot time an op on ", device.str(), ": sailvl was built without CUDA");
}
void StreamMarks::wait() {}
double StreamMarks::ms_between(size_t, size_t) { return 0; }
void StreamMarks::clear() {}
size_t StreamMarks::size() const { return 0; }

#endif

}  // namespace sailvl::ops
