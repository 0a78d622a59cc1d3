// wisp-vmm: the VMM process, one microVM per process. `wisp run` and `wisp snapshot restore`
// exec it with their arguments; the manager (wisp exec, wisp template create, wisp invoke)
// spawns it directly. It holds no manager code: it boots or restores one machine and serves
// its control socket until the guest stops.
#include <cstdio>
#include <cstring>

#include "base/exit_codes.h"
#include "base/version.h"
#include "vmm/main/restore_command.h"
#include "vmm/main/run_command.h"
#include "vmm/main/vmm_process.h"

namespace {

constexpr const char* kUsage = R"(Usage: wisp-vmm COMMAND [OPTIONS]

The wisp VMM process: one microVM per process.

Commands:
  run      boot a kernel (what 'wisp run' runs; 'wisp-vmm run --help' lists the options)
  restore  run a VM restored from a snapshot directory (what 'wisp snapshot restore' runs)
  version  print the version
)";

}  // namespace

int main(int argc, char** argv) {
  uint64_t t0 = wisp::process_start_ns();
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
    std::printf("wisp-vmm %s\n", wisp::kWispVersion);
    return wisp::kExitOk;
  }
  if (!std::strcmp(cmd, "run")) return wisp::run_command(argc - 1, argv + 1, t0);
  if (!std::strcmp(cmd, "restore")) return wisp::restore_command(argc - 1, argv + 1, t0);
  std::fprintf(stderr, "wisp-vmm: unknown command '%s'\n%s", cmd, kUsage);
  return wisp::kExitUsage;
}
