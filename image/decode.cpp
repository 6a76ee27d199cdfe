// Image decoding to RGB8 with PIL's `Image.open(f).convert('RGB')` semantics.
//
// Sources of the rules (checked numerically against Pillow 13 by tools/reference/make_image_goldens.py
// and tests/test_image.cpp):
//  - PNG (PngImagePlugin + Unpack.c + Convert.c):
//      palette "P" -> RGB by palette lookup, tRNS ignored by convert('RGB');
//      gray 1/2/4-bit -> L scaled by 255/(2^b - 1) (PIL's "1", "L;2", "L;4" unpackers);
//      gray 16-bit -> mode I;16, and I;16 -> L clamps: v > 255 ? 255 : v (not v >> 8!);
//      RGB/RGBA/LA 16-bit -> the high byte of each sample (rawmodes "RGB;16B", "RGBA;16B", "LA;16B");
//      alpha is dropped, never composited; gAMA/iCCP/sBIT are ignored.
//  - JPEG (JpegImagePlugin + JpegDecode.c): libjpeg defaults (JDCT_ISLOW, fancy upsampling);
//      1 component -> L, 3 -> RGB (libjpeg converts YCbCr), 4 -> CMYK read with rawmode "CMYK;I"
//      (Pillow inverts every 4-component JPEG, assuming Adobe conventions), then Convert.c
//      cmyk2rgb: nk = 255 - K; R = nk - MULDIV255(C, nk) (likewise G, B), where
//      MULDIV255(a, b) = ((a*b + 128) + ((a*b + 128) >> 8)) >> 8.
//  - WebP: libwebp's RGB decoder (alpha, if any, is dropped).
//
// libpng and libjpeg report errors by longjmp. The functions that call setjmp (decode_png_raw,
// decode_jpeg_raw) keep only trivially destructible locals after setjmp; the output is owned by the
// caller's frame, which longjmp never skips. Decoder callbacks never throw through C frames.
//
// Rows go to a RowSink (image/decode_rows.h) as they are decoded: decode_image's sink is one
// RgbImage; preprocess.cpp's keeps a ring of rows and resizes them while the decoder goes on.
//
// Parallel plan: none inside one image. libjpeg-turbo decodes one image on one thread (Huffman
// decoding is sequential without restart markers; Pillow's settings, ISLOW IDCT and fancy
// upsampling, are libjpeg's defaults and also its SIMD paths). preprocess.cpp runs several images'
// decoders at once and overlaps each decoder with the resize of the rows it has produced.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "image/decode_rows.h"
#include "image/image.h"

namespace sailvl::image {

using detail::RowSink;

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::Webp: return "WebP";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Gif: return "GIF";
    case ImageFormat::Tiff: return "TIFF";
    case ImageFormat::Unknown: break;
  }
  return "unknown";
}

ImageFormat sniff_image_format(std::span<const uint8_t> b) {
  auto starts = [&](const char* magic, size_t n, size_t at = 0) {
    return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8)) return ImageFormat::Png;
  if (starts("\xff\xd8\xff", 3)) return ImageFormat::Jpeg;
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return ImageFormat::Webp;
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return ImageFormat::Gif;
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return ImageFormat::Tiff;
  if (starts("BM", 2)) return ImageFormat::Bmp;
  return ImageFormat::Unknown;
}

