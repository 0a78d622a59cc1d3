#include "vmm/jail/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>

#include "base/error.h"
#include "base/exit_codes.h"
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

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterCtx = std::unique_ptr<void, FilterDeleter>;

int resolve(const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    throw Error(std::string("seccomp table: no syscall named \"") + name +
                "\" on this architecture");
  return nr;
}

void add_rule(scmp_filter_ctx ctx, const SyscallRule& rule) {
  scmp_arg_cmp cmps[2];
  for (size_t i = 0; i < rule.check_count; ++i)
    cmps[i] = SCMP_CMP(rule.checks[i].index, SCMP_CMP_MASKED_EQ, rule.checks[i].mask,
                       rule.checks[i].value);
  int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, resolve(rule.name),
                                  static_cast<unsigned>(rule.check_count), cmps);
  if (rc < 0)
    throw Error(std::string("seccomp table: rule for ") + rule.name + ": " + std::strerror(-rc));
}

void add_ioctl(scmp_filter_ctx ctx, const IoctlRule& rule) {
  // The kernel reads the request as an unsigned int: compare the low 32 bits only.
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, rule.request));
  if (rc < 0)
    throw Error(std::string("seccomp table: ioctl ") + rule.name + ": " + std::strerror(-rc));
}

FilterCtx build_filter(ThreadKind kind, SeccompMode mode) {
  // kLogAll allows every call and logs it (audit type 1326), with no rules at all: a rule's
  // ALLOW would hide the call from the log that checks the tables.
  uint32_t fallback = mode == SeccompMode::kLogAll ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
  FilterCtx ctx(seccomp_init(fallback));
  if (!ctx) throw Error("seccomp_init failed");
  if (mode == SeccompMode::kLogAll) return ctx;
  const SeccompTable& table = seccomp_table(kind);
  for (const SyscallRule& rule : table.syscalls) add_rule(ctx.get(), rule);
  for (const IoctlRule& rule : table.ioctls) add_ioctl(ctx.get(), rule);
  return ctx;
}

}  // namespace

const char* thread_kind_name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kLoop:
      return "loop";
    case ThreadKind::kVcpu:
      return "vcpu";
    case ThreadKind::kControl:
      return "control";
    case ThreadKind::kBlock:
      return "block";
  }
  return "unknown";
}

const SeccompTable& seccomp_table(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kLoop:
      return loop_seccomp_table();
    case ThreadKind::kVcpu:
      return vcpu_seccomp_table();
    case ThreadKind::kControl:
      return control_seccomp_table();
    case ThreadKind::kBlock:
      return block_seccomp_table();
  }
  throw Error("seccomp: unknown thread kind");
}

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
  FilterCtx ctx = build_filter(kind, mode);
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
  int rc = seccomp_load(ctx.get());
  if (rc < 0)
    throw Error(std::string("seccomp: loading the ") + thread_kind_name(kind) +
                " filter failed: " + std::strerror(-rc));
}

size_t allowed_syscall_count(ThreadKind kind) {
  const SeccompTable& table = seccomp_table(kind);
  std::set<int> numbers;
  for (const SyscallRule& rule : table.syscalls) numbers.insert(resolve(rule.name));
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
