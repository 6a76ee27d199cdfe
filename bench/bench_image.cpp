// Image preprocessing throughput: the card's load_image on a 4000x3000 JPEG, split by stage.
//
//   build/bench_image [--benchmark_filter=...]
//   OMP_NUM_THREADS=1 build/bench_image      (every row on one thread; the default is all cores)
//
// The JPEG is written on first use to $TMPDIR/sailvl_bench_4000x3000.jpg (synthetic content:
// gradients, discs and noise, quality 90, 4:2:0; not committed). The Python reference timing on the
// same file: tools/reference/make_image_goldens.py --bench $TMPDIR/sailvl_bench_4000x3000.jpg
// (PIL + torchvision, the card's load_image). Both end-to-end numbers include file read + decode.
//
// Rows:
//   LoadImage/MAX              end to end (read, decode, resize, thumbnail, ToTensor+Normalize), F32
//   LoadImageThreads/T         the same at MAX 10 with ops::set_num_threads(T), T = 1, 2, 4, ... cores
//   LoadTwoImages              two files in one preprocess_images call (decoded in parallel)
//   ReadFile, DecodeJpeg       the file read alone; read + decode to RGB (load_image)
//   PreprocessDecoded          everything after decode (preprocess_decoded on the RGB image)
//   Resize{Grid,Thumb}{H,V}    one pass of one resize: the (3,2) grid 4000x3000 -> 1344x896 and the
//                              thumbnail -> 448x448, horizontal pass on every row, vertical pass on
//                              the horizontal pass's output (the order Pillow uses for these sizes)
//   ResizeTiling               both resizes, both passes (resize_bicubic twice)
//   NormalizeTiles/dtype       ToTensor + Normalize of the 7 tiles (0 = F32, 1 = BF16)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "image/image.h"
#include "ops/ops.h"

using namespace sailvl;
using namespace sailvl::image;

namespace {

std::string bench_jpeg_path() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/sailvl_bench_4000x3000.jpg";
}

// Write a 4000x3000 photo-like JPEG with libjpeg (errors abort the benchmark: input is ours).
void write_bench_jpeg(const std::string& path) {
  const int W = 4000, H = 3000;
  std::vector<uint8_t> rgb(static_cast<size_t>(W) * H * 3);
  std::mt19937 rng(1234);
  std::normal_distribution<float> noise(0.f, 6.f);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const float r = 127 + 100 * std::sin(x * 0.003f) * std::cos(y * 0.002f);
      const float g = 255.f * (x + y) / (W + H);
      const float b = 127 + 120 * std::cos(std::hypot(x - 1300.f, y - 1500.f) * 0.004f);
      const float v[3] = {r, g, b};
      for (int c = 0; c < 3; ++c)
        rgb[(static_cast<size_t>(y) * W + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v[c] + noise(rng), 0.f, 255.f));
    }
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = W;
  cinfo.image_height = H;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 90, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = rgb.data() + static_cast<size_t>(cinfo.next_scanline) * W * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

const std::string& bench_jpeg() {
  static const std::string path = [] {
    const std::string p = bench_jpeg_path();
    if (!std::filesystem::exists(p)) write_bench_jpeg(p);
    return p;
  }();
  return path;
}

// A second file with the same bytes, so that two-image rows read two files.
const std::string& bench_jpeg_copy() {
  static const std::string path = [] {
    const std::string p = bench_jpeg_path() + ".copy.jpg";
    if (!std::filesystem::exists(p)) std::filesystem::copy_file(bench_jpeg(), p);
    return p;
  }();
  return path;
}

