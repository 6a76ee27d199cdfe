// Image decode + preprocessing under tight limits: either an error, or an image within the limits
// whose tiles have the documented shape.
#include "image/image.h"
#include "tests/fuzz/fuzz_common.h"

using namespace sailvl::image;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ImageLimits lim;
  lim.max_file_bytes = 1 << 20;
  lim.max_side = 4096;
  lim.max_pixels = 4 << 20;
  try {
    const RgbImage img = decode_image({data, size}, "fuzz.img", lim);
    SAILVL_FUZZ_EXPECT(img.width > 0 && img.height > 0 && img.width * img.height <= lim.max_pixels);
    SAILVL_FUZZ_EXPECT(static_cast<int64_t>(img.pixels.size()) == img.width * img.height * 3);
    PreprocessOptions opt;
    opt.max_tiles = 2 + (size % 3);
    opt.image_size = 28;  // small tiles keep the harness fast; the arithmetic is the same
    TileGrid grid;
    const auto tiles = dynamic_preprocess(img, opt, &grid);
    SAILVL_FUZZ_EXPECT(grid.tiles() >= 1 && grid.tiles() <= opt.max_tiles);
    SAILVL_FUZZ_EXPECT(static_cast<int64_t>(tiles.size()) == grid.tiles() + (grid.tiles() > 1 ? 1 : 0));
    for (const auto& t : tiles) SAILVL_FUZZ_EXPECT(t.width == 28 && t.height == 28);
  } catch (const sailvl::Error&) {
  }
  return 0;
}
