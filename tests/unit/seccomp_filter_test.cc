// The VMM's per-thread seccomp filters: each kind's table builds and loads, allows its calls
// and kills the process, with the report filled, on a forbidden one. The filtered part runs in
// a forked child that makes only raw calls (ASan's own calls must not meet the filter).
#include "vmm/jail/seccomp_filter.h"

#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/exit_codes.h"
#include "vmm/jail/seccomp_compile.h"
#include "vmm/jail/seccomp_programs.h"
#include "vmm/jail/seccomp_table.h"
#include "vmm/kvm/kvm_abi.h"

namespace wisp::jail {
namespace {

struct ChildOutcome {
  int status = 0;
  std::string wrote;  // what the child's allowed write() put in the pipe
};

// Forks a child that installs `kind`'s filter, writes "ok" to a pipe (write is in every
// table), runs `attempt` (raw calls only) and exits 0 if it is still alive.
ChildOutcome run_filtered_child(ThreadKind kind, const std::function<void()>& attempt) {
  int p[2];
  EXPECT_EQ(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    try {
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
      install_thread_filter(kind, SeccompMode::kTrap);
    } catch (...) {
      _exit(100);
    }
    syscall(SYS_write, p[1], "ok", 2);
    if (attempt) attempt();
    syscall(SYS_exit_group, 0);  // raw: ASan's _exit makes calls of its own (sigaltstack)
  }
  close(p[1]);
  ChildOutcome out;
  EXPECT_EQ(waitpid(pid, &out.status, 0), pid);
  char buf[8];
  ssize_t n = read(p[0], buf, sizeof(buf));
  if (n > 0) out.wrote.assign(buf, static_cast<size_t>(n));
  close(p[0]);
  return out;
}

// The same, attempting maybe_attempt_forbidden_call's CALL (none: nothing). The switch is
// set before the fork: the child changes nothing after its filter is on.
ChildOutcome run_filtered_child(ThreadKind kind, const char* forbidden) {
  std::string spec = std::string(thread_kind_name(kind)) + ":" + (forbidden ? forbidden : "");
  if (forbidden) setenv("WISP_TEST_FORBIDDEN_CALL", spec.c_str(), 1);
  ChildOutcome out = run_filtered_child(kind, [kind] { maybe_attempt_forbidden_call(kind); });
  unsetenv("WISP_TEST_FORBIDDEN_CALL");
  return out;
}

bool killed_by_filter(const ChildOutcome& c) {
  return WIFEXITED(c.status) && WEXITSTATUS(c.status) == kExitSeccompViolation;
}

class SeccompFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (report_ == nullptr) {
      report_ = map_violation_report();
      install_sigsys_handler(report_);
    }
    report_->syscall_nr.store(-1);
    report_->thread_kind.store(-1);
  }
  static ViolationReport* report_;  // one shared page for the whole test program
};
ViolationReport* SeccompFilterTest::report_ = nullptr;

TEST_F(SeccompFilterTest, AllowedCallsRunAndTheThreadExitsCleanly) {
  for (ThreadKind kind : kThreadKinds) {
    SCOPED_TRACE(thread_kind_name(kind));
    ChildOutcome c = run_filtered_child(kind, static_cast<const char*>(nullptr));
    ASSERT_TRUE(WIFEXITED(c.status)) << "status " << c.status;
    EXPECT_EQ(WEXITSTATUS(c.status), 0);
    EXPECT_EQ(c.wrote, "ok");
    EXPECT_EQ(report_->syscall_nr.load(), -1);
  }
}

TEST_F(SeccompFilterTest, ForbiddenCallsKillWithTheReportFilled) {
  const std::map<std::string, int> calls = {{"openat", SYS_openat},
                                            {"execve", SYS_execve},
                                            {"socket", SYS_socket},
                                            {"ptrace", SYS_ptrace}};
  for (ThreadKind kind : kThreadKinds) {
    for (const auto& [call, nr] : calls) {
      SCOPED_TRACE(std::string(thread_kind_name(kind)) + ":" + call);
      report_->syscall_nr.store(-1);
      report_->thread_kind.store(-1);
      ChildOutcome c = run_filtered_child(kind, call.c_str());
      ASSERT_TRUE(WIFEXITED(c.status)) << "status " << c.status;
      EXPECT_EQ(WEXITSTATUS(c.status), kExitSeccompViolation);
      EXPECT_EQ(c.wrote, "ok");
      EXPECT_EQ(report_->syscall_nr.load(), nr);
      EXPECT_EQ(report_->thread_kind.load(), static_cast<int32_t>(kind));
      EXPECT_EQ(syscall_name(report_->syscall_nr.load()), call);
    }
  }
}

