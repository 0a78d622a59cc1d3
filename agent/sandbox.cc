#include "agent/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <kj/debug.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/container_root.h"
#include "agent/sandbox_terminal.h"
#include "agent/seccomp_policy.h"

namespace wisp::agent {
namespace {

// Stdout and stdin pipes are enlarged so a 16 MiB payload moves in few wake-ups.
constexpr int kPipeBytes = 1 << 20;

// Everything the child needs, prepared before clone3 so the child only makes syscalls.
struct ChildPlan {
  std::vector<char*> argv;
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  const SandboxSpec* spec;
  std::string tmp_options;
  std::string root;  // the container root's overlay directory, or ""
  std::string cwd;   // where the handler starts
  int stdin_r, stdout_w, stderr_w, status_w;
  int go = -1;      // held: the child's end of the go socket (fd 4 once in the child)
  int devpts = -1;  // terminal: the pty's devpts mount (fd 4 once in the child, until /dev)
};

// Child side: report and exit. Only async-signal-safe calls.
[[noreturn]] void fail(const char* step, int err, int status = kSandboxSetupFailed) {
  const char* msg = strerror(err);
  const char* parts[] = {"wisp-agent sandbox: ", step, ": ", msg, "\n"};
  for (const char* p : parts) (void)!write(STDERR_FILENO, p, strlen(p));
  _exit(status);
}

void check(int rc, const char* step) {
  if (rc < 0) fail(step, errno);
}

// Detaches a mount the agent has there (proc, sysfs, devtmpfs, the agent's /tmp and /run).
void detach(const char* path) {
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) fail(path, errno);
}

// mkdir -p, as root before the privileges go (the container root is writable). Errors other
// than EEXIST are left to the chdir that follows to report.
void make_dirs(const std::string& path) {
  char buf[4096];
  if (path.size() >= sizeof(buf)) return;
  memcpy(buf, path.c_str(), path.size() + 1);
  for (char* p = buf + 1; *p != '\0'; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    (void)mkdir(buf, 0755);
    *p = '/';
  }
  (void)mkdir(buf, 0755);
}

// A terminal's /dev entries: its devpts instance (only its own ptys), the ptmx of that
// instance, and /dev/tty (the process's controlling terminal, which ends up being the pty).
void set_up_dev_terminal(ChildPlan& plan) {
  check(mkdir("/dev/pts", 0755), "/dev/pts");
  int rc = attach_devpts(plan.devpts, "/dev/pts");
  if (rc < 0) fail("attach the terminal's devpts at /dev/pts", -rc);
  close(plan.devpts);
  plan.devpts = -1;
  check(symlink("pts/ptmx", "/dev/ptmx"), "/dev/ptmx");
  check(mknod("/dev/tty", S_IFCHR | 0666, makedev(5, 0)), "/dev/tty");
  check(chmod("/dev/tty", 0666), "/dev/tty");
}

void set_up_dev(ChildPlan& plan) {
  // A minimal /dev: no vsock, no console, no block devices.
  check(mount("tmpfs", "/dev", "tmpfs", kSandboxDevFlags, kSandboxDevOptions), "mount /dev");
  int dev = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  check(dev, "open /dev");
  const char* step = nullptr;
  if (int err = populate_sandbox_dev(dev, &step); err != 0) fail(step, err);
  close(dev);
  if (plan.devpts >= 0) set_up_dev_terminal(plan);
  check(mount("tmpfs", "/dev/shm", "tmpfs", kSandboxShmFlags, kSandboxShmOptions),
        "mount /dev/shm");
  check(mount(nullptr, "/dev", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
              nullptr),
        "remount /dev read-only");
}

// A /proc for the new pid namespace: the handler sees only its own tree.
void mount_proc() {
  check(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount /proc");
}

// The container root: its overlay replaces "/" in this mount namespace. pivot_root cannot
// leave an initramfs (rootfs), so this is switch_root's move and chroot; without
// CAP_SYS_CHROOT (dropped before the exec) there is no way back to the agent's root.
void set_up_container_root(ChildPlan& plan) {
  check(chdir(plan.root.c_str()), "chdir to the container root");
  check(mount(".", "/", nullptr, MS_MOVE, nullptr), "move the container root to /");
  check(chroot("."), "chroot into the container root");
  check(chdir("/"), "chdir /");
  for (const char* dir : {"/proc", "/dev"}) {
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) fail(dir, errno);
  }
  mount_proc();
  // A root-owned handler keeps the kernel's tunables for the whole guest out of reach.
  check(mount("/proc/sys", "/proc/sys", nullptr, MS_BIND, nullptr), "bind /proc/sys");
  check(mount(nullptr, "/proc/sys", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr),
        "remount /proc/sys read-only");
  set_up_dev(plan);
  make_dirs(plan.cwd);
}

void set_up_filesystem(ChildPlan& plan) {
  check(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mounts private");
  if (!plan.root.empty()) return set_up_container_root(plan);
  for (const char* path : {"/sys", "/run", "/tmp", "/dev", "/proc"}) detach(path);
  mount_proc();
  set_up_dev(plan);
  // The scratch dir: a private tmpfs, gone with the mount namespace.
  check(mount("tmpfs", "/tmp", "tmpfs", kSandboxTmpFlags, plan.tmp_options.c_str()), "mount /tmp");
  check(mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr),
        "remount / read-only");
}

void bring_up_loopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ifreq ifr{};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  (void)ioctl(fd, SIOCSIFFLAGS, &ifr);
  close(fd);
}

