// Internal to image/: the decoders of decode.cpp, delivering rows in order to a sink instead of one
// RgbImage, so that preprocess.cpp can resize rows while the rest of the file is still being decoded
// (and keep only a ring of rows instead of the whole picture).
//
// Threads: a decoder runs on the calling thread and calls the sink from there, row by row.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "image/image.h"

namespace sailvl::image::detail {

// Where a decoder puts its pixels. The decoder calls begin() once, with the size it has checked
// against the limits, then for y = 0, 1, ..., height - 1: row(y), writes width * 3 bytes of RGB8
// there, then rows_done(y + 1). Called from the decoders' setjmp frames: nothing here may throw.
class RowSink {
 public:
  virtual ~RowSink() = default;
  // False: the sink cannot take the image (out of memory); the decoder fails with that message.
  virtual bool begin(int64_t width, int64_t height) noexcept = 0;
  // Where row y goes, or nullptr to stop decoding (the caller no longer wants the image).
  virtual uint8_t* row(int64_t y) noexcept = 0;
  // Rows [0, rows) are written.
  virtual void rows_done(int64_t rows) noexcept = 0;
  // After begin(): the whole picture as one buffer of height rows of width * 3 bytes, if the sink
  // holds one (decoders that cannot go row by row, WebP, then write straight into it), else nullptr.
  virtual uint8_t* whole_image() noexcept { return nullptr; }
};

// The file's bytes, size-capped as load_image does (BadImage errors name `path`).
std::vector<uint8_t> read_image_file(const std::string& path, const ImageLimits& limits);

// decode_image(), rows delivered to `sink`. Throws BadImage exactly where decode_image does.
void decode_rows(std::span<const uint8_t> bytes, const std::string& display_name, const ImageLimits& limits,
                 RowSink& sink);

}  // namespace sailvl::image::detail
