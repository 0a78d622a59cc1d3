#include "manager/service/exec_sandbox.h"

#include "base/error.h"

namespace wisp::service {

namespace {

constexpr size_t kMaxCwdBytes = 4095;
constexpr size_t kMaxAdditionalGids = 64;  // as the agent takes (agent_server.cc)
constexpr uint64_t kMinMemoryBytes = 1ull << 20;
constexpr uint32_t kMinOpenFiles = 3;

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw Error("bad-request: sandbox." + field + ": " + why);
}

bool is_virtio_disk(const std::string& d) {
  if (d.size() < 8 || d.size() > 9 || d.compare(0, 7, "/dev/vd") != 0) return false;
  for (size_t i = 7; i < d.size(); ++i)
    if (d[i] < 'a' || d[i] > 'z') return false;
  return true;
}

}  // namespace

void apply_exec_sandbox(api::serve::ExecSandbox::Reader in, client::Handler* out) {
  std::string root(in.getRootDevice().cStr(), in.getRootDevice().size());
  if (!root.empty() && !is_virtio_disk(root))
    bad("rootDevice", "'" + root.substr(0, 64) + "': expected \"\" or /dev/vdX");
  std::string cwd(in.getCwd().cStr(), in.getCwd().size());
  if (!cwd.empty() &&
      (cwd[0] != '/' || cwd.size() > kMaxCwdBytes || cwd.find('\0') != std::string::npos))
    bad("cwd", "expected an absolute path of at most " + std::to_string(kMaxCwdBytes) + " bytes");
  if (in.getAdditionalGids().size() > kMaxAdditionalGids)
    bad("additionalGids", std::to_string(in.getAdditionalGids().size()) + " groups; at most " +
                              std::to_string(kMaxAdditionalGids));
  out->root_device = root;
  out->cwd = cwd;
  out->uid = in.getUid();
  out->gid = in.getGid();
  out->additional_gids.clear();
  for (uint32_t g : in.getAdditionalGids()) out->additional_gids.push_back(g);
  if (in.getMemoryBytes() != 0) {
    if (in.getMemoryBytes() < kMinMemoryBytes) bad("memoryBytes", "under 1 MiB");
    out->limits.memory_bytes = in.getMemoryBytes();
  }
  if (in.getPids() != 0) out->limits.pids = in.getPids();
  out->limits.cpu_time_ms = in.getCpuTimeMs();
  if (in.getOpenFiles() != 0) {
    if (in.getOpenFiles() < kMinOpenFiles) bad("openFiles", "under 3 (stdin, stdout, stderr)");
    out->limits.open_files = in.getOpenFiles();
  }
}

}  // namespace wisp::service
