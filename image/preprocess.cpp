// The card's load_image for a batch of images (docs/MODEL.md §3): decode, dynamic_preprocess (one
// resize to the grid, crops, the thumbnail), ToTensor + Normalize, torch.stack. The pixels are
// exactly those of decode_image + dynamic_preprocess + normalize_tiles one image at a time; only the
// order of the work changes.
//
// Parallel plan (OpenMP threads = ops::num_threads()):
//  1. One parallel region runs every image at once. A thread claims the next image not yet being
//     decoded and decodes it (libjpeg/libpng are sequential within one image); its rows go to a ring
//     buffer of that image (decode_rows.h), not to a whole-picture buffer. Each of the image's two
//     resizes (grid and thumbnail, resample.h) is cut into units of 32 output rows, each needing a
//     known range of source rows; as soon as the decoder has produced a unit's rows, any thread
//     runs it. A thread with nothing to decode runs units; a decoder whose ring is full runs units
//     (its own image's first) until the oldest rows are no longer needed.
//  2. After the region, one parallel loop normalises every tile of every image straight from the
//     resize outputs (crop is an offset) into the [T, 3, S, S] tensor, by rows.
// Consequences: one image on N threads costs about its decode time plus a short tail (the units of
// the last rows, normalisation on all threads); several images decode in parallel. Memory per
// image in flight: the ring (a few hundred rows) and the resize outputs, not the decoded picture.
// With one thread the same code decodes until the ring is full, runs the units that free it, and
// so on.
//
// Errors are those of the sequential loop: if images i and j > i both fail, image i's error is
// thrown. A failure of image i cancels the images after it (their results could not be used).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>

#include "image/decode_rows.h"
#include "image/image.h"
#include "image/resample.h"

namespace sailvl::image {

namespace {

using detail::ByteBuffer;
using detail::PassScratch;
using detail::ResizePlan;
using detail::RowReader;

// ---------------------------------------------------------------- ToTensor + Normalize

// torchvision's IMAGENET_MEAN / IMAGENET_STD as float32 (torch.as_tensor(mean, dtype=float32)).
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

// ToTensor + Normalize for every possible byte value, per channel: the op is a pure function of
// (channel, byte), so a 3x256 table gives the same float32 bits as computing it per pixel (and the
// BF16 table the same bits as rounding them).
struct NormalizeTable {
  float f32[3][256];
  uint16_t bf16[3][256];
  NormalizeTable() {
    for (int c = 0; c < 3; ++c)
      for (int u = 0; u < 256; ++u) {
        const float x = static_cast<float>(u) / 255.0f;  // ToTensor: .div(255) in float32
        f32[c][u] = (x - kMean[c]) / kStd[c];            // Normalize: sub_(mean).div_(std)
        bf16[c][u] = f32_to_bf16(f32[c][u]);
      }
  }
};

// An H x W tile of RGB8 inside a larger image: rows `stride` bytes apart.
struct TileView {
  const uint8_t* data;
  int64_t stride;
};

// [T, 3, H, W] from T tiles; parallel over (tile, channel, row).
Tensor normalize_views(const std::vector<TileView>& tiles, int64_t H, int64_t W, DType dtype) {
  static const NormalizeTable table;
  const int64_t T = static_cast<int64_t>(tiles.size());
  Tensor out = Tensor::empty({T, 3, H, W}, dtype);
  float* f32 = dtype == DType::F32 ? out.data<float>() : nullptr;
  uint16_t* bf16 = dtype == DType::BF16 ? out.data<uint16_t>() : nullptr;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < H; ++y) {
        const uint8_t* px = tiles[t].data + y * tiles[t].stride + c;
        const int64_t at = ((t * 3 + c) * H + y) * W;
        if (f32) {
          const float* lut = table.f32[c];
          for (int64_t x = 0; x < W; ++x) f32[at + x] = lut[px[3 * x]];
        } else {
          const uint16_t* lut = table.bf16[c];
          for (int64_t x = 0; x < W; ++x) bf16[at + x] = lut[px[3 * x]];
        }
      }
    }
  }
  return out;
}

void check_dtype(DType dtype) {
  SAILVL_CHECK(dtype == DType::F32 || dtype == DType::BF16, Usage, "pixel dtype must be F32 or BF16 (got ",
               dtype_name(dtype), ")");
}

// ---------------------------------------------------------------- one image's work

// A unit of a resize, `plan->run(index)`, reading source rows [lo, hi).
struct Unit {
  const ResizePlan* plan;
  int64_t index;
  int64_t lo, hi;
};

