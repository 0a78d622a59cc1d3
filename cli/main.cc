// wisp: the command-line front end. Subcommands live in their own files.
#include <time.h>

#include <cstdio>
#include <cstring>

#include "cli/exec_command.h"
#include "cli/run_command.h"
#include "cli/snapshot_command.h"
#include "cli/template_command.h"

namespace {

constexpr const char* kUsage = R"(Usage: wisp COMMAND [OPTIONS]

Commands:
  run      boot a kernel in a microVM with a serial console
  exec     run a command in a fresh microVM's sandbox (stdin in, stdout/stderr out)
  snapshot create, restore or verify a snapshot of one VM
  template create, list or remove function templates (warmed snapshots)
  invoke   call a template's handler once on a fresh clone restored from its snapshot
  version  print the version

'wisp COMMAND --help' describes a command.
)";

unsigned long long monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<unsigned long long>(ts.tv_sec) * 1000000000ull +
         static_cast<unsigned long long>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long long t0 = monotonic_ns();
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return wisp::kExitUsage;
  }
  const char* cmd = argv[1];
  if (!std::strcmp(cmd, "-h") || !std::strcmp(cmd, "--help") || !std::strcmp(cmd, "help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!std::strcmp(cmd, "version") || !std::strcmp(cmd, "--version")) {
    std::puts("wisp 0.1.0");
    return 0;
  }
  if (!std::strcmp(cmd, "run")) return wisp::run_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "exec")) return wisp::exec_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "template")) return wisp::template_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "invoke")) return wisp::invoke_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "snapshot")) return wisp::snapshot_command(argc - 1, argv + 1, t0);
  std::fprintf(stderr, "wisp: unknown command '%s'\n%s", cmd, kUsage);
  return wisp::kExitUsage;
}
