// Subcommand registry and a small flag parser shared by every `sailvl <command>`.
//
// A subcommand lives in its own cli/<name>.cpp and registers itself:
//
//   static int run_inspect(cli::Args& a) { ... }
//   SAILVL_COMMAND(inspect, "print a checkpoint's variant, sizes and memory needs", setup_inspect, run_inspect);
//
// where setup_inspect declares its flags on the Args. Errors are sailvl::Error; main() maps
// their kind to the exit code (tensor/error.h).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sailvl::cli {

class Args {
 public:
  // Declare flags. `names` is "-m,--model"; the first long name is the key used by get().
  void flag(const std::string& names, const std::string& help);  // boolean switch
  void option(const std::string& names, const std::string& metavar, const std::string& help,
              std::optional<std::string> default_value = std::nullopt);
  void multi(const std::string& names, const std::string& metavar, const std::string& help);  // repeatable
  void positional(const std::string& metavar, const std::string& help);                       // remaining words

  // Parse; throws Error(Usage) on unknown flags or missing values.
  void parse(const std::vector<std::string>& argv);

  bool has(const std::string& key) const;         // given on the command line (or has a default)
  bool on(const std::string& key) const;          // boolean flag set
  std::string get(const std::string& key) const;  // throws Usage if absent
  std::string get_or(const std::string& key, const std::string& fallback) const;
  long long get_int(const std::string& key, long long lo, long long hi) const;
  double get_double(const std::string& key, double lo, double hi) const;
  std::vector<std::string> all(const std::string& key) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

  std::string help_text() const;
  std::string usage_line;
  std::string description;
  std::vector<std::string> examples;  // printed under "examples:" by --help

 private:
  struct Spec {
    std::vector<std::string> names;
    std::string key, metavar, help;
    bool is_flag = false, is_multi = false;
    std::optional<std::string> default_value;
  };
  const Spec* find(const std::string& name) const;
  std::vector<Spec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
  std::string positional_metavar_, positional_help_;
};

struct Command {
  std::string name;
  std::string summary;
  std::function<void(Args&)> setup;
  std::function<int(Args&)> run;
};

std::map<std::string, Command>& registry();

struct Registrar {
  Registrar(Command c) { registry()[c.name] = std::move(c); }
};

}  // namespace sailvl::cli

#define SAILVL_COMMAND(name, summary, setup_fn, run_fn) \
  static ::sailvl::cli::Registrar sailvl_register_##name({#name, summary, setup_fn, run_fn})
