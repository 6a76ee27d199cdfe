// Image input: decode (PNG, JPEG, WebP) to RGB8, then SAIL-VL's dynamic tiling and normalisation.
//
// The reference is the model card's Python (docs/MODEL.md §3):
//
//   image = Image.open(f).convert('RGB')                      -> decode_image()
//   dynamic_preprocess(image, max_num=MAX, use_thumbnail=True)
//       target_ratios = sorted(set((i, j) ...), key=i*j)      -> candidate_grids()
//       find_closest_aspect_ratio(...)                        -> choose_grid()
//       image.resize((448*i, 448*j))  (PIL BICUBIC, antialias) -> resize_bicubic()
//       crop row-major; + image.resize((448, 448)) thumbnail  -> dynamic_preprocess()
//   T.ToTensor(); T.Normalize(IMAGENET_MEAN, IMAGENET_STD)    -> normalize_tiles()
//   torch.stack(...)                                          -> preprocess_images()
//
// Every step reproduces PIL / torchvision bit for bit on PNG input (the resize is Pillow's
// fixed-point ImagingResample); JPEG decoding uses the system libjpeg-turbo with Pillow's settings
// (ISLOW DCT, fancy upsampling). tests/test_image.cpp checks all of it against goldens made by
// tools/reference/make_image_goldens.py.
//
// Untrusted input: the format is sniffed from magic bytes (never the extension); the file size and
// the header's width/height/pixel count/aspect ratio are checked against ImageLimits before any
// pixel buffer is allocated; every failure is sailvl::Error(ErrorKind::BadImage) naming the file
// and the rule. Decoder warnings (a corrupt JPEG stream, a bad PNG CRC) are errors.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace sailvl::image {

// Caps checked before allocating (docs/VALIDATION.md §Images). Defaults:
//  - max_file_bytes 256 MiB;
//  - max_side 65535 px per side (PNG allows 2^31-1, JPEG 65535; WebP 16383 anyway);
//  - max_pixels 178,956,970 = 2 * PIL.Image.MAX_IMAGE_PIXELS, the size at which PIL raises
//    DecompressionBombError (PIL merely warns above MAX_IMAGE_PIXELS = 89,478,485);
//  - max_aspect 200: max(W/H, H/W) above it is refused. PIL itself has no such rule (the card's code
//    would tile a 1x10000 strip into (1,10) tiles); we refuse, because such strips carry no usable
//    picture and upscaling one side by 448x is a cheap way to burn memory. Raise it to reproduce the
//    card's behaviour exactly.
struct ImageLimits {
  int64_t max_file_bytes = int64_t{256} << 20;
  int64_t max_side = 65535;
  int64_t max_pixels = 178956970;
  double max_aspect = 200.0;
};

// An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B: pixels.size() == width*height*3.
struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;

  const uint8_t* row(int64_t y) const { return pixels.data() + y * width * 3; }
  uint8_t* row(int64_t y) { return pixels.data() + y * width * 3; }
};

enum class ImageFormat { Unknown, Png, Jpeg, Webp, Bmp, Gif, Tiff };
const char* image_format_name(ImageFormat f);
// From the first bytes only (PNG signature, JPEG SOI FF D8 FF, RIFF....WEBP, BM, GIF8, II*/MM*).
ImageFormat sniff_image_format(std::span<const uint8_t> bytes);

// Width and height from the header alone (no pixel decode). Throws BadImage on bad headers.
struct ImageInfo {
  ImageFormat format = ImageFormat::Unknown;
  int64_t width = 0;
  int64_t height = 0;
};
ImageInfo read_image_info(std::span<const uint8_t> bytes, const std::string& display_name);

// Decode to RGB8 exactly as PIL's Image.open(f).convert('RGB'): palette (tRNS ignored), gray and
// gray+alpha replicated to R=G=B, alpha discarded (not composited), 16-bit samples -> high byte
// (16-bit gray: PIL's I;16 -> L clamp, see image_decode.cpp), CMYK/YCCK JPEG -> PIL's cmyk2rgb,
// no EXIF rotation. Supported: PNG, JPEG, WebP. BMP/GIF/TIFF are refused with a clear message.
RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& display_name, const ImageLimits& limits = {});
// Read the file (size-capped) and decode it. Errors name `path`.
RgbImage load_image(const std::string& path, const ImageLimits& limits = {});