void set_limits(const SandboxSpec& spec) {
  rlimit nofile{spec.open_files, spec.open_files};
  check(setrlimit(RLIMIT_NOFILE, &nofile), "RLIMIT_NOFILE");
  rlimit core{0, 0};
  check(setrlimit(RLIMIT_CORE, &core), "RLIMIT_CORE");
  if (spec.cpu_time_ms > 0) {
    rlim_t secs = (spec.cpu_time_ms + 999) / 1000;
    rlimit cpu{secs, secs + 1};  // SIGXCPU at the soft limit, SIGKILL a second later
    check(setrlimit(RLIMIT_CPU, &cpu), "RLIMIT_CPU");
  }
}

void drop_privileges(const SandboxSpec& spec) {
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (cap_drop_bound(cap) < 0 && errno != EINVAL) fail("drop bounding set", errno);
  }
  check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
  check(setgroups(spec.groups.size(), spec.groups.data()), "setgroups");
  check(setresgid(spec.gid, spec.gid, spec.gid), "setresgid");
  check(setresuid(spec.uid, spec.uid, spec.uid), "setresuid");
  // setresuid away from 0 cleared the sets; for uid 0 (a container's root) clearing them here
  // is what removes them (the bounding set went above, so nothing comes back on exec).
  cap_t none = cap_init();
  if (none == nullptr) fail("cap_init", errno);
  check(cap_set_proc(none), "cap_set_proc");
  cap_free(none);
  check(cap_reset_ambient(), "cap_reset_ambient");
}

// Held: tells the agent it is ready and waits for the go. A closed socket (the agent dropped
// the spare) or anything but the go ends it quietly: it never ran the handler.
void wait_for_go(int go) {
  char c = kHeldReady;
  if (write(go, &c, 1) != 1) _exit(kSandboxSetupFailed);
  ssize_t n;
  do {
    n = read(go, &c, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || c != kHeldGo) _exit(kSandboxSetupFailed);
  close(go);
}

[[noreturn]] void exec_handler(const ChildPlan& plan) {
  close(plan.status_w);
  if (plan.spec->terminal) {
    // Its own session (the namespace init leads the one it is in; a handler that is the init
    // leads it already), with the pty, its fds 0-2, as the controlling terminal.
    if (!plan.spec->handler_is_init) check(setsid(), "setsid (terminal)");
    check(ioctl(STDIN_FILENO, TIOCSCTTY, 0), "make the pty the controlling terminal");
  }
  set_limits(*plan.spec);
  drop_privileges(*plan.spec);
  int rc = load_handler_seccomp_filter();
  if (rc < 0) fail("seccomp", -rc);
  if (plan.go >= 0) wait_for_go(plan.go);
  environ = const_cast<char**>(plan.envp.data());
  execvp(plan.argv[0], plan.argv.data());
  fail(plan.argv[0], errno, kSandboxExecFailed);
}

// The pid namespace's init: reaps everything, reports the handler's wait status on the status
// pipe and exits, which makes the kernel kill whatever is left in the namespace. Being a
// separate process keeps the handler an ordinary process (signals it sends itself work) and
// the namespace free of zombies. It runs unprivileged and filtered like the handler, holds no
// stdio, and as namespace init ignores every signal the handler can send it.
[[noreturn]] void run_namespace_init(const ChildPlan& plan, pid_t handler) {
  prctl(PR_SET_NAME, "wisp-ns-init", 0, 0, 0);
  if (plan.go >= 0) close(plan.go);
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; ++fd) dup2(null_fd, fd);
  close(null_fd);
  drop_privileges(*plan.spec);
  int rc = load_handler_seccomp_filter();
  if (rc < 0) _exit(kSandboxSetupFailed);
  for (;;) {
    int status;
    pid_t pid = wait(&status);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) _exit(kSandboxSetupFailed);  // ECHILD: cannot happen before the handler
    if (pid == handler) {
      (void)!write(plan.status_w, &status, sizeof(status));
      _exit(0);
    }
  }
}

