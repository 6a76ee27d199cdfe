// GPU time of single ops without synchronising inside the forward pass (`--profile` on CUDA).
//
// A mark is a CUDA event recorded on a device's op stream (ops/cuda/context.h) when the host reaches
// it; the stream passes it when the work enqueued before it has run. Marking before and after each
// op and, once the stage is over (its end synchronised the device anyway: model::finish_stage),
// waiting for the last mark gives every op's time on the GPU:
//
//   StreamMarks m;
//   const size_t a = m.mark(dev);  ops::linear(...);  const size_t b = m.mark(dev);
//   ...                                                 // the rest of the stage, no waiting
//   m.wait();  m.ms_between(a, b);  m.clear();          // after the stage; the events are reused
//
// When the host launches more slowly than the GPU runs (small decode ops), the GPU reaches a
// before-mark and then waits for the op's own launch: that wait is in the op's time, so the ops of
// a launch-bound stage add up to about its wall time. Without the CUDA backend mark() throws
// ErrorKind::Cuda (there is nothing on a device to time).
#pragma once

#include <cstddef>
#include <memory>

#include "tensor/storage.h"

namespace sailvl::ops {

class StreamMarks {
 public:
  StreamMarks();
  ~StreamMarks();
  StreamMarks(const StreamMarks&) = delete;
  StreamMarks& operator=(const StreamMarks&) = delete;

  size_t mark(const Device& device);      // records an event on the device's op stream; its index
  void wait();                            // until the stream has passed every mark
  double ms_between(size_t a, size_t b);  // GPU milliseconds from mark a to mark b (after wait())
  void clear();                           // forget the marks (their events are reused)
  size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sailvl::ops
