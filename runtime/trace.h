// `--trace`: the forward pass as it runs, one line per op, for readers who want to watch the model
// work (what llama.cpp's eval callback or HF's output_hidden_states show, as a transcript).
//
//   prefill
//     embedding          ids I64[7], table BF16[151936, 1536] -> F32[7, 1536]  | mean ... std ... max|x| ...
//     layer 0 of 28
//       rms_norm         x F32[7, 1536], w F32[1536] -> F32[7, 1536]  | mean ... std ... max|x| ...
//       linear           x F32[7, 1536], w BF16[1536, 1536], b F32[1536] -> F32[7, 1536]  | ...
//       ...
//     ... layers 1-26 not shown (390 ops)
//     layer 27 of 28
//       ...
//     rms_norm           ...
//     linear             x F32[1, 1536], w BF16[151936, 1536] -> F32[1, 151936]  | ...
//   sampling step 0
//     sample             logits F32[151936] -> token 1234 (greedy)
//
// A stage's name starts a line at the margin (a decode step is its own "decode step N"); ops
// outside the layer loops are indented once, a stack's layers once with their ops twice. Each op
// line: the op, its inputs (name dtype[shape], in argument order), "->" and its output's
// dtype[shape] (a quantised weight: its format, logical shape and group, "w q4[896, 4864] g32"),
// then a note in parentheses when the shapes do not say everything (attention's mask and cached
// keys, the sampler's mode). For ops outside the layers and in the first and last layer of each
// stack, "| mean m std s max|x| a" summarises the output (over all its elements, in double), so a
// reader can watch the values flow; in the other layers the statistic is left out (it costs a pass
// over the output, and on a GPU a copy to the host and a wait). `layers` keeps only those layers of
// every stack (negative: from the end; e.g. {0, 1, -1}); the layers left out are summed up in one
// "... layers a-b not shown" line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tensor/observe.h"

namespace sailvl::runtime {

struct TraceOptions {
  std::vector<int64_t> layers;  // the layers to show (negative: from the end of the stack); empty: all
};

// "0,1,-1" -> {0, 1, -1}; throws ErrorKind::Usage naming `flag` on anything else.
std::vector<int64_t> parse_trace_layers(const std::string& text, const std::string& flag = "--trace-layers");

class Tracer final : public Observer {
 public:
  explicit Tracer(std::FILE* out, TraceOptions opt = {});

  void stage_entered(const Stage& s) override;
  void stage_left(const Stage& s) override;
  void layer_entered(int64_t layer, int64_t layers) override;
  void layer_left(int64_t layer, int64_t layers) override;
  void op_end(const OpCall& c) override;

  // One op line as the trace prints it, without indentation or statistic (tests, docs).
  static std::string describe(const OpCall& c);

 private:
  bool shown(int64_t layer, int64_t layers) const;
  void flush_skipped();
  void print(int indent, const std::string& text);

  std::FILE* out_;
  TraceOptions opt_;
  int64_t layer_ = -1, layers_ = 0;  // the layer being run (-1: none)
  bool layer_shown_ = true;
  int64_t skip_first_ = -1, skip_last_ = -1, skip_ops_ = 0;  // layers not shown since the last line
};

}  // namespace sailvl::runtime