[[noreturn]] void run_child(ChildPlan& plan) {
  // The agent blocks the signals KJ captures and ignores SIGPIPE; the handler gets defaults.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);

  if (dup2(plan.stdin_r, STDIN_FILENO) < 0 || dup2(plan.stdout_w, STDOUT_FILENO) < 0 ||
      dup2(plan.stderr_w, STDERR_FILENO) < 0) {
    _exit(kSandboxSetupFailed);
  }
  // Out of the way of fds 3 and 4 before they are filled (the agent's own low fds make this
  // a no-op in practice).
  if (plan.go >= 0 && plan.go < 5) check(plan.go = fcntl(plan.go, F_DUPFD, 5), "move go fd");
  if (plan.devpts >= 0 && plan.devpts < 5) {
    check(plan.devpts = fcntl(plan.devpts, F_DUPFD, 5), "move devpts fd");
  }
  int status_fd = plan.status_w;
  check(dup2(status_fd, 3), "dup2 status");
  plan.status_w = 3;
  if (plan.go >= 0) {
    check(dup2(plan.go, 4), "dup2 go");
    plan.go = 4;
    check(fcntl(4, F_SETFD, FD_CLOEXEC), "go fd");
  }
  if (plan.devpts >= 0) {  // never with go (spawn_sandboxed refuses held terminals)
    check(dup2(plan.devpts, 4), "dup2 devpts");
    plan.devpts = 4;
    check(fcntl(4, F_SETFD, FD_CLOEXEC), "devpts fd");
  }
  bool fd4 = plan.go >= 0 || plan.devpts >= 0;
  check(static_cast<int>(syscall(SYS_close_range, fd4 ? 5 : 4, ~0U, 0)), "close_range");
  check(fcntl(3, F_SETFD, FD_CLOEXEC), "status fd");
  check(setsid(), "setsid");

  set_up_filesystem(plan);
  check(sethostname("sandbox", 7), "sethostname");
  if (!plan.spec->network) bring_up_loopback();
  check(chdir(plan.cwd.c_str()), "chdir to the working directory (cwd)");

  if (plan.spec->handler_is_init) exec_handler(plan);
  pid_t handler = fork();
  if (handler < 0) fail("fork handler", errno);
  if (handler == 0) exec_handler(plan);
  run_namespace_init(plan, handler);
}

bool has_env(const std::vector<std::string>& env, const char* key) {
  size_t n = strlen(key);
  for (const auto& e : env) {
    if (e.size() > n && e.compare(0, n, key) == 0 && e[n] == '=') return true;
  }
  return false;
}

struct Pipe {
  kj::AutoCloseFd read_end, write_end;
};

Pipe make_pipe() {
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
  return Pipe{kj::AutoCloseFd(fds[0]), kj::AutoCloseFd(fds[1])};
}

}  // namespace

std::string sandbox_tmp_options(uint64_t scratch_bytes) {
  return "mode=1777,size=" + std::to_string(scratch_bytes);
}