// PIL's `image.resize((out_w, out_h))` for an RGB image: BICUBIC (a = -0.5), antialiased (support
// scaled by the downscale factor), separable horizontal-then-vertical, fixed-point coefficients
// with 22 fractional bits, uint8 intermediate. Pixel-identical to Pillow's ImagingResample.
RgbImage resize_bicubic(const RgbImage& src, int64_t out_w, int64_t out_h);
// image.crop((x0, y0, x0 + w, y0 + h)) with the box inside the image.
RgbImage crop(const RgbImage& src, int64_t x0, int64_t y0, int64_t w, int64_t h);

// A tiling grid: `cols` tiles across (i in the card's code), `rows` tiles down (j).
struct TileGrid {
  int64_t cols = 1;
  int64_t rows = 1;
  int64_t tiles() const { return cols * rows; }
  bool operator==(const TileGrid&) const = default;
};

constexpr int64_t kMaxTilesLimit = 40;  // candidate orders are tabulated for MAX = 1..40

// The card's `target_ratios` for min_num = 1: every (i, j) with 1 <= i*j <= max_num, in the order
// `sorted(set(...), key=lambda x: x[0]*x[1])` gives in CPython (ties inside one area keep the set's
// iteration order, which decides exact aspect-ratio ties). max_num must be in 1..40 (Usage error).
std::vector<TileGrid> candidate_grids(int64_t max_num);

// The card's find_closest_aspect_ratio over candidate_grids(max_num): the smallest
// |W/H - i/j| (in double, as Python floats) wins; on an exact tie the later candidate wins only if
// W*H > 0.5 * image_size^2 * i * j.
TileGrid choose_grid(int64_t width, int64_t height, int64_t max_num, int64_t image_size = 448);

struct PreprocessOptions {
  int64_t max_tiles = 10;     // MAX (the card's load_image default); 1..40
  int64_t image_size = 448;   // tile side
  bool use_thumbnail = true;  // append a whole-image tile when the grid has more than one tile
  DType dtype = DType::F32;   // F32 or BF16 output
};

// dynamic_preprocess: resize to (S*cols, S*rows), crop row-major, + thumbnail. Returns the tiles
// (uint8, S x S each) and the chosen grid.
std::vector<RgbImage> dynamic_preprocess(const RgbImage& image, const PreprocessOptions& opt,
                                         TileGrid* grid_out = nullptr);

// ToTensor + Normalize on each tile: x = (u8 / 255.f - mean[c]) / std[c], all in float32 as
// torchvision computes it, then (optionally) rounded to BF16. Returns [T, 3, S, S].
Tensor normalize_tiles(const std::vector<RgbImage>& tiles, DType dtype = DType::F32);

// Pixels for the model plus the tile count per image (the prompt builder's num_patches_list).
struct PixelBatch {
  Tensor pixels;  // [sum(tiles_per_image), 3, S, S], F32 or BF16
  std::vector<int64_t> tiles_per_image;
  std::vector<TileGrid> grids;  // chosen grid per image ({1,1} for video frames)
};

// load_image for each path (the card's load_image with max_num = opt.max_tiles), concatenated.
PixelBatch preprocess_images(const std::vector<std::string>& paths, const PreprocessOptions& opt = {},
                             const ImageLimits& limits = {});
// The same for already-decoded images (display names are used in errors only).
PixelBatch preprocess_decoded(const std::vector<RgbImage>& images, const PreprocessOptions& opt = {});
// Video: each frame file is one tile (MAX = 1, no thumbnail), as the card's video path.
PixelBatch preprocess_video_frames(const std::vector<std::string>& frame_paths, const PreprocessOptions& opt = {},
                                   const ImageLimits& limits = {});

}  // namespace sailvl::image
