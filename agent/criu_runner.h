// Runs the guest image's criu (/usr/sbin/criu) as a child of the agent (PID 1, every
// capability: CRIU needs CAP_SYS_ADMIN and ptrace, which no handler sandbox has). Its stdout
// and stderr go to a file that is read back when it ends.
#pragma once

#include <kj/async.h>

#include <string>
#include <utility>
#include <vector>

#include "agent/invocation.h"

namespace wisp::agent {

inline constexpr char kCriuBinary[] = "/usr/sbin/criu";
// Where the agent keeps CRIU's image directories and logs (on the guest's /run tmpfs).
inline constexpr char kCriuWorkDir[] = "/run/wisp-criu";

struct CriuRun {
  int wait_status = 0;  // as from waitpid
  std::string output;   // stdout and stderr, at most 64 KiB (the tail when longer)
  uint64_t duration_ns = 0;
  bool ok() const;  // exited with status 0
  // "criu ARGS[0] exited with status N: <last lines of output>" for an error message.
  std::string describe(const std::string& what) const;
};

struct CriuSpawn {
  std::vector<std::string> args;  // after "criu"
  // (agent fd, fd number in criu): descriptors criu inherits (its --inherit-fd).
  std::vector<std::pair<int, int>> fds;
  int cgroup_fd = -1;       // >= 0: criu starts in that cgroup (what it restores stays there)
  bool new_net_ns = false;  // criu starts in a fresh network namespace (loopback up)
  int net_ns_fd = -1;       // with new_net_ns: that namespace's fd number in criu
  int join_net_ns_fd = -1;  // >= 0: criu starts in that network namespace (an agent fd)
};

// Starts criu; throws kj::Exception when it cannot be spawned (no criu in this image).
kj::Promise<CriuRun> run_criu(AgentServices& services, const CriuSpawn& spawn);

// Creates kCriuWorkDir/<name> afresh (removing an old one) and returns its path.
std::string fresh_criu_dir(const std::string& name);
// Removes a directory made by fresh_criu_dir and everything in it (no subdirectories).
void remove_criu_dir(const std::string& path);

}  // namespace wisp::agent
