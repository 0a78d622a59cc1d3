#include "manager/template_store_sandbox.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "base/error.h"
#include "base/split.h"

namespace wisp::manager {
namespace {

// As serve's ExecSandbox check and the agent take them (manager/service/exec_sandbox.cc).
constexpr size_t kMaxCwdBytes = 4095;
constexpr size_t kMaxAdditionalGids = 64;
constexpr uint64_t kMinMemoryBytes = 1ull << 20;
constexpr uint32_t kMinOpenFiles = 3;

bool is_virtio_disk(const std::string& d) {
  if (d.size() < 8 || d.size() > 9 || d.compare(0, 7, "/dev/vd") != 0) return false;
  for (size_t i = 7; i < d.size(); ++i)
    if (d[i] < 'a' || d[i] > 'z') return false;
  return true;
}

uint64_t number(const std::string& key, const std::string& v, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] < '0' || v[0] > '9' || *end || errno || x > max)
    throw Error(key + ": expected a number up to " + std::to_string(max) + ", got \"" +
                v.substr(0, 64) + "\"");
  return x;
}

}  // namespace

bool template_sandbox_of(const client::Handler& h, TemplateSandbox* out) {
  TemplateSandbox s;
  s.root_device = h.root_device;
  s.cwd = h.cwd;
  s.uid = h.uid;
  s.gid = h.gid;
  s.additional_gids = h.additional_gids;
  s.limits = h.limits;
  const client::Handler d;
  bool is_default = s.root_device.empty() && s.cwd.empty() && s.uid == d.uid && s.gid == d.gid &&
                    s.additional_gids.empty() && s.limits.memory_bytes == d.limits.memory_bytes &&
                    s.limits.pids == d.limits.pids &&
                    s.limits.cpu_time_ms == d.limits.cpu_time_ms &&
                    s.limits.open_files == d.limits.open_files;
  if (is_default) return false;
  *out = std::move(s);
  return true;
}

void apply_template_sandbox(const TemplateSandbox& s, client::Handler* h) {
  h->root_device = s.root_device;
  h->cwd = s.cwd;
  h->uid = s.uid;
  h->gid = s.gid;
  h->additional_gids = s.additional_gids;
  h->limits.memory_bytes = s.limits.memory_bytes;
  h->limits.pids = s.limits.pids;
  h->limits.cpu_time_ms = s.limits.cpu_time_ms;
  h->limits.open_files = s.limits.open_files;
}

void format_template_sandbox(
    const TemplateSandbox& s,
    const std::function<void(const std::string&, const std::string&)>& line) {
  line("sandbox_root", s.root_device);
  if (!s.cwd.empty()) line("sandbox_cwd", s.cwd);
  std::string ids = std::to_string(s.uid) + " " + std::to_string(s.gid);
  for (size_t i = 0; i < s.additional_gids.size(); ++i)
    ids += (i == 0 ? " " : ",") + std::to_string(s.additional_gids[i]);
  line("sandbox_ids", ids);
  line("sandbox_limits",
       std::to_string(s.limits.memory_bytes) + " " + std::to_string(s.limits.pids) + " " +
           std::to_string(s.limits.cpu_time_ms) + " " + std::to_string(s.limits.open_files));
}

bool parse_template_sandbox_line(const std::string& key, const std::string& v,
                                 TemplateSandbox* out) {
  if (key == "sandbox_root") {
    if (!v.empty() && !is_virtio_disk(v))
      throw Error(key + ": \"" + v.substr(0, 64) + "\": expected \"\" or /dev/vdX");
    out->root_device = v;
  } else if (key == "sandbox_cwd") {
    if (v.empty() || v[0] != '/' || v.size() > kMaxCwdBytes || v.find('\0') != std::string::npos)
      throw Error(key + ": expected an absolute path of at most " + std::to_string(kMaxCwdBytes) +
                  " bytes");
    out->cwd = v;
  } else if (key == "sandbox_ids") {
    std::vector<std::string> f = split(v, ' ');
    if (f.size() < 2 || f.size() > 3) throw Error(key + ": expected \"UID GID [G1,G2,...]\"");
    out->uid = static_cast<uint32_t>(number(key + " uid", f[0], UINT32_MAX));
    out->gid = static_cast<uint32_t>(number(key + " gid", f[1], UINT32_MAX));
    out->additional_gids.clear();
    if (f.size() == 3) {
      std::vector<std::string> groups = split(f[2], ',');
      if (groups.size() > kMaxAdditionalGids)
        throw Error(key + ": " + std::to_string(groups.size()) + " groups; at most " +
                    std::to_string(kMaxAdditionalGids));
      for (const std::string& g : groups)
        out->additional_gids.push_back(
            static_cast<uint32_t>(number(key + " group", g, UINT32_MAX)));
    }
  } else if (key == "sandbox_limits") {
    std::vector<std::string> f = split(v, ' ');
    if (f.size() != 4) throw Error(key + ": expected \"MEMORY_BYTES PIDS CPU_MS OPEN_FILES\"");
    out->limits.memory_bytes = number(key + " memory", f[0], UINT64_MAX);
    out->limits.pids = static_cast<uint32_t>(number(key + " pids", f[1], UINT32_MAX));
    out->limits.cpu_time_ms = number(key + " cpu", f[2], UINT64_MAX);
    out->limits.open_files = static_cast<uint32_t>(number(key + " open files", f[3], UINT32_MAX));
    if (out->limits.memory_bytes < kMinMemoryBytes) throw Error(key + ": memory under 1 MiB");
    if (out->limits.pids == 0) throw Error(key + ": pids 0");
    if (out->limits.open_files < kMinOpenFiles)
      throw Error(key + ": open files under 3 (stdin, stdout, stderr)");
  } else {
    return false;
  }
  return true;
}

}  // namespace wisp::manager
