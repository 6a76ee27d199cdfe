// Strict JSON parsing: UTF-8 check, depth cap, duplicate keys (see json_strict.h for the plan).
#include "loader/json_strict.h"

#include <cmath>

#include <set>
#include <vector>

namespace sailvl::loader {

size_t first_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlongs
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // no overlongs
      if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Maximum nesting of [ and { outside strings. Escapes inside strings are skipped so `"\"["` does
// not count. Malformed text is left for the real parser to report.
static size_t max_nesting(std::string_view s) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& display_name, ErrorKind kind,
                                 size_t max_depth) {
  const size_t bad = first_invalid_utf8(text);
  if (bad != std::string_view::npos) fail(kind, display_name, ": invalid UTF-8 at byte ", bad, " of the JSON text");
  const size_t depth = max_nesting(text);
  if (depth > max_depth)
    fail(kind, display_name, ": JSON nested ", depth, " levels deep (the limit is ", max_depth, ")");

  // One set of seen keys per open object; arrays hold no keys, so only objects push.
  std::vector<std::set<std::string>> open_objects;
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) {
      open_objects.emplace_back();
    } else if (ev == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == E::key) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!open_objects.empty() && !open_objects.back().insert(k).second)
        fail(kind, display_name, ": duplicate JSON key \"", escape_for_print(k), "\"");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    fail(kind, display_name, ": invalid JSON (", e.what(), ")");
  }
}

// ---- JsonObject ----

using nlohmann::json;

bool JsonObject::has(const char* key) const { return j.contains(key) && !j[key].is_null(); }

int64_t JsonObject::integer(const char* key, int64_t def, int64_t lo, int64_t hi) const {
  if (!has(key)) return def;
  const json& v = j[key];
  SAILVL_CHECK(v.is_number_integer(), BadModel, key_name(key), " must be an integer, got ", v.dump());
  SAILVL_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(hi), BadModel, key_name(key),
               " = ", v.dump(), " is out of range [", lo, ", ", hi, "]");
  const int64_t x = v.get<int64_t>();
  SAILVL_CHECK(x >= lo && x <= hi, BadModel, key_name(key), " = ", x, " is out of range [", lo, ", ", hi, "]");
  return x;
}

int64_t JsonObject::id(const char* key, int64_t def) const {
  if (has(key) && j[key].is_array()) {
    SAILVL_CHECK(!j[key].empty(), BadModel, key_name(key), " is an empty list");
    json one = json::object();
    one[key] = j[key][0];
    return JsonObject{one, where}.integer(key, def, 0, int64_t{1} << 31);
  }
  return integer(key, def, 0, int64_t{1} << 31);
}

double JsonObject::positive(const char* key, double def) const {
  if (!has(key)) return def;
  const json& v = j[key];
  SAILVL_CHECK(v.is_number(), BadModel, key_name(key), " must be a number, got ", v.dump());
  const double x = v.get<double>();
  SAILVL_CHECK(std::isfinite(x) && x > 0, BadModel, key_name(key), " = ", v.dump(), " must be finite and > 0");
  return x;
}

bool JsonObject::boolean(const char* key, bool def) const {
  if (!has(key)) return def;
  SAILVL_CHECK(j[key].is_boolean(), BadModel, key_name(key), " must be true or false, got ", j[key].dump());
  return j[key].get<bool>();
}

std::string JsonObject::string(const char* key, const std::string& def) const {
  if (!has(key)) return def;
  SAILVL_CHECK(j[key].is_string(), BadModel, key_name(key), " must be a string, got ", j[key].dump());
  return j[key].get<std::string>();
}

JsonObject JsonObject::child(const char* key) const {
  SAILVL_CHECK(has(key), BadModel, key_name(key), " is missing");
  SAILVL_CHECK(j[key].is_object(), BadModel, key_name(key), " must be a JSON object");
  return JsonObject{j[key], key_name(key)};
}

}  // namespace sailvl::loader