// Source rows kept beyond what one unit needs: the decoder may run ahead of the resizes by this
// much. On 2 threads the decoder and the resizes go at about the same speed; with 128 rows the
// decoder often found the ring full and stopped to run a unit itself (4000x3000 JPEG: 71-75 ms),
// with 512 it rarely does (57-58 ms); keeping every row (no wrap) was slower again (61-63 ms, the
// page faults of a whole-picture buffer). 512 rows of a 4000-px image are 6 MiB.
constexpr int64_t kRingSlackRows = 512;

// Everything about one image. Written by one thread until `sized` is set (release), read-only for
// the others after they see it (acquire); the atomics carry the progress.
struct Job {
  // Input: a file to decode, or a decoded image.
  const std::string* path = nullptr;
  const RgbImage* decoded = nullptr;

  // Set up once the size is known (setup()).
  int64_t width = 0, height = 0;
  TileGrid grid;
  ByteBuffer grid_pixels, thumb_pixels;  // the resize outputs: (S*cols x S*rows) and (S x S), RGB8
  std::optional<ResizePlan> grid_plan, thumb_plan;
  std::vector<Unit> units;  // units of both plans, ordered by the last row they need
  std::unique_ptr<std::atomic<bool>[]> unit_done;
  ByteBuffer ring;  // decoded source rows, row y in slot y % ring_rows (files only)
  int64_t ring_rows = 0;
  RowReader reader;

  // Progress.
  std::atomic<bool> sized{false};                        // setup() done
  std::atomic<int64_t> rows{0};                          // source rows available to reader
  std::atomic<bool> rows_complete{false};                // every source row has been delivered
  std::atomic<int64_t> next_unit{0}, units_finished{0};  // claimed / finished units
  std::atomic<bool> ring_released{false};
  std::atomic<bool> failed{false};
  std::atomic<bool> error_taken{false};
  std::exception_ptr error;  // written once, by whoever sets error_taken

  void setup(int64_t w, int64_t h, const PreprocessOptions& opt) {
    const int64_t S = opt.image_size;
    width = w;
    height = h;
    grid = choose_grid(w, h, opt.max_tiles, S);
    grid_pixels = detail::make_byte_buffer(S * grid.cols * S * grid.rows * 3);
    grid_plan.emplace(w, h, S * grid.cols, S * grid.rows, grid_pixels.get());
    if (opt.use_thumbnail && grid.tiles() != 1) {
      thumb_pixels = detail::make_byte_buffer(S * S * 3);
      thumb_plan.emplace(w, h, S, S, thumb_pixels.get());
    }
    int64_t span = 0;
    for (const std::optional<ResizePlan>* p : {&grid_plan, &thumb_plan}) {
      if (!p->has_value()) continue;
      const ResizePlan& plan = **p;
      for (int64_t u = 0; u < plan.units(); ++u) {
        const auto [lo, hi] = plan.source_rows(u);
        units.push_back({&plan, u, lo, hi});
      }
      span = std::max(span, plan.max_source_span());
    }
    std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.hi < b.hi; });
    unit_done = std::make_unique<std::atomic<bool>[]>(units.size());
    if (decoded) {
      reader = {decoded->pixels.data(), w * 3, 0};
    } else {
      ring_rows = std::min(h, span + kRingSlackRows);
      ring = detail::make_byte_buffer(ring_rows * w * 3);
      reader = {ring.get(), w * 3, ring_rows};
    }
  }

  // Frees the ring once the decoder and every unit are done with it (both sides call this after
  // their last use; whichever comes second frees it), so that a long batch keeps one ring per image
  // in flight, not one per image.
  void release_ring_if_done() {
    if (rows_complete.load(std::memory_order_acquire) &&
        units_finished.load(std::memory_order_acquire) == static_cast<int64_t>(units.size()) &&
        !ring_released.exchange(true, std::memory_order_acq_rel))
      ring.reset();
  }

  bool finished() const {
    if (failed.load(std::memory_order_acquire)) return true;
    if (!sized.load(std::memory_order_acquire) || !rows_complete.load(std::memory_order_acquire)) return false;
    return units_finished.load(std::memory_order_acquire) == static_cast<int64_t>(units.size());
  }
};

// The parallel region's shared state and the loop every thread runs.
class Scheduler {
 public:
  Scheduler(Job* jobs, int64_t n, const PreprocessOptions& opt, const ImageLimits& limits)
      : jobs_(jobs), n_(n), opt_(opt), limits_(limits), first_failed_(n) {}

  void run_thread() {
    PassScratch scratch;
    int idle = 0;
    for (;;) {
      const int64_t d = next_decode_.fetch_add(1, std::memory_order_relaxed);
      if (d < n_) {
        decode(d, scratch);
        idle = 0;
        continue;
      }
      if (run_one_unit(0, scratch)) {
        idle = 0;
        continue;
      }
      if (all_finished()) return;
      pause(idle);
    }
  }

  // For decoded images: nothing to decode.
  void skip_decoding() { next_decode_.store(n_); }

