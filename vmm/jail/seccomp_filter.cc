#include "vmm/jail/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <span>
#include <vector>

#include "base/error.h"
#include "base/exit_codes.h"
#include "vmm/jail/seccomp_compile.h"
#include "vmm/jail/seccomp_programs.h"
#include "vmm/jail/seccomp_table.h"

namespace wisp::jail {
namespace {

// The SIGSYS handler can be given no argument, so what it needs lives here: the report page
// (set once, before any filter goes on) and the kind of the thread it interrupts (each thread
// sets its own in install_thread_filter). Both are plain words: reading them is
// async-signal-safe; the thread_local is in the executable, so it needs no TLS allocation.
std::atomic<ViolationReport*> g_report{nullptr};
thread_local int32_t t_thread_kind = -1;

void on_sigsys(int, siginfo_t* info, void*) {
  ViolationReport* report = g_report.load(std::memory_order_relaxed);
  if (report != nullptr) {
    report->thread_kind.store(t_thread_kind, std::memory_order_relaxed);
    report->syscall_nr.store(info->si_syscall, std::memory_order_release);
  }
  // Straight to the kernel: no atexit handlers, no stdio, nothing the filter might trap.
  syscall(SYS_exit_group, static_cast<int>(kExitSeccompViolation));
}

}  // namespace

ViolationReport* map_violation_report() {
  void* page = mmap(nullptr, sizeof(ViolationReport), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) throw_errno("mmap of the seccomp violation report");
  return new (page) ViolationReport();
}

void install_sigsys_handler(ViolationReport* report) {
  g_report.store(report, std::memory_order_relaxed);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigfillset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, nullptr) < 0) throw_errno("sigaction(SIGSYS)");
}

void install_thread_filter(ThreadKind kind, SeccompMode mode) {
  // The trap mode's programs were compiled with wisp (seccomp_programs.h); the log mode, a
  // check of the tables, compiles its one-rule program now.
  std::vector<sock_filter> compiled;
  std::span<const sock_filter> program;
  if (mode == SeccompMode::kTrap) {
    program = precompiled_filter(kind);
  } else {
    compiled = compile_filter(kind, mode);
    program = compiled;
  }
  if (program.empty())
    throw Error(std::string("seccomp: no ") + thread_kind_name(kind) + " filter");
  t_thread_kind = static_cast<int32_t>(kind);
  // A trap while SIGSYS is blocked makes the kernel reset the handler and kill the process
  // with a bare SIGSYS, unreported; threads that start with every signal blocked (the control
  // thread) would lose the report.
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  if (int e = pthread_sigmask(SIG_UNBLOCK, &sys, nullptr); e != 0) {
    errno = e;
    throw_errno("pthread_sigmask(SIGSYS)");
  }
  // As libseccomp's seccomp_load did: no_new_privs (set by the jail already; a filter needs
  // it without CAP_SYS_ADMIN), then this thread's filter alone (no TSYNC).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_NO_NEW_PRIVS)");
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(program.size());
  fprog.filter = const_cast<sock_filter*>(program.data());
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0)
    throw_errno(std::string("seccomp: loading the ") + thread_kind_name(kind) + " filter");
}

size_t allowed_syscall_count(ThreadKind kind) {
  const SeccompTable& table = seccomp_table(kind);
  std::set<int> numbers;
  for (const SyscallRule& rule : table.syscalls) numbers.insert(resolve_syscall(rule.name));
  if (!table.ioctls.empty()) numbers.insert(SCMP_SYS(ioctl));
  return numbers.size();
}

std::string syscall_name(int nr) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  if (name == nullptr) return "syscall " + std::to_string(nr);
  std::string out(name);
  std::free(name);
  return out;
}

void maybe_attempt_forbidden_call(ThreadKind kind) {
  const char* spec = std::getenv("WISP_TEST_FORBIDDEN_CALL");
  if (spec == nullptr) return;
  std::string s(spec), prefix = std::string(thread_kind_name(kind)) + ":";
  if (s.compare(0, prefix.size(), prefix) != 0) return;
  std::string call = s.substr(prefix.size());
  // Raw syscalls: what the filter sees is exactly the named call (glibc's wrappers may pick
  // another, e.g. open -> openat).
  if (call == "openat") {
    syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
  } else if (call == "execve") {
    const char* argv[] = {"/bin/true", nullptr};
    syscall(SYS_execve, "/bin/true", argv, nullptr);
  } else if (call == "socket") {
    syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  } else if (call == "ptrace") {
    syscall(SYS_ptrace, PTRACE_TRACEME, 0, nullptr, nullptr);
  }
}

}  // namespace wisp::jail
