// The vCPU threads' allow-list: KVM_RUN, and what the exits it dispatches do (devices' MMIO
// and port handlers run on this thread). Reviewed against strace and the kernel's log of a
// WISP_SECCOMP_LOG_ALL run (tests/integration/seccomp_tables_check.py).
#include <sys/mman.h>

#include "vmm/jail/seccomp_table.h"

namespace wisp::jail {
namespace {

constexpr SyscallRule kSyscalls[] = {
    allow("write",
          "EventFdIrq::trigger and queue eventfds (8-byte counters); the console; log lines"),
    allow("futex", "PauseGate's condition variable, StopRequest's mutex"),
    allow("timerfd_settime", "VsockMuxer disarms its timer on a device reset (MMIO write)"),
    allow("close", "a device reset (MMIO write) closes the vsock connections' host sockets"),
    allow_if("mmap", "malloc's per-thread arena (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow_if("mprotect", "malloc grows its arena (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow("munmap", "malloc trims its arena; thread exit"),
    allow("madvise", "thread exit: glibc frees the stack's pages (MADV_DONTNEED)"),
    allow("rt_sigreturn", "return from the kick signal's handler (VcpuRunner::kick)"),
    allow("rt_sigprocmask", "thread exit: glibc blocks signals before it unmaps the stack"),
    allow("exit", "the thread ends (VM stopped)"),
    allow("exit_group", "the SIGSYS handler; an abort"),
    allow("restart_syscall", "a call interrupted by a stop/continue signal is resumed"),
};

constexpr IoctlRule kIoctls[] = {
    {"KVM_RUN", kvm_io(0x80), "Vcpu::run, complete_pending_io"},
};

}  // namespace

const SeccompTable& vcpu_seccomp_table() {
  static constexpr SeccompTable kTable{kSyscalls, kIoctls};
  return kTable;
}

}  // namespace wisp::jail