TEST_F(SeccompFilterTest, AnotherKindsSwitchDoesNothing) {
  setenv("WISP_TEST_FORBIDDEN_CALL", "vcpu:openat", 1);
  ChildOutcome c = run_filtered_child(ThreadKind::kControl,
                                      [] { maybe_attempt_forbidden_call(ThreadKind::kControl); });
  unsetenv("WISP_TEST_FORBIDDEN_CALL");
  ASSERT_TRUE(WIFEXITED(c.status));
  EXPECT_EQ(WEXITSTATUS(c.status), 0);
}

TEST_F(SeccompFilterTest, ABlockedSigsysStillReports) {
  // The control thread starts with every signal blocked.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  ChildOutcome c = run_filtered_child(ThreadKind::kControl, "execve");
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(WIFEXITED(c.status)) << "status " << c.status;
  EXPECT_EQ(WEXITSTATUS(c.status), kExitSeccompViolation);
  EXPECT_EQ(report_->syscall_nr.load(), SYS_execve);
}

TEST_F(SeccompFilterTest, ArgumentChecks) {
  // The loop may make an AF_UNIX stream socket (a guest connecting to a host port), no other.
  auto sock = [](int domain, int type) {
    return [domain, type] { syscall(SYS_socket, domain, type, 0); };
  };
  EXPECT_FALSE(killed_by_filter(
      run_filtered_child(ThreadKind::kLoop, sock(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC))));
  EXPECT_TRUE(killed_by_filter(run_filtered_child(ThreadKind::kLoop, sock(AF_UNIX, SOCK_DGRAM))));
  EXPECT_TRUE(killed_by_filter(run_filtered_child(ThreadKind::kLoop, sock(AF_NETLINK, SOCK_RAW))));
  // No thread maps or makes anything executable.
  for (ThreadKind kind : kThreadKinds) {
    SCOPED_TRACE(thread_kind_name(kind));
    EXPECT_FALSE(killed_by_filter(run_filtered_child(kind, [] {
      syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    })));
    EXPECT_TRUE(killed_by_filter(run_filtered_child(kind, [] {
      syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    })));
    EXPECT_EQ(report_->syscall_nr.load(), SYS_mmap);
  }
  // ioctls by request number: a vCPU thread has KVM_RUN only.
  EXPECT_FALSE(killed_by_filter(
      run_filtered_child(ThreadKind::kVcpu, [] { syscall(SYS_ioctl, -1, KVM_RUN, 0); })));
  EXPECT_TRUE(killed_by_filter(
      run_filtered_child(ThreadKind::kVcpu, [] { syscall(SYS_ioctl, -1, KVM_GET_REGS, 0); })));
  EXPECT_TRUE(killed_by_filter(
      run_filtered_child(ThreadKind::kControl, [] { syscall(SYS_ioctl, 0, TIOCSTI, "x"); })));
}

TEST(SeccompTables, NamesAndCounts) {
  EXPECT_STREQ(thread_kind_name(ThreadKind::kLoop), "loop");
  EXPECT_STREQ(thread_kind_name(ThreadKind::kVcpu), "vcpu");
  EXPECT_STREQ(thread_kind_name(ThreadKind::kControl), "control");
  EXPECT_EQ(syscall_name(SYS_openat), "openat");
  EXPECT_EQ(syscall_name(SYS_ioctl), "ioctl");
  EXPECT_EQ(syscall_name(99999), "syscall 99999");
  for (ThreadKind kind : kThreadKinds) {
    SCOPED_TRACE(thread_kind_name(kind));
    const SeccompTable& t = seccomp_table(kind);
    std::set<std::string> names;
    for (const SyscallRule& r : t.syscalls) {
      names.insert(r.name);
      EXPECT_NE(std::string(r.name), "ioctl") << "ioctls are allowed by request number only";
      EXPECT_NE(std::string(r.why), "");
    }
    if (!t.ioctls.empty()) names.insert("ioctl");
    EXPECT_EQ(allowed_syscall_count(kind), names.size());
    EXPECT_TRUE(names.count("exit_group")) << "the SIGSYS handler needs it";
    for (const char* never : {"openat", "open", "execve", "execveat", "ptrace", "clone", "clone3",
                              "fork", "vfork", "mount", "bpf", "process_vm_writev"})
      EXPECT_FALSE(names.count(never)) << never;
  }
  EXPECT_LT(allowed_syscall_count(ThreadKind::kVcpu), allowed_syscall_count(ThreadKind::kLoop));
}