  bool cancelled(int64_t i) const { return i > first_failed_.load(std::memory_order_acquire); }

  void fail(int64_t i, std::exception_ptr e) {
    Job& j = jobs_[i];
    if (!j.error_taken.exchange(true, std::memory_order_acq_rel)) j.error = e;
    j.failed.store(true, std::memory_order_release);
    int64_t f = first_failed_.load(std::memory_order_acquire);
    while (i < f && !first_failed_.compare_exchange_weak(f, i, std::memory_order_acq_rel)) {
    }
  }

  // Runs one ready unit, trying image `preferred` first; false if none was ready.
  bool run_one_unit(int64_t preferred, PassScratch& scratch) {
    if (try_unit(preferred, scratch)) return true;
    for (int64_t i = 0; i < n_; ++i)
      if (i != preferred && try_unit(i, scratch)) return true;
    return false;
  }

  static void pause(int& idle) {
    // A unit takes about a millisecond: yield a few times, then sleep briefly rather than take a
    // core from the decoder (or from a hyperthread sibling that is decoding).
    if (++idle < 8) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  int64_t first_failed() const { return first_failed_.load(); }

 private:
  // The decoder's sink: rows go to the job's ring; a full ring makes the decoder run units.
  class RingSink final : public detail::RowSink {
   public:
    RingSink(Scheduler& s, int64_t index, PassScratch& scratch)
        : s_(s), i_(index), j_(s.jobs_[index]), scratch_(scratch) {}

    bool begin(int64_t width, int64_t height) noexcept override {
      try {
        j_.setup(width, height, s_.opt_);
      } catch (...) {
        s_.fail(i_, std::current_exception());
        return false;
      }
      j_.sized.store(true, std::memory_order_release);
      return true;
    }

    uint8_t* row(int64_t y) noexcept override {
      int idle = 0;
      while (y >= writable_end_) {
        if (s_.cancelled(i_) || j_.failed.load(std::memory_order_acquire)) return nullptr;
        writable_end_ = lowest_needed() + j_.ring_rows;
        if (y < writable_end_) break;
        if (s_.run_one_unit(i_, scratch_)) {
          idle = 0;
        } else {
          pause(idle);
        }
      }
      if (s_.cancelled(i_)) return nullptr;
      return j_.ring.get() + (y % j_.ring_rows) * j_.width * 3;
    }

    void rows_done(int64_t rows) noexcept override { j_.rows.store(rows, std::memory_order_release); }

   private:
    // The lowest source row a unit not yet finished still reads (height if none).
    int64_t lowest_needed() {
      const int64_t n = static_cast<int64_t>(j_.units.size());
      while (oldest_open_ < n && j_.unit_done[oldest_open_].load(std::memory_order_acquire)) ++oldest_open_;
      int64_t lo = j_.height;
      for (int64_t u = oldest_open_; u < n; ++u)
        if (!j_.unit_done[u].load(std::memory_order_acquire)) lo = std::min(lo, j_.units[u].lo);
      return lo;
    }

    Scheduler& s_;
    int64_t i_;
    Job& j_;
    PassScratch& scratch_;
    int64_t writable_end_ = 0;  // rows below this may be written without checking again
    int64_t oldest_open_ = 0;   // unit_done[u] is true for every u below this
  };

  void decode(int64_t i, PassScratch& scratch) {
    Job& j = jobs_[i];
    if (cancelled(i)) {
      fail(i, nullptr);
      return;
    }
    try {
      const std::vector<uint8_t> bytes = detail::read_image_file(*j.path, limits_);
      RingSink sink(*this, i, scratch);
      detail::decode_rows(bytes, *j.path, limits_, sink);
      j.rows_complete.store(true, std::memory_order_release);
      j.release_ring_if_done();
    } catch (...) {
      fail(i, std::current_exception());
    }
  }

  bool try_unit(int64_t i, PassScratch& scratch) {
    Job& j = jobs_[i];
    if (!j.sized.load(std::memory_order_acquire) || j.failed.load(std::memory_order_acquire)) return false;
    try {
      // The next unit in row order, if the decoder has produced its rows.
      const int64_t n = static_cast<int64_t>(j.units.size());
      int64_t u = j.next_unit.load(std::memory_order_acquire);
      while (u < n && j.units[u].hi <= j.rows.load(std::memory_order_acquire)) {
        if (j.next_unit.compare_exchange_weak(u, u + 1, std::memory_order_acq_rel)) {
          j.units[u].plan->run(j.units[u].index, j.reader, scratch);
          j.unit_done[u].store(true, std::memory_order_release);
          j.units_finished.fetch_add(1, std::memory_order_acq_rel);
          j.release_ring_if_done();
          return true;
        }
      }
      return false;
    } catch (...) {
      fail(i, std::current_exception());
      return true;
    }
  }

  bool all_finished() const {
    for (int64_t i = 0; i < n_; ++i)
      if (!jobs_[i].finished()) return false;
    return true;
  }

  Job* jobs_;
  int64_t n_;
  const PreprocessOptions& opt_;
  const ImageLimits& limits_;
  std::atomic<int64_t> next_decode_{0};
  std::atomic<int64_t> first_failed_;
};

void check_options(const PreprocessOptions& opt) {
  SAILVL_CHECK(opt.max_tiles >= 1 && opt.max_tiles <= kMaxTilesLimit, Usage, "max tiles must be in 1..", kMaxTilesLimit,
               " (got ", opt.max_tiles, ")");
  SAILVL_CHECK(opt.image_size > 0 && opt.image_size <= 4096, Usage, "tile size must be in 1..4096 (got ",
               opt.image_size, ")");
  check_dtype(opt.dtype);
}

// Runs the region, then normalises; `jobs` have either paths (to decode) or decoded images.
PixelBatch run_jobs(Job* jobs, int64_t n, const PreprocessOptions& opt, const ImageLimits& limits) {
  Scheduler sched(jobs, n, opt, limits);
  if (!jobs[0].path) sched.skip_decoding();
#pragma omp parallel
  sched.run_thread();
  if (sched.first_failed() < n) std::rethrow_exception(jobs[sched.first_failed()].error);

  const int64_t S = opt.image_size;
  PixelBatch b;
  std::vector<TileView> views;
  for (int64_t i = 0; i < n; ++i) {
    const Job& j = jobs[i];
    const int64_t grid_stride = S * j.grid.cols * 3;
    for (int64_t t = 0; t < j.grid.tiles(); ++t)  // row-major: t % cols across, t / cols down
      views.push_back(
          {j.grid_pixels.get() + (t / j.grid.cols) * S * grid_stride + (t % j.grid.cols) * S * 3, grid_stride});
    if (j.thumb_plan) views.push_back({j.thumb_pixels.get(), S * 3});
    b.tiles_per_image.push_back(j.grid.tiles() + (j.thumb_plan ? 1 : 0));
    b.grids.push_back(j.grid);
  }
  b.pixels = normalize_views(views, S, S, opt.dtype);
  return b;
}

}  // namespace

