// Internal to image/: Pillow's two-pass BICUBIC resize (resize.cpp) cut into independent work units,
// so that one caller can run them all at once (resize_bicubic) and another on source rows as a
// decoder produces them (preprocess.cpp).
//
// Parallel plan: a unit computes kUnitRows rows of the output, both passes: the intermediate rows
// it needs go to the thread's scratch (L2-sized), never to a whole intermediate image. Units write
// disjoint output rows and read only source rows, so they run in any order on any thread, and each
// says which source rows it reads, so a streaming caller can run it as soon as those rows exist and
// drop them once it is done. When the horizontal pass comes first, neighbouring units both compute
// the few intermediate rows their windows share (about 12% more horizontal work at 32 output rows
// per unit for a 3x downscale): each intermediate row is a pure function of its source row, so the
// result is unchanged. The integer arithmetic per output pixel is Pillow's whatever the split or the
// thread count: the sums are exact int32 (see resize.cpp), so results are bit-identical.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace sailvl::image::detail {

// Fixed-point filter taps for one axis: output i reads in[start[i] .. start[i] + len[i]) with
// weights k[i * ksize + t] (Pillow's precompute_coeffs + normalize_coeffs_8bpc).
struct AxisCoeffs {
  int64_t lo = 0, hi = 0;  // the union of the input ranges: every output reads inside [lo, hi)
  int64_t ksize = 0;
  std::vector<int32_t> start;
  std::vector<int32_t> len;
  std::vector<int32_t> k;
};
AxisCoeffs precompute_coeffs(int64_t in_size, int64_t out_size);

// Read access to the rows of an RGB8 image that may live in a ring buffer: row y is at
// data + (y % ring) * stride; ring == 0 means every row is present (no wrap).
struct RowReader {
  const uint8_t* data = nullptr;
  int64_t stride = 0;  // bytes from one row to the next
  int64_t ring = 0;
  const uint8_t* row(int64_t y) const { return data + (ring ? y % ring : y) * stride; }
};

// Per-thread scratch of the passes; grows on first use, reused across units.
struct HorizontalScratch {
  std::vector<uint8_t> bytes;  // 16 source rows, transposed (resize.cpp, horizontal_rows)
  std::vector<uint16_t> wide;  // the same, widened to 16 bits
};
struct PassScratch {
  HorizontalScratch horizontal;
  std::vector<int32_t> acc;  // vertical pass: one output row of sums
  std::vector<uint8_t> mid;  // the unit's rows of the intermediate image
};

// An uninitialised byte buffer: pages are touched first by the threads that fill them. Buffers of
// 2 MiB and more are 2 MiB-aligned and advised for transparent huge pages (Linux), so that first
// touch costs one page fault per 2 MiB instead of one per 4 KiB: on the 2-core VM, 4 KiB faults
// were about a third of preprocess_decoded's time. Throws std::bad_alloc.
struct FreeBytes {
  void operator()(uint8_t* p) const;
};
using ByteBuffer = std::unique_ptr<uint8_t[], FreeBytes>;
ByteBuffer make_byte_buffer(int64_t n);

class ResizePlan {
 public:
  static constexpr int64_t kUnitRows = 32;  // output rows per unit

  // Resize an in_w x in_h RGB8 image to out_w x out_h, writing the result (rows of out_w * 3 bytes)
  // to `out`, which the caller owns and keeps alive while units run.
  ResizePlan(int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h, uint8_t* out);

  int64_t units() const { return (out_h_ + kUnitRows - 1) / kUnitRows; }
  // Source rows [lo, hi) that unit u reads; lo and hi never decrease with u.
  std::pair<int64_t, int64_t> source_rows(int64_t u) const;
  // The largest hi - lo over all units (the rows a ring buffer must hold for one unit).
  int64_t max_source_span() const;
  // Writes output rows [u * kUnitRows, (u + 1) * kUnitRows) (fewer for the last unit).
  void run(int64_t u, const RowReader& src, PassScratch& scratch) const;

 private:
  enum class Passes { Copy, Horizontal, Vertical, HorizontalThenVertical, VerticalThenHorizontal };
  int64_t in_w_, in_h_, out_w_, out_h_;
  uint8_t* out_;
  Passes passes_ = Passes::Copy;
  AxisCoeffs ch_, cv_;
};

}  // namespace sailvl::image::detail