namespace {

// ---- limits: checked on header numbers, before any pixel buffer exists ----

// Returns an empty string when (w, h) is acceptable, else the reason.
std::string check_dimensions(int64_t w, int64_t h, const ImageLimits& lim) {
  if (w <= 0 || h <= 0) return str_cat("zero or negative size ", w, "x", h);
  if (w > lim.max_side || h > lim.max_side)
    return str_cat("size ", w, "x", h, " exceeds the per-side limit of ", lim.max_side, " px");
  if (w > lim.max_pixels / h)  // w*h > max_pixels without overflow
    return str_cat("size ", w, "x", h, " = ", w * h, " px exceeds the limit of ", lim.max_pixels,
                   " px (decompression bomb?)");
  const double aspect = w > h ? static_cast<double>(w) / h : static_cast<double>(h) / w;
  if (aspect > lim.max_aspect) return str_cat("aspect ratio ", w, "x", h, " exceeds ", lim.max_aspect, ":1");
  return {};
}

void require_dimensions(int64_t w, int64_t h, const ImageLimits& lim, const std::string& name) {
  const std::string why = check_dimensions(w, h, lim);
  if (!why.empty()) fail(ErrorKind::BadImage, "image ", name, ": ", why);
}

// check_dimensions for the setjmp frames: the reason goes to a char buffer, so no std::string is
// alive when libpng/libjpeg may longjmp.
bool dimensions_ok(int64_t w, int64_t h, const ImageLimits& lim, char* msg, size_t msg_len) noexcept {
  try {
    const std::string why = check_dimensions(w, h, lim);
    if (why.empty()) return true;
    std::snprintf(msg, msg_len, "%s", why.c_str());
  } catch (...) {
    std::snprintf(msg, msg_len, "out of memory");
  }
  return false;
}

// Vector resize that reports failure instead of throwing (called from setjmp frames).
bool try_resize(std::vector<uint8_t>* v, size_t n) noexcept {
  try {
    v->resize(n);
    return true;
  } catch (...) {
    return false;
  }
}

// ---- PNG ----

// Limits on what libpng itself may allocate for ancillary chunks (text, ICC, ...).
constexpr png_alloc_size_t kPngChunkMax = 16u << 20;

struct PngCtx {
  std::jmp_buf jump;
  char message[256];
  const uint8_t* data;
  size_t size;
  size_t pos;
};

void png_error_cb(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngCtx*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof(ctx->message), "%s", msg ? msg : "libpng error");
  std::longjmp(ctx->jump, 1);
}
// Benign warnings ("iCCP: known incorrect sRGB profile", ...) are common in the wild and PIL
// ignores them too; damage is caught by CRC checks, which are errors (see png_set_crc_action).
void png_warning_cb(png_structp, png_const_charp) {}

void png_read_cb(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<PngCtx*>(png_get_io_ptr(png));
  if (n > ctx->size - ctx->pos) png_error(png, "file is truncated (incomplete download?)");
  std::memcpy(out, ctx->data + ctx->pos, n);
  ctx->pos += n;
}

struct PngHeader {
  png_uint_32 width, height;
  int bit_depth, color_type, channels;  // channels as stored after png_set_packing
};

// Convert one decoded PNG row (after png_set_packing: 1 sample per byte for depth < 8;
// big-endian 16-bit samples for depth 16) to RGB8 with PIL's rules.
void png_row_to_rgb(const PngHeader& h, const uint8_t* in, uint8_t* out, const png_color* palette, int palette_len) {
  const int64_t w = h.width;
  const bool sixteen = h.bit_depth == 16;
  switch (h.color_type) {
    case PNG_COLOR_TYPE_PALETTE:
      for (int64_t x = 0; x < w; ++x) {
        const int i = in[x];
        // Indices past the palette: PIL's palette has 256 entries, zero-filled past PLTE.
        const png_color c = i < palette_len ? palette[i] : png_color{0, 0, 0};
        out[3 * x] = c.red;
        out[3 * x + 1] = c.green;
        out[3 * x + 2] = c.blue;
      }
      return;
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
      const int step = h.color_type == PNG_COLOR_TYPE_GRAY ? 1 : 2;
      for (int64_t x = 0; x < w; ++x) {
        uint8_t g;
        if (sixteen && step == 1) {
          // I;16 -> L: values above 255 saturate (Convert.c I16_L), not a high-byte shift.
          const int v = (in[2 * x] << 8) | in[2 * x + 1];
          g = static_cast<uint8_t>(v > 255 ? 255 : v);
        } else if (sixteen) {
          g = in[4 * x];  // LA;16B: high byte of L
        } else if (h.bit_depth < 8) {
          g = static_cast<uint8_t>(in[x * step] * (255 / ((1 << h.bit_depth) - 1)));
        } else {
          g = in[x * step];
        }
        out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = g;
      }
      return;
    }
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
      const int step = h.color_type == PNG_COLOR_TYPE_RGB ? 3 : 4;
      const int bps = sixteen ? 2 : 1;  // high byte first in 16-bit samples
      for (int64_t x = 0; x < w; ++x) {
        const uint8_t* p = in + x * step * bps;
        out[3 * x] = p[0];
        out[3 * x + 1] = p[bps];
        out[3 * x + 2] = p[2 * bps];
      }
      return;
    }
    default: return;  // rejected before decoding
  }
}