// End to end: read + decode + dynamic_preprocess + ToTensor/Normalize -> [T,3,448,448] F32.
void BM_LoadImage4000x3000(benchmark::State& state) {
  PreprocessOptions opt;
  opt.max_tiles = state.range(0);
  int64_t tiles = 0;
  for (auto _ : state) {
    const PixelBatch b = preprocess_images({bench_jpeg()}, opt);
    tiles = b.tiles_per_image[0];
    benchmark::DoNotOptimize(b.pixels.raw_data());
  }
  state.counters["tiles"] = static_cast<double>(tiles);
}
BENCHMARK(BM_LoadImage4000x3000)->Arg(10)->Arg(12)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LoadImageThreads(benchmark::State& state) {
  const int before = ops::num_threads();
  ops::set_num_threads(static_cast<int>(state.range(0)));
  PreprocessOptions opt;
  for (auto _ : state) {
    const PixelBatch b = preprocess_images({bench_jpeg()}, opt);
    benchmark::DoNotOptimize(b.pixels.raw_data());
  }
  ops::set_num_threads(before);
}
void thread_counts(benchmark::internal::Benchmark* b) {
  const int cores = ops::num_threads();
  for (int t = 1; t < cores; t *= 2) b->Arg(t);
  b->Arg(cores);
}
BENCHMARK(BM_LoadImageThreads)->Apply(thread_counts)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LoadTwoImages(benchmark::State& state) {
  PreprocessOptions opt;
  for (auto _ : state) {
    const PixelBatch b = preprocess_images({bench_jpeg(), bench_jpeg_copy()}, opt);
    benchmark::DoNotOptimize(b.pixels.raw_data());
  }
}
BENCHMARK(BM_LoadTwoImages)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ReadFile(benchmark::State& state) {
  for (auto _ : state) {
    std::ifstream f(bench_jpeg(), std::ios::binary | std::ios::ate);  // as load_image reads it
    std::vector<char> bytes(static_cast<size_t>(f.tellg()));
    f.seekg(0);
    f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    benchmark::DoNotOptimize(bytes.data());
  }
}
BENCHMARK(BM_ReadFile)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_DecodeJpeg4000x3000(benchmark::State& state) {
  for (auto _ : state) {
    const RgbImage img = load_image(bench_jpeg());
    benchmark::DoNotOptimize(img.pixels.data());
  }
  state.SetBytesProcessed(state.iterations() * int64_t{4000} * 3000 * 3);
}
BENCHMARK(BM_DecodeJpeg4000x3000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PreprocessDecoded(benchmark::State& state) {
  const std::vector<RgbImage> images = {load_image(bench_jpeg())};  // outside the loop: no copy per run
  PreprocessOptions opt;
  for (auto _ : state) {
    const PixelBatch b = preprocess_decoded(images, opt);
    benchmark::DoNotOptimize(b.pixels.raw_data());
  }
}
BENCHMARK(BM_PreprocessDecoded)->Unit(benchmark::kMillisecond)->UseRealTime();

// One pass of one resize: resize_bicubic with only the width (horizontal) or only the height
// (vertical) changing runs exactly that pass. range(0): 0 = grid, 1 = thumbnail; range(1): 0 = H, 1 = V.
void BM_ResizePass(benchmark::State& state) {
  const RgbImage img = load_image(bench_jpeg());
  const int64_t out_w = state.range(0) == 0 ? 448 * 3 : 448;
  const int64_t out_h = state.range(0) == 0 ? 448 * 2 : 448;
  const RgbImage horizontal = resize_bicubic(img, out_w, img.height);
  for (auto _ : state) {
    const RgbImage out =
        state.range(1) == 0 ? resize_bicubic(img, out_w, img.height) : resize_bicubic(horizontal, out_w, out_h);
    benchmark::DoNotOptimize(out.pixels.data());
  }
}
BENCHMARK(BM_ResizePass)
    ->ArgNames({"thumb", "vertical"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The two resizes of MAX=10 on a 4000x3000 image: the (3,2) grid and the thumbnail.
void BM_ResizeTiling4000x3000(benchmark::State& state) {
  const RgbImage img = load_image(bench_jpeg());
  for (auto _ : state) {
    const RgbImage grid = resize_bicubic(img, 448 * 3, 448 * 2);
    const RgbImage thumb = resize_bicubic(img, 448, 448);
    benchmark::DoNotOptimize(grid.pixels.data());
    benchmark::DoNotOptimize(thumb.pixels.data());
  }
}
BENCHMARK(BM_ResizeTiling4000x3000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_NormalizeTiles(benchmark::State& state) {
  const RgbImage img = load_image(bench_jpeg());
  PreprocessOptions opt;
  const std::vector<RgbImage> tiles = dynamic_preprocess(img, opt);
  const DType dtype = state.range(0) == 0 ? DType::F32 : DType::BF16;
  for (auto _ : state) {
    const Tensor t = normalize_tiles(tiles, dtype);
    benchmark::DoNotOptimize(t.raw_data());
  }
  state.counters["tiles"] = static_cast<double>(tiles.size());
}
BENCHMARK(BM_NormalizeTiles)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
