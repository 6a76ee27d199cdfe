// SAIL-VL dynamic tiling: the model card's dynamic_preprocess (docs/MODEL.md §3), step by step.
// Normalisation and the batch entry points (preprocess_images, ...) are in preprocess.cpp.
//
//   candidate_grids(MAX)   target_ratios = sorted(set(...), key=i*j)  (CPython order, tabulated)
//   choose_grid(W, H, MAX) find_closest_aspect_ratio
//   dynamic_preprocess     resize to (448*i, 448*j), crop row-major, + 448x448 thumbnail if > 1 tile
//
// Decisions where the card's code is silent or surprising (see also ImageLimits in image.h):
//  - 1x1 and 27x27: grid (1,1); the image is upscaled to one 448x448 tile, as PIL does.
//  - 1x10000: the card would pick (1,10) (aspect 1e-4 is closest to 1/10) and upscale the 1-px
//    column 448x; we refuse it by default (ImageLimits::max_aspect = 200).
//  - MAX > 40: refused (the candidate order is tabulated for 1..40; the card would accept it).
//
// Parallel plan: the two resizes are parallel inside (resize_bicubic); the rest is cheap.
#include <cmath>
#include <limits>

#include "image/image.h"

namespace sailvl::image {

namespace {
#include "image/candidate_order.inc"

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

}  // namespace sailvl::image