// Decode a PNG held in memory. On success returns true and fills *img. On failure returns false
// with the reason in ctx->message. Only POD locals live across setjmp.
bool decode_png_raw(PngCtx* ctx, const ImageLimits& lim, bool header_only, RowSink* sink, std::vector<uint8_t>* rowbuf,
                    ImageInfo* info) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_error_cb, png_warning_cb);
  if (!png) {
    std::snprintf(ctx->message, sizeof(ctx->message), "out of memory creating the PNG reader");
    return false;
  }
  png_infop pinfo = png_create_info_struct(png);
  if (!pinfo) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(ctx->message, sizeof(ctx->message), "out of memory creating the PNG reader");
    return false;
  }
  if (setjmp(ctx->jump)) {
    png_destroy_read_struct(&png, &pinfo, nullptr);
    return false;
  }
  png_set_read_fn(png, ctx, png_read_cb);
  png_set_user_limits(png, static_cast<png_uint_32>(std::min<int64_t>(lim.max_side, 0x7fffffff)),
                      static_cast<png_uint_32>(std::min<int64_t>(lim.max_side, 0x7fffffff)));
  png_set_chunk_malloc_max(png, kPngChunkMax);
  png_set_chunk_cache_max(png, 1000);
  // A bad CRC is an error in every chunk (PIL's PngStream.crc raises too).
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  png_read_info(png, pinfo);

  PngHeader h;
  h.width = png_get_image_width(png, pinfo);
  h.height = png_get_image_height(png, pinfo);
  h.bit_depth = png_get_bit_depth(png, pinfo);
  h.color_type = png_get_color_type(png, pinfo);
  info->format = ImageFormat::Png;
  info->width = h.width;
  info->height = h.height;
  if (header_only) {
    png_destroy_read_struct(&png, &pinfo, nullptr);
    return true;
  }
  if (!dimensions_ok(h.width, h.height, lim, ctx->message, sizeof(ctx->message))) {
    png_destroy_read_struct(&png, &pinfo, nullptr);
    return false;
  }

  png_colorp palette = nullptr;
  int palette_len = 0;
  if (h.color_type == PNG_COLOR_TYPE_PALETTE && !(png_get_PLTE(png, pinfo, &palette, &palette_len) & PNG_INFO_PLTE)) {
    png_error(png, "palette image without a PLTE chunk");
  }
  if (h.bit_depth < 8) png_set_packing(png);  // one sample per byte, values unscaled
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, pinfo);
  const size_t rowbytes = png_get_rowbytes(png, pinfo);

  const size_t w = h.width, hh = h.height;
  // Interlaced images need every row in memory between passes; progressive rows go to rowbuf.
  const size_t raw_bytes = passes > 1 ? rowbytes * hh : rowbytes;
  if (!try_resize(rowbuf, raw_bytes) || !sink->begin(static_cast<int64_t>(w), static_cast<int64_t>(hh))) {
    std::snprintf(ctx->message, sizeof(ctx->message), "out of memory for %zux%zu pixels", w, hh);
    png_destroy_read_struct(&png, &pinfo, nullptr);
    return false;
  }
  if (passes > 1) {
    for (int pass = 0; pass < passes; ++pass)
      for (size_t y = 0; y < hh; ++y) png_read_row(png, rowbuf->data() + y * rowbytes, nullptr);
  }
  for (size_t y = 0; y < hh; ++y) {
    const uint8_t* raw = rowbuf->data() + (passes > 1 ? y * rowbytes : 0);
    if (passes == 1) png_read_row(png, rowbuf->data(), nullptr);
    uint8_t* out = sink->row(static_cast<int64_t>(y));
    if (!out) {
      std::snprintf(ctx->message, sizeof(ctx->message), "decoding stopped");
      png_destroy_read_struct(&png, &pinfo, nullptr);
      return false;
    }
    png_row_to_rgb(h, raw, out, palette, palette_len);
    sink->rows_done(static_cast<int64_t>(y) + 1);
  }
  // Trailing chunks after the image data are not read: PIL does not need them either.
  png_destroy_read_struct(&png, &pinfo, nullptr);
  return true;
}

