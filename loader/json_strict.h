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

// Typed, checked reads from one JSON object of a config file. `where` prefixes every message
// ("config.json: vision_config"); a key that is missing or null takes the given default; a key
// of the wrong type or out of range is ErrorKind::BadModel naming it.
//
//   const JsonObject v = top.child("vision_config");
//   c.hidden = v.integer("hidden_size", 1024, 1, 1 << 20);
struct JsonObject {
  const nlohmann::json& j;
  std::string where;

  bool has(const char* key) const;
  std::string key_name(const char* key) const { return where + "." + key; }
  int64_t integer(const char* key, int64_t def, int64_t lo, int64_t hi) const;
  // An int, or a list of ints whose first element is used (eos_token_id may be a list).
  int64_t id(const char* key, int64_t def) const;
  double positive(const char* key, double def) const;  // finite and > 0
  bool boolean(const char* key, bool def) const;
  std::string string(const char* key, const std::string& def) const;
  JsonObject child(const char* key) const;  // must be present and an object
};

}  // namespace sailvl::loader
