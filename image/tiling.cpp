// SAIL-VL dynamic tiling and normalisation: the model card's dynamic_preprocess, build_transform and
// load_image (docs/MODEL.md §3), step by step.
//
//   candidate_grids(MAX)   target_ratios = sorted(set(...), key=i*j)  (CPython order, tabulated)
//   choose_grid(W, H, MAX) find_closest_aspect_ratio
//   dynamic_preprocess     resize to (448*i, 448*j), crop row-major, + 448x448 thumbnail if > 1 tile
//   normalize_tiles        ToTensor (u8 / 255 in float32) + Normalize ((x - mean) / std, float32)
//
// Decisions where the card's code is silent or surprising (see also ImageLimits in image.h):
//  - 1x1 and 27x27: grid (1,1); the image is upscaled to one 448x448 tile, as PIL does.
//  - 1x10000: the card would pick (1,10) (aspect 1e-4 is closest to 1/10) and upscale the 1-px
//    column 448x; we refuse it by default (ImageLimits::max_aspect = 200).
//  - MAX > 40: refused (the candidate order is tabulated for 1..40; the card would accept it).
#include <cmath>
#include <limits>

#include "image/image.h"

namespace sailvl::image {

namespace {
#include "image/candidate_order.inc"

// torchvision's IMAGENET_MEAN / IMAGENET_STD as float32 (torch.as_tensor(mean, dtype=float32)).
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

// ToTensor + Normalize for every possible byte value, per channel: the op is a pure function of
// (channel, byte), so a 3x256 table gives the same float32 bits as computing it per pixel.
struct NormalizeTable {
  float v[3][256];
  NormalizeTable() {
    for (int c = 0; c < 3; ++c)
      for (int u = 0; u < 256; ++u) {
        const float x = static_cast<float>(u) / 255.0f;  // ToTensor: .div(255) in float32
        v[c][u] = (x - kMean[c]) / kStd[c];              // Normalize: sub_(mean).div_(std)
      }
  }
};

void check_max_tiles(int64_t max_num) {
  SAILVL_CHECK(max_num >= 1 && max_num <= kMaxTilesLimit, Usage, "max tiles must be in 1..", kMaxTilesLimit, " (got ",
               max_num, ")");
}

}  // namespace

std::vector<TileGrid> candidate_grids(int64_t max_num) {
  check_max_tiles(max_num);
  std::vector<TileGrid> out;
  for (const auto& p : kCandidateOrder[max_num - 1]) {
    if (p[0] == 0) break;
    out.push_back({p[0], p[1]});
  }
  return out;
}

TileGrid choose_grid(int64_t width, int64_t height, int64_t max_num, int64_t image_size) {
  SAILVL_CHECK(width > 0 && height > 0, Internal, "choose_grid: bad size ", width, "x", height);
  const double aspect_ratio = static_cast<double>(width) / static_cast<double>(height);
  // `area > 0.5 * S * S * i * j`: Python compares int and float exactly; area < 2^53 here, so the
  // conversion to double is exact and so is the product on the right (small integers).
  const double area = static_cast<double>(width * height);
  double best_diff = std::numeric_limits<double>::infinity();
  TileGrid best{1, 1};
  for (const TileGrid& g : candidate_grids(max_num)) {
    const double target = static_cast<double>(g.cols) / static_cast<double>(g.rows);
    const double diff = std::fabs(aspect_ratio - target);
    if (diff < best_diff) {
      best_diff = diff;
      best = g;
    } else if (diff == best_diff) {
      if (area > 0.5 * image_size * image_size * g.cols * g.rows) best = g;
    }
  }
  return best;
}

std::vector<RgbImage> dynamic_preprocess(const RgbImage& image, const PreprocessOptions& opt, TileGrid* grid_out) {
  const int64_t S = opt.image_size;
  SAILVL_CHECK(S > 0 && S <= 4096, Usage, "tile size must be in 1..4096 (got ", S, ")");
  const TileGrid g = choose_grid(image.width, image.height, opt.max_tiles, S);
  if (grid_out) *grid_out = g;
  std::vector<RgbImage> tiles;
  tiles.reserve(g.tiles() + 1);
  {
    const RgbImage resized = resize_bicubic(image, S * g.cols, S * g.rows);
    for (int64_t i = 0; i < g.tiles(); ++i)  // row-major: i % cols across, i / cols down
      tiles.push_back(crop(resized, (i % g.cols) * S, (i / g.cols) * S, S, S));
  }
  if (opt.use_thumbnail && tiles.size() != 1) tiles.push_back(resize_bicubic(image, S, S));
  return tiles;
}

Tensor normalize_tiles(const std::vector<RgbImage>& tiles, DType dtype) {
  SAILVL_CHECK(dtype == DType::F32 || dtype == DType::BF16, Usage, "pixel dtype must be F32 or BF16 (got ",
               dtype_name(dtype), ")");
  SAILVL_CHECK(!tiles.empty(), Internal, "normalize_tiles: no tiles");
  static const NormalizeTable table;
  const int64_t T = static_cast<int64_t>(tiles.size());
  const int64_t H = tiles[0].height, W = tiles[0].width;
  for (const RgbImage& t : tiles)
    SAILVL_CHECK(t.height == H && t.width == W, Internal, "normalize_tiles: tiles differ in size");
  Tensor out = Tensor::empty({T, 3, H, W}, dtype);
  const int64_t plane = H * W;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < 3; ++c) {
      const uint8_t* px = tiles[t].pixels.data() + c;
      const float* lut = table.v[c];
      const int64_t base = (t * 3 + c) * plane;
      if (dtype == DType::F32) {
        float* o = out.data<float>() + base;
        for (int64_t i = 0; i < plane; ++i) o[i] = lut[px[3 * i]];
      } else {
        uint16_t* o = out.data<uint16_t>() + base;
        for (int64_t i = 0; i < plane; ++i) o[i] = f32_to_bf16(lut[px[3 * i]]);
      }
    }
  }
  return out;
}

