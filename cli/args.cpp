#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "cli/command.h"
#include "tensor/error.h"

namespace sailvl::cli {

std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> r;
  return r;
}

static std::vector<std::string> split_names(const std::string& names) {
  std::vector<std::string> out;
  std::stringstream ss(names);
  std::string s;
  while (std::getline(ss, s, ',')) out.push_back(s);
  return out;
}

static std::string key_of(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (n.rfind("--", 0) == 0) return n.substr(2);
  return names.front().substr(1);
}

void Args::flag(const std::string& names, const std::string& help) {
  auto n = split_names(names);
  specs_.push_back({n, key_of(n), "", help, true, false, std::nullopt});
}

void Args::option(const std::string& names, const std::string& metavar, const std::string& help,
                  std::optional<std::string> default_value) {
  auto n = split_names(names);
  specs_.push_back({n, key_of(n), metavar, help, false, false, std::move(default_value)});
}

void Args::multi(const std::string& names, const std::string& metavar, const std::string& help) {
  auto n = split_names(names);
  specs_.push_back({n, key_of(n), metavar, help, false, true, std::nullopt});
}

void Args::positional(const std::string& metavar, const std::string& help) {
  positional_metavar_ = metavar;
  positional_help_ = help;
}

const Args::Spec* Args::find(const std::string& name) const {
  for (const auto& s : specs_)
    for (const auto& n : s.names)
      if (n == name) return &s;
  return nullptr;
}

void Args::parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-' &&
        !(a.size() > 1 && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))) {
      if (a == "--") {
        for (++i; i < argv.size(); ++i) positionals_.push_back(argv[i]);
        break;
      }
      std::string value;
      bool inline_value = false;
      if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        inline_value = true;
      }
      const Spec* s = find(a);
      SAILVL_CHECK(s, Usage, "unknown option '", a, "' (see --help)");
      if (s->is_flag) {
        SAILVL_CHECK(!inline_value, Usage, "option '", a, "' takes no value");
        values_[s->key] = {"1"};
        continue;
      }
      if (!inline_value) {
        SAILVL_CHECK(i + 1 < argv.size(), Usage, "option '", a, "' needs a value (", s->metavar, ")");
        value = argv[++i];
      }
      if (s->is_multi)
        values_[s->key].push_back(value);
      else
        values_[s->key] = {value};
    } else {
      positionals_.push_back(a);
    }
  }
  if (positional_metavar_.empty() && !positionals_.empty())
    fail(ErrorKind::Usage, "unexpected argument '", positionals_.front(), "' (see --help)");
}

bool Args::has(const std::string& key) const {
  if (values_.count(key)) return true;
  for (const auto& s : specs_)
    if (s.key == key && s.default_value) return true;
  return false;
}

bool Args::on(const std::string& key) const { return values_.count(key) > 0; }

std::string Args::get(const std::string& key) const {
  if (auto it = values_.find(key); it != values_.end()) return it->second.back();
  for (const auto& s : specs_)
    if (s.key == key && s.default_value) return *s.default_value;
  fail(ErrorKind::Usage, "missing required option --", key, " (see --help)");
}

std::string Args::get_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? get(key) : fallback;
}

long long Args::get_int(const std::string& key, long long lo, long long hi) const {
  const std::string v = get(key);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  SAILVL_CHECK(errno == 0 && end && *end == 0 && !v.empty(), Usage, "--", key, " expects an integer, got '", v, "'");
  SAILVL_CHECK(x >= lo && x <= hi, Usage, "--", key, " must be in [", lo, ", ", hi, "], got ", x);
  return x;
}

double Args::get_double(const std::string& key, double lo, double hi) const {
  const std::string v = get(key);
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  SAILVL_CHECK(errno == 0 && end && *end == 0 && !v.empty() && x == x, Usage, "--", key, " expects a number, got '", v,
               "'");
  SAILVL_CHECK(x >= lo && x <= hi, Usage, "--", key, " must be in [", lo, ", ", hi, "], got ", v);
  return x;
}

std::vector<std::string> Args::all(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::help_text() const {
  std::ostringstream os;
  os << "usage: " << usage_line << "\n";
  if (!description.empty()) os << "\n" << description << "\n";
  os << "\noptions:\n";
  for (const auto& s : specs_) {
    std::string left = "  ";
    for (size_t i = 0; i < s.names.size(); ++i) left += (i ? ", " : "") + s.names[i];
    if (!s.is_flag) left += " " + s.metavar;
    os << left;
    if (left.size() < 28)
      os << std::string(28 - left.size(), ' ');
    else
      os << "\n" << std::string(28, ' ');
    os << s.help;
    if (s.default_value) os << " (default: " << *s.default_value << ")";
    if (s.is_multi) os << " (repeatable)";
    os << "\n";
  }
  os << "  -h, --help                print this help\n";
  if (!positional_metavar_.empty()) os << "  " << positional_metavar_ << "  " << positional_help_ << "\n";
  if (!examples.empty()) {
    os << "\nexamples:\n";
    for (const auto& e : examples) os << "  " << e << "\n";
  }
  return os.str();
}

}  // namespace sailvl::cli
