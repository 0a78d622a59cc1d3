// What the container's process needs of its sandbox beyond args and env, from the bundle's
// config.json (OCI runtime spec): its working directory and user, and the resource limits the
// agent can enforce (api/agent.capnp Limits):
//   linux.resources.memory.limit  -> memoryBytes (cgroup memory.max)
//   linux.resources.pids.limit    -> pids (cgroup pids.max)
//   process.rlimits RLIMIT_NOFILE -> openFiles (its hard limit)
//   process.rlimits RLIMIT_CPU    -> cpuTimeMs (its hard limit, seconds)
// 0 leaves the agent's default. The CPU share (linux.resources.cpu) has no handler limit: the
// VM's vCPUs bound it. Untrusted like the rest of config.json: types and ranges are checked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wisp::shim {

struct OciSandbox {
  std::string cwd = "/";
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> additional_gids;
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint32_t open_files = 0;
  uint64_t cpu_time_ms = 0;
};

// Parses config.json's text. Throws wisp::Error naming the field.
OciSandbox parse_oci_sandbox(const std::string& config_json);

}  // namespace wisp::shim
