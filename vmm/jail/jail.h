// The jail every wisp-vmm enters before guest code runs. wisp-vmm calls run_jailed() with the
// VMM's work; it becomes a small supervisor that
//   - leases a uid of the VM's own (uid_pool.h);
//   - forks the VMM into new pid, mount, ipc, uts and net namespaces; the child closes every
//     inherited fd it was not told to keep and pivot_roots into a per-VM root (jail_root.h)
//     holding only what the VM needs, while the supervisor removes stale wisp cgroups, creates
//     the VM's (cgroup.h) and moves the child into it;
//   - waits for it, forwarding SIGINT/SIGTERM/SIGHUP, and says why it died when it did not exit
//     by itself: `VMM killed by seccomp: <call>`, or the cgroup's memory limit (memory.events);
//   - kills it when the process that started this one dies (JailConfig::parent_fd); the VMM
//     dies with the supervisor (its parent-death signal).
// Inside, the VMM opens its files and builds the machine as root of its namespaces, then
// Confinement::drop_privileges() (before any thread exists) and enter_thread() on each thread
// as it starts (its seccomp filter). Root is required.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vmm/jail/seccomp_filter.h"
#include "vmm/jail/uid_pool.h"

namespace wisp::jail {

// A host file or directory the jailed VMM sees inside its root, at the same path.
struct Exposed {
  std::string path;
  bool writable = false;   // else mounted read-only
  bool directory = false;  // a directory (a socket directory), else a file or device
  bool device = false;     // a device node (/dev/kvm): the mount keeps device access
};

// The VMM's memory above guest RAM in memory.max: its own heap and stacks, KVM's per-vCPU and
// page-table memory, vsock buffers, page cache while a snapshot is written.
constexpr uint64_t kVmmMemoryAllowance = 128ull << 20;
// pids.max and RLIMIT_NPROC above the vCPU threads: the main thread, the control thread, spare.
constexpr uint64_t kVmmExtraThreads = 4;
// RLIMIT_NOFILE: the vsock device's 1024 connections, the vCPUs, event fds and sockets (at
// least VsockMuxer::kFilesNeeded; a unit test compares them).
constexpr uint64_t kVmmMaxFiles = 2048;

struct JailConfig {
  bool enabled = true;  // false (--no-jail): run the VMM in this process, unconfined
  bool cgroup = true;   // false (--no-cgroup): jailed, but in no cgroup
  UidRange uids = default_uid_range();
  std::optional<uint32_t> cpu_quota_percent;  // cpu.max; 100 = one CPU
  std::optional<uint64_t> memory_max;         // test switch: memory.max instead of the rule
  // The VM's runtime directory: its root is made at DIR/root. "": /run/wisp/jail/vm-UID,
  // removed afterwards.
  std::string dir;
  SeccompMode seccomp = SeccompMode::kTrap;

  uint64_t guest_mem_bytes = 0;
  uint32_t vcpus = 1;
  // Device threads beside the vCPUs' (one block I/O thread per virtio-blk drive): counted in
  // pids.max and RLIMIT_NPROC with them, or a VM with several drives could not start them.
  uint32_t io_threads = 0;
  uint64_t max_file_bytes = 0;   // RLIMIT_FSIZE: the largest file the VMM may write
  std::vector<Exposed> exposed;  // everything the VMM opens after pivot_root
  std::vector<int> keep_fds;     // inherited fds the VMM still needs, besides 0, 1 and 2
  // The read end of a pipe whose write end only the process that started this one holds
  // (--parent-fd), or -1. When it closes (that process died, even by SIGKILL) the supervisor
  // kills the VMM and cleans up: a VM never outlives its manager.
  int parent_fd = -1;
  // false: this process already is in the VM's own network namespace (wisp-vmm --netns-fd,
  // which the manager made and wired): the VMM stays in it instead of unsharing an empty one.
  bool new_netns = true;
};

// What the VMM calls inside the jail. A default-constructed one (no jail) does nothing.
class Confinement {
 public:
  Confinement() = default;

  // After the VMM opened everything and before it starts any thread: waits until the
  // supervisor has put it in its cgroup (guest memory it touched before stays charged to the
  // parent's: the kernel and initrd it loaded, a restore's few pages), then gid/uid of the lease,
  // no supplementary groups, every capability dropped (effective, permitted, inheritable,
  // bounding, ambient), no_new_privs, RLIMIT_NOFILE/NPROC/FSIZE/CORE, SIGSYS reporting; then,
  // since a uid change clears it, the parent-death signal (SIGKILL when the supervisor dies),
  // and a check that the supervisor is still there (getppid() is 0 in the VMM's pid
  // namespace: a pipe tells instead). Throws Error.
  void drop_privileges();
  // First thing on each thread (the main thread before it runs the event loop): installs the
  // thread kind's seccomp filter. Throws Error.
  void enter_thread(ThreadKind kind);

  bool active() const { return active_; }
  // Milliseconds the jail cost this VM: the supervisor's set-up, the namespaces and root,
  // dropping privileges and the main thread's filter.
  double jail_ms() const { return static_cast<double>(jail_ns_) / 1e6; }

 private:
  friend int run_jailed(const JailConfig&, const std::function<int(Confinement&)>&);

  bool active_ = false;
  uid_t uid_ = 0;
  uint64_t guest_mem_bytes_ = 0, threads_ = 0, max_file_bytes_ = 0;  // threads_: vCPUs + I/O
  SeccompMode seccomp_ = SeccompMode::kTrap;
  ViolationReport* report_ = nullptr;
  int cgroup_ready_fd_ = -1;  // the supervisor writes a byte once this process is in its cgroup
  int supervisor_fd_ = -1;    // a pipe's read end: hangs up when the supervisor is gone
  uint64_t jail_ns_ = 0;
};

// True when nobody holds the write end of the pipe `read_fd` reads from any more (its holder
// died; nothing is ever written on it): how a process learns that its parent is gone where
// getppid() cannot tell (0 in a new pid namespace) or a parent-death signal was not yet set.
bool pipe_writer_gone(int read_fd);

// Runs `vmm` in the jail `config` describes and returns the exit status for this process: the
// VMM's own, or kExitSeccompViolation / kExitVmmOutOfMemory / 128+N with a message on stderr
// when it was killed. With config.enabled false runs `vmm` here with an inactive Confinement.
// Throws Error when the jail cannot be set up (not root, no cgroup v2, no free uid).
int run_jailed(const JailConfig& config, const std::function<int(Confinement&)>& vmm);

}  // namespace wisp::jail
