// cgroup v2 helpers: one cgroup per handler process tree under /sys/fs/cgroup/wisp/<name>.
#pragma once

#include <kj/io.h>

#include <cstdint>
#include <string>

namespace wisp::agent {

inline constexpr char kCgroupRoot[] = "/sys/fs/cgroup";
inline constexpr char kCgroupParent[] = "/sys/fs/cgroup/wisp";

// Enables the memory, pids and cpu controllers for /sys/fs/cgroup/wisp's children and creates
// that parent. Called once by PID 1 after mounting cgroup2. Throws kj::Exception.
void set_up_cgroup_parent();

struct CgroupLimits {
  uint64_t memory_bytes;  // memory.max (and memory.swap.max = 0)
  uint32_t pids;          // pids.max
};

struct CgroupStats {
  uint64_t peak_memory_bytes = 0;  // memory.peak (Linux >= 5.19), 0 if absent
  uint64_t cpu_time_ns = 0;        // cpu.stat usage_usec * 1000
  bool oom_killed = false;         // memory.events oom_kill > 0
  bool pids_limited = false;       // pids.events max > 0 (a fork failed on pids.max)
};

// Owns one cgroup directory: created with its limits, killed and removed on destruction.
class Cgroup {
 public:
  Cgroup(std::string name, const CgroupLimits& limits);
  ~Cgroup();
  KJ_DISALLOW_COPY(Cgroup);

  // An O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP).
  int dir_fd() const { return dir_.get(); }
  // SIGKILLs every process in the cgroup (cgroup.kill).
  void kill_all();
  // Sends `sig` to every process in the cgroup (cgroup.procs; a process forked meanwhile may
  // be missed). The handler's namespace init ignores all but SIGKILL.
  void signal_all(int sig);
  CgroupStats read_stats() const;
  // Rewrites memory.max and pids.max (a held sandbox given the limits of the call it runs).
  void set_limits(const CgroupLimits& limits);

 private:
  std::string read_file(const char* file) const;
  void write_file(const char* file, const std::string& value) const;

  std::string path_;
  kj::AutoCloseFd dir_;
};

}  // namespace wisp::agent
