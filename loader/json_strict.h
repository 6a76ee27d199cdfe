// Strict JSON for untrusted files (safetensors headers, model.safetensors.index.json, config.json).
//
// nlohmann::json alone is not enough for hostile input (docs/VALIDATION.md): it silently keeps the
// last of two duplicate keys, and it accepts any nesting depth. parse_json_strict() adds, in order:
//   1. UTF-8 validation of the whole text (the error gives the byte offset),
//   2. a nesting-depth cap, checked by a pre-scan before nlohmann builds anything,
//   3. duplicate-key rejection through nlohmann's parser callback (one key set per open object).
// Every error is ErrorKind `kind` (BadModel for checkpoints) and names `display_name`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace sailvl::loader {

// Offset of the first byte that is not part of well-formed UTF-8 (no overlongs, no surrogates,
// nothing above U+10FFFF), or npos if the whole text is valid.
size_t first_invalid_utf8(std::string_view s);

nlohmann::json parse_json_strict(std::string_view text, const std::string& display_name,
                                 ErrorKind kind = ErrorKind::BadModel, size_t max_depth = 64);

}  // namespace sailvl::loader