namespace {

PixelBatch batch_from_tiles(std::vector<std::vector<RgbImage>>& per_image, const std::vector<TileGrid>& grids,
                            DType dtype) {
  PixelBatch b;
  std::vector<RgbImage> all;
  for (auto& tiles : per_image) {
    b.tiles_per_image.push_back(static_cast<int64_t>(tiles.size()));
    for (auto& t : tiles) all.push_back(std::move(t));
  }
  b.grids = grids;
  b.pixels = normalize_tiles(all, dtype);
  return b;
}

}  // namespace

PixelBatch preprocess_decoded(const std::vector<RgbImage>& images, const PreprocessOptions& opt) {
  SAILVL_CHECK(!images.empty(), Usage, "no images to preprocess");
  check_max_tiles(opt.max_tiles);
  std::vector<std::vector<RgbImage>> per_image;
  std::vector<TileGrid> grids;
  for (const RgbImage& img : images) {
    TileGrid g;
    per_image.push_back(dynamic_preprocess(img, opt, &g));
    grids.push_back(g);
  }
  return batch_from_tiles(per_image, grids, opt.dtype);
}

PixelBatch preprocess_images(const std::vector<std::string>& paths, const PreprocessOptions& opt,
                             const ImageLimits& limits) {
  SAILVL_CHECK(!paths.empty(), Usage, "no images to preprocess");
  check_max_tiles(opt.max_tiles);
  std::vector<std::vector<RgbImage>> per_image;
  std::vector<TileGrid> grids;
  for (const std::string& p : paths) {
    TileGrid g;
    per_image.push_back(dynamic_preprocess(load_image(p, limits), opt, &g));
    grids.push_back(g);
  }
  return batch_from_tiles(per_image, grids, opt.dtype);
}

PixelBatch preprocess_video_frames(const std::vector<std::string>& frame_paths, const PreprocessOptions& opt,
                                   const ImageLimits& limits) {
  PreprocessOptions one = opt;
  one.max_tiles = 1;  // the card's video path: load_image(frame, max_num=1) -> one tile, no thumbnail
  return preprocess_images(frame_paths, one, limits);
}

}  // namespace sailvl::image
