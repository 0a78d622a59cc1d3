// Starts a handler process inside its sandbox. The child (`pid`, the init of the handler's
// pid namespace, which forks the handler and reaps; or the handler itself: handler_is_init)
// is created by clone3 directly in its cgroup and in new pid/mount/ipc/uts(/net) namespaces;
// before exec it remounts the root read-only, gets a fresh /proc, a minimal /dev and a private
// tmpfs /tmp (its scratch dir and working directory) and keeps the agent's shared /scratch
// (scratch_files.h; writable by the handler user: the only other writable place), sets
// rlimits, drops to an unprivileged uid/gid with every capability gone (bounding and ambient
// too), sets no_new_privs and loads the seccomp filter (seccomp_policy.h).
//
// A failure inside the child before exec is written to the handler's stderr as
// "wisp-agent sandbox: <step>: <error>" and ends it with status 126 (127: exec failed).
//
// Held (spare_sandbox.h): the handler process does all of the above, then writes kHeldReady
// on its end of the go socket and blocks reading it; it execs once it reads kHeldGo, and ends
// quietly (status 126) if the socket closes first. Nothing before that read draws randomness
// (the ELF loader's AT_RANDOM and ASLR come with the execve), so a held sandbox in a snapshot
// gives each clone fresh values as long as the go is sent after the clone's reseed.
#pragma once

#include <kj/io.h>
#include <sys/mount.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wisp::agent {

inline constexpr uid_t kHandlerUid = 65534;  // nobody
inline constexpr gid_t kHandlerGid = 65534;  // nogroup
inline constexpr int kSandboxSetupFailed = 126;
inline constexpr int kSandboxExecFailed = 127;

struct SandboxSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH inside the sandbox
  std::vector<std::string> env;   // KEY=value; PATH and HOME get defaults when missing
  bool network = false;           // true: share the guest's network namespace
  uint64_t cpu_time_ms = 0;       // RLIMIT_CPU (rounded up to seconds); 0 = none
  uint32_t open_files = 256;      // RLIMIT_NOFILE
  uint64_t scratch_bytes = 0;     // size of the private /tmp tmpfs
  // A container's root (container_root.h): "" keeps the guest's root (remounted read-only,
  // with the private /tmp); else the device whose overlay becomes the sandbox's root, writable,
  // with a fresh /proc (its /proc/sys read-only) and the minimal /dev, and no /tmp or /scratch
  // of the agent's.
  std::string root_device;
  std::string cwd;  // "": /tmp, or "/" with root_device; created if missing with root_device
  uid_t uid = kHandlerUid;
  gid_t gid = kHandlerGid;
  std::vector<gid_t> groups;  // supplementary groups
  // The handler itself is the pid namespace's init: no wisp-ns-init process (see below). For
  // workers (worker.h): a CRIU image of the tree must map no file outside the sandbox's mount
  // namespace, and the ns-init, a fork of the agent, maps the agent's binary from the agent's
  // root mount (criu dump: "Can't lookup mount"); exec'ing some other init instead would tie
  // the image to that binary. The agent then gets the handler's wait status straight from its
  // exit (the status pipe stays empty). What a handler loses as init: its zombies are its own
  // to reap, and signals it sends itself without a handler installed are ignored.
  bool handler_is_init = false;
  // On a pseudo-terminal (sandbox_terminal.h): the handler's stdin, stdout and stderr are the
  // pty, its controlling terminal (setsid + TIOCSCTTY just before the exec), and the sandbox's
  // /dev has the pty's devpts instance at /dev/pts, /dev/ptmx and /dev/tty. Not with `held`.
  bool terminal = false;
  uint16_t console_width = 0;  // the initial size; 0: the kernel's default
  uint16_t console_height = 0;
};

struct SandboxedProcess {
  pid_t pid = -1;
  kj::AutoCloseFd stdin_fd;   // write end of the handler's stdin
  kj::AutoCloseFd stdout_fd;  // read end of its stdout
  kj::AutoCloseFd stderr_fd;  // read end of its stderr
  // Read end of the status pipe: the namespace init writes the handler's wait status (an int,
  // 4 bytes) there when it ends. Empty when the sandbox failed before the handler started;
  // then the exit status of `pid` itself tells (kSandboxSetupFailed).
  kj::AutoCloseFd status_fd;
  // Held only: the agent's end of the go socket (AF_UNIX stream): reads kHeldReady once the
  // handler waits, writes kHeldGo to let it exec.
  kj::AutoCloseFd go_fd;
  // Terminal only: the pty's master. stdin_fd and stdout_fd are duplicates of it (writes
  // type into the terminal, reads give its output); stderr_fd is empty.
  kj::AutoCloseFd terminal_fd;
};

inline constexpr char kHeldReady = 'R';
inline constexpr char kHeldGo = 'G';

// The sandbox's own tmpfs mounts: a minimal /dev (read-only once filled), a /dev/shm in it and
// the private /tmp. A CRIU restore (criu_mounts.h) builds the same ones instead of carrying them
// in the image.
inline constexpr char kSandboxDevOptions[] = "mode=755,size=64k";
inline constexpr unsigned long kSandboxDevFlags = MS_NOSUID | MS_NOEXEC;
inline constexpr char kSandboxShmOptions[] = "mode=1777,size=16m";
inline constexpr unsigned long kSandboxShmFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
inline constexpr unsigned long kSandboxTmpFlags = MS_NOSUID | MS_NODEV;
std::string sandbox_tmp_options(uint64_t scratch_bytes);

// Fills a fresh /dev tmpfs open as `dev_fd`: the device nodes, the /proc/self/fd links and an
// empty shm directory. Async-signal-safe (the sandbox's child calls it). Returns 0, or an errno
// with *step naming what failed.
int populate_sandbox_dev(int dev_fd, const char** step);

// Spawns the process in the cgroup open as `cgroup_fd`; `held`: stopped before its execve
// (see above). Throws kj::Exception when the agent itself cannot create it (pipes, clone3, the
// container root's mounts).
SandboxedProcess spawn_sandboxed(const SandboxSpec& spec, int cgroup_fd, bool held = false);

}  // namespace wisp::agent