// ---- JPEG ----

// Progressive JPEGs with thousands of tiny scans are a known CPU-exhaustion attack; libjpeg-turbo's
// own TurboJPEG API stops at 500 scans. Coefficient buffers for progressive files are capped too.
constexpr int kJpegMaxScans = 500;
constexpr long kJpegMaxMemory = 2047L << 20;

struct JpegCtx {
  jpeg_error_mgr pub;  // must be first: libjpeg hands us a jpeg_error_mgr*
  jpeg_progress_mgr progress;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

void jpeg_error_exit_cb(j_common_ptr cinfo) {
  auto* ctx = reinterpret_cast<JpegCtx*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, ctx->message);
  std::longjmp(ctx->jump, 1);
}
// Warnings (msg_level -1: corrupt data, premature end of file) are fatal: libjpeg would otherwise
// fill the missing part with gray and return a damaged picture without complaint.
void jpeg_emit_message_cb(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) jpeg_error_exit_cb(cinfo);
}
void jpeg_progress_cb(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kJpegMaxScans) {
    auto* ctx = reinterpret_cast<JpegCtx*>(cinfo->err);
    std::snprintf(ctx->message, sizeof(ctx->message), "more than %d progressive scans", kJpegMaxScans);
    std::longjmp(ctx->jump, 1);
  }
}

// MULDIV255 from Pillow's Convert.c: round(a * b / 255) for a, b in 0..255.
inline int muldiv255(int a, int b) {
  const int t = a * b + 128;
  return (t + (t >> 8)) >> 8;
}

