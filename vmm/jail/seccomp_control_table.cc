// The control thread's allow-list: Cap'n Proto RPC over the control socket (a KJ event loop
// on epoll). Its calls run on the event loop (EventLoop::run_on_loop), so it needs no KVM
// ioctl. KJ sets itself up after the filter is on (the thread installs it first thing).
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "vmm/jail/seccomp_table.h"

namespace wisp::jail {
namespace {

constexpr SyscallRule kSyscalls[] = {
    allow("epoll_create1", "KJ's UnixEventPort"),
    allow("eventfd2", "KJ's UnixEventPort: cross-thread wake-ups"),
    allow("signalfd4", "KJ's UnixEventPort: signals (none captured; set up anyway)"),
    allow("rt_sigaction", "KJ ignores SIGPIPE"),
    allow("rt_sigprocmask", "KJ's signal mask; thread exit"),
    allow("epoll_ctl", "KJ watches the listener and each connection"),
    allow("epoll_wait", "KJ's event loop"),
    allow("accept4", "ControlServer accepts a client on the control socket"),
    allow("read", "RPC messages in; KJ's eventfd"),
    allow("writev", "RPC messages out"),
    allow("write", "KJ's eventfd; log lines"),
    allow("recvmsg", "RPC messages carrying fds (snapshot files handed in by the manager)"),
    // take_output_file checks each received fd: a copy, a regular and empty file, writable.
    allow_if("fcntl", "... F_DUPFD_CLOEXEC copies it", int_eq(1, F_DUPFD_CLOEXEC)),
    allow_if("fcntl", "... F_GETFL reads its access mode", int_eq(1, F_GETFL)),
    allow_if("newfstatat", "... fstat (glibc's: AT_EMPTY_PATH; the path itself is unchecked)",
             bits_set(3, AT_EMPTY_PATH)),
    allow("setsockopt", "KJ sets TCP_NODELAY on accepted sockets (fails on Unix sockets)"),
    allow_if("getsockopt", "ControlServer checks a client's uid (SO_PEERCRED)",
             int_eq(2, SO_PEERCRED)),
    allow("close", "a client went away; KJ's teardown"),
    allow("futex", "run_on_loop waits for the loop thread's answer; mutexes"),
    allow_if("mmap", "malloc's per-thread arena (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow_if("mprotect", "malloc grows its arena (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow("munmap", "malloc trims its arena; thread exit"),
    allow("madvise", "thread exit: glibc frees the stack's pages (MADV_DONTNEED)"),
    allow("exit", "the thread ends (VM stopped)"),
    allow("exit_group", "the SIGSYS handler; an abort"),
    allow("restart_syscall", "a call interrupted by a stop/continue signal is resumed"),
};

constexpr IoctlRule kIoctls[] = {
    {"FIONBIO", FIONBIO, "KJ makes an accepted socket non-blocking"},
    {"FIOCLEX", FIOCLEX, "KJ marks an accepted socket close-on-exec"},
};

}  // namespace

const SeccompTable& control_seccomp_table() {
  static constexpr SeccompTable kTable{kSyscalls, kIoctls};
  return kTable;
}

}  // namespace wisp::jail
