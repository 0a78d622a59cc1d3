// The exit statuses of `wisp` and `wisp-vmm`, in one place so every command documents and
// returns the same numbers (each command's --help lists the ones it uses).
#pragma once

namespace wisp {

enum ExitCode : int {
  kExitOk = 0,                // done; for a VM: the guest powered off or rebooted
  kExitError = 1,             // bad input file, VMM failure, no such template
  kExitUsage = 2,             // bad command line
  kExitGuestPanic = 3,        // the guest kernel panicked or crashed
  kExitNoKvm = 4,             // no /dev/kvm, or one that cannot run Linux guests (kvm_pvm)
  kExitSeccompViolation = 5,  // the jailed VMM made a system call its seccomp filter forbids
  kExitVmmOutOfMemory = 6,    // the VMM was killed by its cgroup's memory limit (memory.max)
  // `wisp exec` and `wisp invoke`, besides the handler's own status. Chosen like timeout(1)
  // and env(1), so scripts can tell wisp's failures from the handler's.
  kExitTimedOut = 124,       // the handler ran past its timeout and was killed
  kExitLimitExceeded = 125,  // a limit ended it: memory, pids, output size
  kExitVmFailed = 126,       // the VM did not boot or restore, or the agent was unreachable
  kExitSignalBase = 128,     // 128+N: killed by (or stopped on) signal N
};

}  // namespace wisp