bool decode_jpeg_raw(JpegCtx* ctx, const uint8_t* data, size_t size, const ImageLimits& lim, bool header_only,
                     RowSink* sink, std::vector<uint8_t>* rowbuf, ImageInfo* info) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&ctx->pub);
  ctx->pub.error_exit = jpeg_error_exit_cb;
  ctx->pub.emit_message = jpeg_emit_message_cb;
  if (setjmp(ctx->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  cinfo.mem->max_memory_to_use = kJpegMaxMemory;
  ctx->progress.progress_monitor = jpeg_progress_cb;
  cinfo.progress = &ctx->progress;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  info->format = ImageFormat::Jpeg;
  info->width = cinfo.image_width;
  info->height = cinfo.image_height;
  if (header_only) {
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  if (!dimensions_ok(cinfo.image_width, cinfo.image_height, lim, ctx->message, sizeof(ctx->message))) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const int nc = cinfo.num_components;
  if (nc == 1) {
    cinfo.out_color_space = JCS_GRAYSCALE;
  } else if (nc == 3) {
    cinfo.out_color_space = JCS_RGB;
  } else if (nc == 4) {
    cinfo.out_color_space = JCS_CMYK;
  } else {
    std::snprintf(ctx->message, sizeof(ctx->message), "unsupported JPEG with %d components", nc);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  // libjpeg defaults, as Pillow leaves them: JDCT_ISLOW, do_fancy_upsampling = TRUE, no scaling.
  jpeg_start_decompress(&cinfo);
  const size_t w = cinfo.output_width, h = cinfo.output_height;
  const size_t comps = static_cast<size_t>(cinfo.output_components);
  if ((comps != 3 && !try_resize(rowbuf, w * comps)) ||
      !sink->begin(static_cast<int64_t>(w), static_cast<int64_t>(h))) {
    std::snprintf(ctx->message, sizeof(ctx->message), "out of memory for %zux%zu pixels", w, h);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    const size_t y = cinfo.output_scanline;
    uint8_t* out = sink->row(static_cast<int64_t>(y));
    if (!out) {
      std::snprintf(ctx->message, sizeof(ctx->message), "decoding stopped");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    JSAMPROW row = comps == 3 ? out : rowbuf->data();
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      std::snprintf(ctx->message, sizeof(ctx->message), "file is truncated (incomplete download?)");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    const uint8_t* in = rowbuf->data();
    if (comps == 1) {
      for (size_t x = 0; x < w; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
    } else if (comps == 4) {
      // "CMYK;I": Pillow inverts the stored values, then cmyk2rgb.
      for (size_t x = 0; x < w; ++x) {
        const int c = 255 - in[4 * x], m = 255 - in[4 * x + 1], yy = 255 - in[4 * x + 2];
        const int nk = in[4 * x + 3];  // 255 - K with K = 255 - stored
        out[3 * x] = static_cast<uint8_t>(std::clamp(nk - muldiv255(c, nk), 0, 255));
        out[3 * x + 1] = static_cast<uint8_t>(std::clamp(nk - muldiv255(m, nk), 0, 255));
        out[3 * x + 2] = static_cast<uint8_t>(std::clamp(nk - muldiv255(yy, nk), 0, 255));
      }
    }
    sink->rows_done(static_cast<int64_t>(y) + 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// ---- WebP ----

// libwebp decodes the whole picture into one buffer: the sink's own if it has one, else a
// temporary whose rows then go to the sink.
void decode_webp(std::span<const uint8_t> bytes, const ImageLimits& lim, const std::string& name, RowSink* sink) {
  int w = 0, h = 0;
  if (!WebPGetInfo(bytes.data(), bytes.size(), &w, &h))
    fail(ErrorKind::BadImage, "image ", name, ": corrupt or truncated WebP header");
  require_dimensions(w, h, lim, name);
  if (!sink->begin(w, h)) fail(ErrorKind::BadImage, "image ", name, ": out of memory for ", w, "x", h, " pixels");
  const size_t bytes_out = static_cast<size_t>(w) * h * 3;
  std::vector<uint8_t> temp;
  uint8_t* pixels = sink->whole_image();
  if (!pixels) {
    temp.resize(bytes_out);
    pixels = temp.data();
  }
  if (!WebPDecodeRGBInto(bytes.data(), bytes.size(), pixels, bytes_out, w * 3))
    fail(ErrorKind::BadImage, "image ", name, ": corrupt or truncated WebP data");
  if (temp.empty()) {
    sink->rows_done(h);
    return;
  }
  for (int64_t y = 0; y < h; ++y) {
    uint8_t* out = sink->row(y);
    if (!out) fail(ErrorKind::BadImage, "image ", name, " (WebP): decoding stopped");
    std::memcpy(out, pixels + y * w * 3, static_cast<size_t>(w) * 3);
    sink->rows_done(y + 1);
  }
}

ImageInfo info_or_decode(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& lim,
                         bool header_only, RowSink* sink) {
  ImageInfo info;
  const ImageFormat fmt = sniff_image_format(bytes);
  std::vector<uint8_t> rowbuf;  // scratch owned here, outside the setjmp frames
  switch (fmt) {
    case ImageFormat::Png: {
      // Check IHDR's numbers ourselves first, for a precise message (libpng says only "Invalid
      // IHDR data"): signature (8) + length (4) + "IHDR" (4) + width (4, BE) + height (4, BE).
      if (!header_only && bytes.size() >= 24 && std::memcmp(bytes.data() + 12, "IHDR", 4) == 0) {
        auto be32 = [&](size_t at) {
          return (uint32_t{bytes[at]} << 24) | (uint32_t{bytes[at + 1]} << 16) | (uint32_t{bytes[at + 2]} << 8) |
                 uint32_t{bytes[at + 3]};
        };
        require_dimensions(be32(16), be32(20), lim, name);
      }
      PngCtx ctx{};
      ctx.data = bytes.data();
      ctx.size = bytes.size();
      if (!decode_png_raw(&ctx, lim, header_only, sink, &rowbuf, &info))
        fail(ErrorKind::BadImage, "image ", name, " (PNG): ", ctx.message);
      return info;
    }
    case ImageFormat::Jpeg: {
      JpegCtx ctx{};
      if (!decode_jpeg_raw(&ctx, bytes.data(), bytes.size(), lim, header_only, sink, &rowbuf, &info))
        fail(ErrorKind::BadImage, "image ", name, " (JPEG): ", ctx.message);
      return info;
    }
    case ImageFormat::Webp: {
      int w = 0, h = 0;
      if (!WebPGetInfo(bytes.data(), bytes.size(), &w, &h))
        fail(ErrorKind::BadImage, "image ", name, ": corrupt or truncated WebP header");
      info = {ImageFormat::Webp, w, h};
      if (!header_only) decode_webp(bytes, lim, name, sink);
      return info;
    }
    case ImageFormat::Bmp:
    case ImageFormat::Gif:
    case ImageFormat::Tiff:
      fail(ErrorKind::BadImage, "image ", name, ": ", image_format_name(fmt),
           " is not supported (use PNG, JPEG or WebP)");
    case ImageFormat::Unknown: break;
  }
  fail(ErrorKind::BadImage, "image ", name, ": unrecognised format (",
       bytes.size() < 8 ? "file too short" : "no PNG/JPEG/WebP signature", ")");
}

// decode_image's sink: the whole picture in one RgbImage.
class RgbImageSink final : public RowSink {
 public:
  explicit RgbImageSink(RgbImage* img) : img_(img) {}
  bool begin(int64_t width, int64_t height) noexcept override {
    if (!try_resize(&img_->pixels, static_cast<size_t>(width * height * 3))) return false;
    img_->width = width;
    img_->height = height;
    return true;
  }
  uint8_t* row(int64_t y) noexcept override { return img_->row(y); }
  void rows_done(int64_t) noexcept override {}
  uint8_t* whole_image() noexcept override { return img_->pixels.data(); }

 private:
  RgbImage* img_;
};

}  // namespace

ImageInfo read_image_info(std::span<const uint8_t> bytes, const std::string& display_name) {
  ImageLimits unlimited;
  return info_or_decode(bytes, display_name, unlimited, /*header_only=*/true, nullptr);
}

namespace detail {

std::vector<uint8_t> read_image_file(const std::string& path, const ImageLimits& limits) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  SAILVL_CHECK(f.is_open(), BadImage, "image ", path, ": cannot open file");
  const std::streamoff size = f.tellg();
  SAILVL_CHECK(size >= 0, BadImage, "image ", path, ": cannot read file size (not a regular file?)");
  SAILVL_CHECK(size <= limits.max_file_bytes, BadImage, "image ", path, ": ", size,
               " bytes exceeds the file-size limit of ", limits.max_file_bytes);
  SAILVL_CHECK(size > 0, BadImage, "image ", path, ": file is empty");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(bytes.data()), size);
  SAILVL_CHECK(f.gcount() == size, BadImage, "image ", path, ": short read");
  return bytes;
}

void decode_rows(std::span<const uint8_t> bytes, const std::string& display_name, const ImageLimits& limits,
                 RowSink& sink) {
  SAILVL_CHECK(static_cast<int64_t>(bytes.size()) <= limits.max_file_bytes, BadImage, "image ", display_name, ": ",
               bytes.size(), " bytes exceeds the file-size limit of ", limits.max_file_bytes);
  info_or_decode(bytes, display_name, limits, /*header_only=*/false, &sink);
}

}  // namespace detail

RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& display_name, const ImageLimits& limits) {
  RgbImage img;
  RgbImageSink sink(&img);
  detail::decode_rows(bytes, display_name, limits, sink);
  SAILVL_CHECK(img.width > 0 && img.height > 0 && img.pixels.size() == static_cast<size_t>(img.width * img.height * 3),
               Internal, "image ", display_name, ": decoder returned an inconsistent buffer");
  return img;
}

RgbImage load_image(const std::string& path, const ImageLimits& limits) {
  const std::vector<uint8_t> bytes = detail::read_image_file(path, limits);
  return decode_image(bytes, path, limits);
}

}  // namespace sailvl::image
