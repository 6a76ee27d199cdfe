// `sailvl`: one binary, one subcommand per cli/<name>.cpp (see cli/command.h).
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "tensor/error.h"

using namespace sailvl;

static void print_top_help() {
  std::cout << "sailvl " << SAILVL_VERSION << " - SAIL-VL vision-language inference (C++/CUDA)\n\n"
            << "usage: sailvl <command> [options]   (sailvl <command> --help for its options)\n\ncommands:\n";
  for (const auto& [name, c] : cli::registry()) {
    std::string left = "  " + name;
    std::cout << left << std::string(left.size() < 14 ? 14 - left.size() : 1, ' ') << c.summary << "\n";
  }
}

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // `sailvl ... | head`: writes fail with EPIPE instead of killing us
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 2 && args[0] == "help") args = {args[1], "--help"};  // `sailvl help run`
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    print_top_help();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "sailvl " << SAILVL_VERSION << "\n";
    return 0;
  }
  auto it = cli::registry().find(args[0]);
  if (it == cli::registry().end()) {
    std::cerr << "sailvl: unknown command '" << escape_for_print(args[0]) << "' (run 'sailvl --help' for the list)\n";
    return 2;
  }
  const cli::Command& cmd = it->second;
  cli::Args a;
  a.usage_line = "sailvl " + cmd.name + " [options]";
  a.description = cmd.summary;
  try {
    cmd.setup(a);
    std::vector<std::string> rest(args.begin() + 1, args.end());
    for (const auto& r : rest)
      if (r == "-h" || r == "--help") {
        std::cout << a.help_text();
        return 0;
      }
    a.parse(rest);
    return cmd.run(a);
  } catch (const Error& e) {
    std::cout.flush();
    std::cerr << "sailvl " << cmd.name << ": " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::cerr << "sailvl " << cmd.name << ": out of host memory\n";
    return static_cast<int>(ErrorKind::OutOfMemory);
  } catch (const std::exception& e) {
    std::cerr << "sailvl " << cmd.name << ": internal error: " << e.what() << "\n";
    return static_cast<int>(ErrorKind::Internal);
  }
}