// Each KVM ioctl number written out in a table equals the kernel header's (wisp's own for the
// ones whose C++ struct size differs, vmm/kvm/kvm_abi.h).
TEST(SeccompTables, KvmIoctlNumbersMatchTheHeaders) {
  const std::map<std::string, unsigned long> expected = {
      {"KVM_RUN", KVM_RUN},
      {"KVM_KVMCLOCK_CTRL", KVM_KVMCLOCK_CTRL},
      {"KVM_GET_MP_STATE", KVM_GET_MP_STATE},
      {"KVM_GET_REGS", KVM_GET_REGS},
      {"KVM_GET_SREGS", KVM_GET_SREGS},
      {"KVM_GET_FPU", KVM_GET_FPU},
      {"KVM_GET_XSAVE", kGetXsave},
      {"KVM_GET_XSAVE2", kGetXsave2},
      {"KVM_GET_XCRS", KVM_GET_XCRS},
      {"KVM_GET_DEBUGREGS", KVM_GET_DEBUGREGS},
      {"KVM_GET_LAPIC", KVM_GET_LAPIC},
      {"KVM_GET_TSC_KHZ", KVM_GET_TSC_KHZ},
      {"KVM_GET_MSRS", kGetMsrs},
      {"KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS},
      {"KVM_GET_IRQCHIP", KVM_GET_IRQCHIP},
      {"KVM_GET_PIT2", KVM_GET_PIT2},
      {"KVM_GET_CLOCK", KVM_GET_CLOCK},
      {"KVM_SET_CLOCK", KVM_SET_CLOCK},
      {"TCSETS", TCSETS},
      {"TCGETS", TCGETS},
      {"FIONBIO", FIONBIO},
      {"FIOCLEX", FIOCLEX},
      {"TUNSETOFFLOAD", TUNSETOFFLOAD},
  };
  size_t checked = 0;
  for (ThreadKind kind : kThreadKinds) {
    for (const IoctlRule& r : seccomp_table(kind).ioctls) {
      auto it = expected.find(r.name);
      ASSERT_NE(it, expected.end()) << r.name << ": add its header value to this test";
      EXPECT_EQ(r.request, static_cast<uint32_t>(it->second)) << r.name;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u);
}

// The programs the build compiled (wisp-seccomp-gen) are what libseccomp compiles from the
// tables now, instruction for instruction: the threads load exactly the reviewed allow-lists.
TEST(SeccompPrograms, ThePrecompiledProgramsAreTheTablesCompiled) {
  for (ThreadKind kind : kThreadKinds) {
    SCOPED_TRACE(thread_kind_name(kind));
    std::span<const sock_filter> built = precompiled_filter(kind);
    std::vector<sock_filter> now = compile_filter(kind, SeccompMode::kTrap);
    ASSERT_EQ(built.size(), now.size());
    EXPECT_GT(built.size(), 3u);  // the architecture check and at least one rule
    for (size_t i = 0; i < now.size(); ++i) {
      EXPECT_EQ(built[i].code, now[i].code) << "instruction " << i;
      EXPECT_EQ(built[i].jt, now[i].jt) << "instruction " << i;
      EXPECT_EQ(built[i].jf, now[i].jf) << "instruction " << i;
      EXPECT_EQ(built[i].k, now[i].k) << "instruction " << i;
    }
  }
  // The log mode's program logs and allows every call: no rule, no trap.
  std::vector<sock_filter> log = compile_filter(ThreadKind::kVcpu, SeccompMode::kLogAll);
  ASSERT_FALSE(log.empty());
  EXPECT_LT(log.size(), compile_filter(ThreadKind::kVcpu, SeccompMode::kTrap).size());
}

}  // namespace
}  // namespace wisp::jail
