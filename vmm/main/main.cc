// wisp-vmm: the VMM process, one microVM per process. `wisp run` and `wisp snapshot restore`
// exec it with their arguments; the manager (wisp exec, wisp template create, wisp invoke)
// spawns it directly. It holds no manager code: it boots or restores one machine and serves
// its control socket until the guest stops.
#include "base/options.h"
#include "base/version.h"
#include "vmm/main/restore_command.h"
#include "vmm/main/run_command.h"
#include "vmm/main/standby_command.h"
#include "vmm/main/vmm_process.h"

namespace {

constexpr const char* kUsage = R"(Usage: wisp-vmm COMMAND [OPTIONS]

The wisp VMM process: one microVM per process.

Commands:
  run      boot a kernel (what 'wisp run' runs; 'wisp-vmm run --help' lists the options)
  restore  run a VM restored from a snapshot directory (what 'wisp snapshot restore' runs)
  standby  jail a VMM now, restore the snapshot a later order hands it (the manager's pool)
  version  print the version
)";

}  // namespace

int main(int argc, char** argv) {
  uint64_t t0 = wisp::process_start_ns();
  wisp::small_thread_stacks();
  return wisp::run_subcommand(
      "wisp-vmm", kUsage, argc, argv,
      {{"run", [t0](int n, char** a) { return wisp::run_command(n, a, t0); }},
       {"restore", [t0](int n, char** a) { return wisp::restore_command(n, a, t0); }},
       {"standby", [t0](int n, char** a) { return wisp::standby_command(n, a, t0); }}},
      wisp::kWispVersion);
}
