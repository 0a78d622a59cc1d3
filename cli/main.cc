// wisp: the command-line front end. Each command lives in its own file (cli/commands.h) and
// calls the manager library; the VMM itself is the sibling binary wisp-vmm.
#include <cstdio>
#include <cstring>

#include "base/clock.h"
#include "base/exit_codes.h"
#include "base/version.h"
#include "cli/commands.h"

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

}  // namespace

int main(int argc, char** argv) {
  uint64_t t0 = wisp::now_ns();
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return wisp::kExitUsage;
  }
  const char* cmd = argv[1];
  if (!std::strcmp(cmd, "-h") || !std::strcmp(cmd, "--help") || !std::strcmp(cmd, "help")) {
    std::fputs(kUsage, stdout);
    return wisp::kExitOk;
  }
  if (!std::strcmp(cmd, "version") || !std::strcmp(cmd, "--version")) {
    std::printf("wisp %s\n", wisp::kWispVersion);
    return wisp::kExitOk;
  }
  using namespace wisp::cli;
  if (!std::strcmp(cmd, "run")) return run_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "exec")) return exec_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "template")) return template_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "invoke")) return invoke_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "snapshot")) return snapshot_command(argc - 1, argv + 1, t0);
  std::fprintf(stderr, "wisp: unknown command '%s'\n%s", cmd, kUsage);
  return wisp::kExitUsage;
}
