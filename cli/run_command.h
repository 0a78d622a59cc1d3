// `wisp run`: boot a kernel with a console, like `lkvm run` or `firectl`.
#pragma once

#include <string>

namespace wisp {

// Exit codes shared by every wisp command (documented in --help).
enum ExitCode : int {
  kExitOk = 0,          // guest powered off or rebooted
  kExitError = 1,       // bad input file, VMM failure
  kExitUsage = 2,       // bad command line
  kExitGuestPanic = 3,  // the guest kernel panicked or crashed
  kExitNoKvm = 4,       // no /dev/kvm, or one that cannot run Linux guests (kvm_pvm)
};

int run_command(int argc, char** argv, unsigned long long t0_ns);

struct RunResult;
struct MachineConfig;
// --console MODE: stdio, none or a file path. False for an empty MODE.
bool set_console(const std::string& mode, MachineConfig* cfg);
// The exit status for how a VM ended (see the table above), with a message on stderr for
// failures. Shared by `wisp run` and `wisp snapshot restore`.
int exit_code_for(const RunResult& r);
// 0 when /dev/kvm (or $WISP_DEV_KVM) can boot Linux guests, else kExitNoKvm after explaining.
int check_kvm_usable();
std::string dev_kvm_path();

}  // namespace wisp
