// One cgroup v2 per VM, under a parent "wisp" cgroup: memory.max, pids.max and cpu.max for the
// VMM process and every thread it starts; and the memory events that say why a VMM died.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "base/unique_fd.h"

namespace wisp::jail {

struct CgroupLimits {
  uint64_t memory_max = 0;  // bytes (guest RAM + the VMM's allowance); 0: no limit
  uint64_t pids_max = 0;    // threads and processes; 0: no limit
  // cpu.max: `quota_us` of CPU time per `period_us` (from --cpu-quota); none: no limit.
  std::optional<uint64_t> cpu_quota_us;
  uint64_t cpu_period_us = 100000;
};

// The memory.events counters a dead VMM is judged by.
struct MemoryEvents {
  uint64_t max = 0, oom = 0, oom_kill = 0;
};
// memory.events' text ("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n..."); other names are
// ignored. Throws Error on a line that is not "NAME COUNT".
MemoryEvents parse_memory_events(const std::string& text);

// The cgroup2 mount the jail uses: $WISP_CGROUP_ROOT (tests) or /sys/fs/cgroup.
std::string cgroup2_root();

class VmCgroup {
 public:
  // Creates ROOT/wisp/NAME (ROOT/wisp first, with the memory, pids and cpu controllers enabled
  // down to it) and writes `limits`. Throws Error saying what the host lacks and what to do:
  // cgroup v2 not mounted at ROOT, a controller not available or not delegated, a file not
  // writable. A leftover ROOT/wisp/NAME (a crashed VMM) is removed first.
  static VmCgroup create(const std::string& name, const CgroupLimits& limits);
  VmCgroup() = default;
  ~VmCgroup();  // remove()
  VmCgroup(VmCgroup&&) noexcept;
  VmCgroup& operator=(VmCgroup&&) noexcept;

  const std::string& path() const { return path_; }
  // cgroup.procs, opened for writing: a process joins by writing "0" to it (the jail's child
  // does so before it allocates anything).
  int procs_fd() const { return procs_.get(); }
  MemoryEvents memory_events() const;
  // Moves process `pid` (and its threads) into this cgroup. Throws Error.
  void add(pid_t pid);
  // Kills what is left in it (cgroup.kill) and removes the directory. Idempotent; logs, never
  // throws.
  void remove();

 private:
  std::string path_;
  UniqueFd procs_;
};

// Removes every ROOT/wisp/* cgroup for which `is_stale(name)` is true (its owner is gone), after
// killing what is left in it. Never throws; returns how many were removed.
size_t remove_stale_cgroups(const std::function<bool(const std::string& name)>& is_stale);

}  // namespace wisp::jail
