// The virtio-blk I/O thread's allow-list (BlockWorker): positional reads and writes on the
// drive's fd, its flushes, and the completion eventfd. No ioctl at all, no open, no socket.
#include <sys/mman.h>

#include "vmm/jail/seccomp_table.h"

namespace wisp::jail {
namespace {

constexpr SyscallRule kSyscalls[] = {
    allow("pread64", "RawFileBackend::read_at: guest reads"),
    allow("pwrite64", "RawFileBackend::write_at: guest writes"),
    allow("fdatasync", "RawFileBackend::flush: the guest's flush requests"),
    allow("write", "the completion eventfd; log lines (I/O errors)"),
    allow("futex", "the job queue's mutex and condition variable"),
    allow_if("mmap", "malloc's per-thread arena (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow_if("mprotect", "malloc grows its arena (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow("munmap", "malloc trims its arena; thread exit"),
    allow("madvise", "thread exit: glibc frees the stack's pages (MADV_DONTNEED)"),
    allow("rt_sigprocmask", "thread exit: glibc blocks signals before it unmaps the stack"),
    allow("exit", "the thread ends (the device is destroyed)"),
    allow("exit_group", "the SIGSYS handler; an abort"),
    allow("restart_syscall", "a call interrupted by a stop/continue signal is resumed"),
};

}  // namespace

const SeccompTable& block_seccomp_table() {
  static constexpr SeccompTable kTable{kSyscalls, {}};
  return kTable;
}

}  // namespace wisp::jail