int populate_sandbox_dev(int dev_fd, const char** step) {
  struct Node {
    const char *name, *path;  // path: for the message
    unsigned major, minor;
  };
  static constexpr Node kNodes[] = {
      {"null", "/dev/null", 1, 3},       {"zero", "/dev/zero", 1, 5},
      {"full", "/dev/full", 1, 7},       {"random", "/dev/random", 1, 8},
      {"urandom", "/dev/urandom", 1, 9},
  };
  for (const Node& n : kNodes) {
    *step = n.path;
    if (mknodat(dev_fd, n.name, S_IFCHR | 0666, makedev(n.major, n.minor)) < 0) return errno;
    if (fchmodat(dev_fd, n.name, 0666, 0) < 0) return errno;  // mknod honours the umask
  }
  static constexpr const char* kLinks[][3] = {
      {"/proc/self/fd", "fd", "/dev/fd"},
      {"/proc/self/fd/0", "stdin", "/dev/stdin"},
      {"/proc/self/fd/1", "stdout", "/dev/stdout"},
      {"/proc/self/fd/2", "stderr", "/dev/stderr"},
  };
  for (const auto& l : kLinks) {
    *step = l[2];
    if (symlinkat(l[0], dev_fd, l[1]) < 0) return errno;
  }
  *step = "/dev/shm";
  if (mkdirat(dev_fd, "shm", 01777) < 0) return errno;  // a mount point only
  return 0;
}

SandboxedProcess spawn_sandboxed(const SandboxSpec& spec, int cgroup_fd, bool held) {
  KJ_REQUIRE(!spec.argv.empty(), "handler argv is empty");
  KJ_REQUIRE(!(held && spec.terminal), "a held (spare) sandbox has no terminal");
  ChildPlan plan;
  plan.spec = &spec;
  for (const auto& a : spec.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  plan.env_storage = spec.env;
  if (!has_env(spec.env, "PATH")) plan.env_storage.push_back("PATH=/bin:/usr/bin:/sbin:/usr/sbin");
  if (!has_env(spec.env, "HOME"))
    plan.env_storage.push_back(spec.root_device.empty() ? "HOME=/tmp" : "HOME=/");
  for (auto& e : plan.env_storage) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  plan.tmp_options = sandbox_tmp_options(spec.scratch_bytes);
  if (!spec.root_device.empty()) plan.root = container_root(spec.root_device);
  plan.cwd = !spec.cwd.empty() ? spec.cwd : plan.root.empty() ? "/tmp" : "/";

  Pipe in = make_pipe(), out = make_pipe(), err = make_pipe(), status = make_pipe();
  (void)fcntl(in.write_end.get(), F_SETPIPE_SZ, kPipeBytes);
  (void)fcntl(out.write_end.get(), F_SETPIPE_SZ, kPipeBytes);
  plan.stdin_r = in.read_end.get();
  plan.stdout_w = out.write_end.get();
  plan.stderr_w = err.write_end.get();
  plan.status_w = status.write_end.get();
  TerminalPair terminal;
  if (spec.terminal) {
    // The sandbox's failures before the exec go to the terminal too (the caller's output).
    terminal = open_terminal(spec.uid, spec.gid, spec.console_width, spec.console_height);
    plan.stdin_r = plan.stdout_w = plan.stderr_w = terminal.pty.get();
    plan.devpts = terminal.devpts.get();
  }
  kj::AutoCloseFd go_agent, go_child;
  if (held) {
    int fds[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    go_agent = kj::AutoCloseFd(fds[0]);
    go_child = kj::AutoCloseFd(fds[1]);
    plan.go = go_child.get();
  }

  uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_INTO_CGROUP;
  if (!spec.network) flags |= CLONE_NEWNET;
  clone_args args{};
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cgroup_fd);
  long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) KJ_FAIL_SYSCALL("clone3 (handler sandbox)", errno);
  if (pid == 0) run_child(plan);

  SandboxedProcess p;
  p.pid = static_cast<pid_t>(pid);
  p.stdin_fd = kj::mv(in.write_end);
  p.stdout_fd = kj::mv(out.read_end);
  p.stderr_fd = kj::mv(err.read_end);
  p.status_fd = kj::mv(status.read_end);
  p.go_fd = kj::mv(go_agent);
  if (spec.terminal) {
    // The agent keeps no pty: the master reads end of file (EIO) once the sandbox is gone.
    p.stdin_fd = kj::AutoCloseFd(fcntl(terminal.master.get(), F_DUPFD_CLOEXEC, 0));
    p.stdout_fd = kj::AutoCloseFd(fcntl(terminal.master.get(), F_DUPFD_CLOEXEC, 0));
    KJ_REQUIRE(p.stdin_fd.get() >= 0 && p.stdout_fd.get() >= 0, "dup the terminal's master");
    p.stderr_fd = nullptr;
    p.terminal_fd = kj::mv(terminal.master);
  }
  return p;
}

}  // namespace wisp::agent
