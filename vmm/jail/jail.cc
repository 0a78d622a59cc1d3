#include "vmm/jail/jail.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "base/clock.h"
#include "base/error.h"
#include "base/exit_codes.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "vmm/jail/cgroup.h"
#include "vmm/jail/jail_root.h"

namespace wisp::jail {
namespace {

constexpr const char* kDefaultRootBase = "/run/wisp/jail";

// Logs (at debug level: wisp-vmm -vv) how long each step of the jail took.
class StepClock {
 public:
  void step(const char* what) {
    uint64_t now = now_ns();
    LOG_DEBUG("jail: %s %.3f ms", what, static_cast<double>(now - last_) / 1e6);
    last_ = now;
  }

 private:
  uint64_t last_ = now_ns();
};

std::string vm_name(uid_t uid) { return "vm-" + std::to_string(uid); }

// A wisp cgroup is stale when the uid it is named after is leased by nobody: its supervisor
// is gone (a VMM dies with its supervisor).
bool is_stale_vm(const std::string& name) {
  if (name.rfind("vm-", 0) != 0) return false;
  uint32_t uid = 0;
  auto [end, ec] = std::from_chars(name.data() + 3, name.data() + name.size(), uid);
  return ec == std::errc() && end == name.data() + name.size() && uid_is_free(uid);
}

void make_dir(const std::string& path, mode_t mode) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) throw_errno("jail: mkdir " + dir);
    if (slash == std::string::npos) return;
  }
}

// The VM's uid connects to the sockets it is given (guest connections to host listeners) and
// creates none after the drop; its gid gets the directory unless it is a shared, sticky one
// (/tmp), where the host's listeners must be connectable by the VM themselves.
void grant_socket_dirs(const std::vector<Exposed>& exposed, gid_t gid) {
  for (const Exposed& e : exposed) {
    if (!e.directory || !e.writable) continue;
    struct stat st;
    if (::stat(e.path.c_str(), &st) != 0) throw_errno("jail: socket directory " + e.path);
    if (st.st_mode & S_ISVTX) continue;
    if (::chown(e.path.c_str(), static_cast<uid_t>(-1), gid) != 0 ||
        ::chmod(e.path.c_str(), (st.st_mode & 07777) | S_IRWXG) != 0)
      throw_errno("jail: giving the VM's group the socket directory " + e.path);
  }
}

// Closes every fd but 0, 1, 2 and `keep`.
void close_inherited_fds(std::vector<int> keep) {
  keep.insert(keep.end(), {0, 1, 2});
  std::sort(keep.begin(), keep.end());
  unsigned next = 0;
  for (int fd : keep) {
    if (fd < 0) continue;
    if (static_cast<unsigned>(fd) > next) ::syscall(SYS_close_range, next, fd - 1, 0);
    next = std::max(next, static_cast<unsigned>(fd) + 1);
  }
  ::syscall(SYS_close_range, next, ~0u, 0);
}

// The pid namespace's init receives from its parent only signals it has a handler for; the
// VMM reads its stop signals from a signalfd (blocked), so each gets a handler that does
// nothing: they stay pending for the signalfd.
void accept_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &sa, nullptr);
}

struct ChildSetup {
  const JailConfig& config;
  int cgroup_ready_fd;  // kept open: Confinement::drop_privileges() waits on it
  std::string root;
  int parent_alive_fd;  // read end of a pipe the supervisor holds open
  sigset_t mask;        // the signal mask to run with
};

// The jail's child: into the namespaces, fds closed, the root entered. (The supervisor puts it
// in its cgroup meanwhile.)
void enter_jail(const ChildSetup& s) {
  StepClock clock;
  // Dies with the supervisor; the pipe catches a supervisor that died before the prctl. (The
  // uid change clears this: drop_privileges() sets it again, and checks the pipe again.)
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) throw_errno("jail: PR_SET_PDEATHSIG");
  if (pipe_writer_gone(s.parent_alive_fd)) _exit(kExitError);
  ::sigprocmask(SIG_SETMASK, &s.mask, nullptr);
  accept_stop_signals();
  int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (s.config.new_netns) flags |= CLONE_NEWNET;
  if (::unshare(flags) != 0) throw_errno("jail: unshare (mount, ipc, uts, net namespaces)");
  clock.step("child: namespaces");
  static const char kHostname[] = "wisp-vm";
  if (::sethostname(kHostname, sizeof(kHostname) - 1) != 0) throw_errno("jail: sethostname");
  std::vector<int> keep = s.config.keep_fds;
  keep.push_back(s.cgroup_ready_fd);
  keep.push_back(s.parent_alive_fd);
  close_inherited_fds(keep);
  enter_root(s.root, s.config.exposed);
  clock.step("child: root entered");
}