Tensor normalize_tiles(const std::vector<RgbImage>& tiles, DType dtype) {
  check_dtype(dtype);
  SAILVL_CHECK(!tiles.empty(), Internal, "normalize_tiles: no tiles");
  const int64_t H = tiles[0].height, W = tiles[0].width;
  std::vector<TileView> views;
  for (const RgbImage& t : tiles) {
    SAILVL_CHECK(t.height == H && t.width == W, Internal, "normalize_tiles: tiles differ in size");
    views.push_back({t.pixels.data(), W * 3});
  }
  return normalize_views(views, H, W, dtype);
}

PixelBatch preprocess_decoded(const std::vector<RgbImage>& images, const PreprocessOptions& opt) {
  SAILVL_CHECK(!images.empty(), Usage, "no images to preprocess");
  check_options(opt);
  const int64_t n = static_cast<int64_t>(images.size());
  std::unique_ptr<Job[]> jobs(new Job[n]);
  for (int64_t i = 0; i < n; ++i) {
    const RgbImage& img = images[i];
    SAILVL_CHECK(
        img.width > 0 && img.height > 0 && img.pixels.size() == static_cast<size_t>(img.width * img.height * 3),
        Internal, "preprocess_decoded: malformed image ", img.width, "x", img.height);
    jobs[i].decoded = &img;
    jobs[i].setup(img.width, img.height, opt);
    jobs[i].rows.store(img.height);
    jobs[i].rows_complete.store(true);
    jobs[i].sized.store(true);
  }
  return run_jobs(jobs.get(), n, opt, ImageLimits{});
}

PixelBatch preprocess_images(const std::vector<std::string>& paths, const PreprocessOptions& opt,
                             const ImageLimits& limits) {
  SAILVL_CHECK(!paths.empty(), Usage, "no images to preprocess");
  check_options(opt);
  const int64_t n = static_cast<int64_t>(paths.size());
  std::unique_ptr<Job[]> jobs(new Job[n]);
  for (int64_t i = 0; i < n; ++i) jobs[i].path = &paths[i];
  return run_jobs(jobs.get(), n, opt, limits);
}

PixelBatch preprocess_video_frames(const std::vector<std::string>& frame_paths, const PreprocessOptions& opt,
                                   const ImageLimits& limits) {
  PreprocessOptions one = opt;
  one.max_tiles = 1;  // the card's video path: load_image(frame, max_num=1) -> one tile, no thumbnail
  return preprocess_images(frame_paths, one, limits);
}

}  // namespace sailvl::image
