// Strict JSON parsing: UTF-8 check, depth cap, duplicate keys (see json_strict.h for the plan).
#include "loader/json_strict.h"

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

}  // namespace sailvl::loader