[[noreturn]] void child_main(const ChildSetup& setup, Confinement& confinement,
                             const std::function<int(Confinement&)>& vmm) {
  int rc = kExitError;
  try {
    enter_jail(setup);
    rc = vmm(confinement);
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(rc);
}

// Why the VMM ended, told the way wisp tells it: its own exit status, or what killed it.
int explain(int status, const ViolationReport& report, const VmCgroup* cgroup,
            uint64_t memory_max) {
  int32_t nr = report.syscall_nr.load();
  if (nr >= 0) {
    int32_t kind = report.thread_kind.load();
    std::fprintf(stderr, "wisp: VMM killed by seccomp: %s (on its %s thread)\n",
                 syscall_name(nr).c_str(),
                 kind >= 0 ? thread_kind_name(static_cast<ThreadKind>(kind)) : "unknown");
    return kExitSeccompViolation;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (cgroup) {
    MemoryEvents events = cgroup->memory_events();
    if (events.oom_kill > 0) {
      std::fprintf(stderr,
                   "wisp: VMM killed by its cgroup's memory limit: memory.max is %llu MiB "
                   "(memory.events: oom_kill %llu)\n",
                   static_cast<unsigned long long>(memory_max >> 20),
                   static_cast<unsigned long long>(events.oom_kill));
      return kExitVmmOutOfMemory;
    }
  }
  if (sig == SIGSYS) {
    std::fputs("wisp: VMM killed by seccomp (SIGSYS)\n", stderr);
    return kExitSeccompViolation;
  }
  std::fprintf(stderr, "wisp: VMM killed by signal %d (%s)\n", sig, strsignal(sig));
  return kExitSignalBase + sig;
}

// Waits for the VMM, passing on the stop signals this process receives (blocked in `stop`),
// and killing it when `parent_fd` (if >= 0) hangs up: who started this process has died.
int wait_forwarding(pid_t pid, const sigset_t& stop, int parent_fd) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  UniqueFd sigfd(::signalfd(-1, &stop, SFD_CLOEXEC));
  if (!pidfd || !sigfd) throw_errno("jail: watching the VMM");
  for (;;) {
    pollfd p[3] = {{pidfd.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}, {parent_fd, POLLIN, 0}};
    if (::poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("jail: poll");
    }
    if (p[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (::read(sigfd.get(), &info, sizeof(info)) == sizeof(info))
        ::syscall(SYS_pidfd_send_signal, pidfd.get(), static_cast<int>(info.ssi_signo), nullptr, 0);
    }
    if (p[2].revents) {
      std::fputs("wisp: the process that started this VMM is gone: stopping the VM\n", stderr);
      ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      parent_fd = -1;  // poll() skips it from now on
    }
    if (p[0].revents & POLLIN) break;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw_errno("jail: waitpid");
  return status;
}

// Throws when `parent_fd` (if >= 0) hung up already: who started this VMM died before it could
// watch.
void check_parent(int parent_fd) {
  if (parent_fd >= 0 && pipe_writer_gone(parent_fd))
    throw Error("the process that started this VMM is gone (--parent-fd hung up)");
}

CgroupLimits limits_for(const JailConfig& c, uint64_t memory_max) {
  CgroupLimits l;
  l.memory_max = memory_max;
  l.pids_max = c.vcpus + c.io_threads + kVmmExtraThreads;
  if (c.cpu_quota_percent) l.cpu_quota_us = uint64_t{*c.cpu_quota_percent} * l.cpu_period_us / 100;
  return l;
}

}  // namespace

bool pipe_writer_gone(int read_fd) {
  pollfd p{read_fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;  // nothing is ever written: readable means end of file
}

int run_jailed(const JailConfig& config, const std::function<int(Confinement&)>& vmm) {
  if (!config.enabled) {
    // Unjailed (debugging only), the VMM is this process and nothing watches the lifeline: it
    // stops (SIGTERM, read by its signalfd) when the thread that started it ends.
    if (config.parent_fd >= 0 && ::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0)
      throw_errno("PR_SET_PDEATHSIG");
    check_parent(config.parent_fd);
    Confinement none;
    return vmm(none);
  }
  uint64_t t0 = now_ns();
  if (::geteuid() != 0)
    throw Error(
        "the VMM's jail needs root (namespaces, pivot_root, a cgroup and a uid of its own): run "
        "wisp as root, or pass --no-jail (debugging only)");
  check_parent(config.parent_fd);
  StepClock clock;
  UidLease lease = lease_uid(config.uids);
  clock.step("uid leased");
  uint64_t memory_max = config.memory_max.value_or(config.guest_mem_bytes + kVmmMemoryAllowance);
  VmCgroup cgroup;
  std::string dir =
      config.dir.empty() ? std::string(kDefaultRootBase) + "/" + vm_name(lease.uid()) : config.dir;
  std::string root = config.dir.empty() ? dir : dir + "/root";
  make_dir(root, 0700);
  grant_socket_dirs(config.exposed, lease.gid());

  Confinement confinement;
  confinement.active_ = true;
  confinement.uid_ = lease.uid();
  confinement.guest_mem_bytes_ = config.guest_mem_bytes;
  confinement.threads_ = config.vcpus + config.io_threads;
  confinement.max_file_bytes_ = config.max_file_bytes;
  confinement.seccomp_ = config.seccomp;
  confinement.report_ = map_violation_report();

  sigset_t stop, old;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  ::sigprocmask(SIG_BLOCK, &stop, &old);
  int alive[2], ready[2];
  if (::pipe2(alive, O_CLOEXEC) != 0 || ::pipe2(ready, O_CLOEXEC) != 0) throw_errno("jail: pipe");
  UniqueFd alive_read(alive[0]), alive_write(alive[1]);
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  // The next child is the first process of a new pid namespace (this process stays in its own).
  if (::unshare(CLONE_NEWPID) != 0) throw_errno("jail: unshare (pid namespace)");
  std::fflush(stdout);
  std::fflush(stderr);
  clock.step("root directory and socket directories ready");
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("jail: fork");
  if (pid == 0) {
    alive_write.reset();
    ready_write.reset();
    confinement.cgroup_ready_fd_ = config.cgroup ? ready_read.get() : -1;
    confinement.supervisor_fd_ = alive_read.get();
    ChildSetup setup{config, confinement.cgroup_ready_fd_, root, alive_read.get(), old};
    child_main(setup, confinement, [&vmm, t0](Confinement& c) {
      c.jail_ns_ = now_ns() - t0;  // the supervisor's part and the child's, up to here
      return vmm(c);
    });
  }
  alive_read.reset();
  ready_read.reset();
  ::signal(SIGPIPE, SIG_IGN);
  int status = 0;
  bool exited = false;  // the VMM ended (a bad input) before it could be moved
  if (config.cgroup) {
    // While the child sets itself up: moving a process between cgroups waits for an RCU grace
    // period, which the child's work now overlaps. It waits for this before its privileges go
    // (and so before any guest code runs).
    try {
      remove_stale_cgroups(is_stale_vm);
      clock.step("stale cgroups swept");
      cgroup = VmCgroup::create(vm_name(lease.uid()), limits_for(config, memory_max));
      cgroup.add(pid);
      clock.step("cgroup created and the VMM moved into it");
    } catch (const Error&) {
      exited = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!exited) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        ::rmdir(root.c_str());
        ::sigprocmask(SIG_SETMASK, &old, nullptr);
        throw;
      }
    }
    // A VMM that exited meanwhile has no reader: the write fails (EPIPE, SIGPIPE is ignored
    // here) and its exit status says why.
    if (!exited) [[maybe_unused]]
      ssize_t w = ::write(ready_write.get(), "c", 1);
    ready_write.reset();
  }
  if (!exited) status = wait_forwarding(pid, stop, config.parent_fd);
  int rc = explain(status, *confinement.report_, config.cgroup ? &cgroup : nullptr, memory_max);
  cgroup.remove();
  ::rmdir(root.c_str());
  // The stop signals stay blocked: the VM has ended and so is this process, and one that came
  // after the last was forwarded (a second Ctrl-C) would kill it now, its status no longer rc.
  return rc;
}

}  // namespace wisp::jail
