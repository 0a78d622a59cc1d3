#include "manager/vmm_control.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"

namespace wisp::manager {
namespace {

// The value of "key" in a flat JSON object (our own replies): where it starts, or npos.
size_t json_value(const std::string& json, const std::string& key) {
  size_t p = json.find("\"" + key + "\":");
  return p == std::string::npos ? p : p + key.size() + 3;
}

double json_number(const std::string& json, const std::string& key) {
  size_t p = json_value(json, key);
  return p == std::string::npos ? 0 : std::strtod(json.c_str() + p, nullptr);
}

uint64_t json_count(const std::string& json, const std::string& key) {
  size_t p = json_value(json, key);
  return p == std::string::npos ? 0 : std::strtoull(json.c_str() + p, nullptr, 10);
}

std::string json_text(const std::string& json, const std::string& key) {
  size_t p = json_value(json, key);
  std::string out;
  if (p == std::string::npos || p >= json.size() || json[p] != '"') return out;
  for (size_t i = p + 1; i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\' && i + 1 < json.size()) ++i;
    out += json[i];
  }
  return out;
}

}  // namespace

VmmControl VmmControl::connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    throw Error("control socket " + path + ": path too long or empty");
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw_errno("control socket " + path + " (is the VM running with --control-socket?)");
  return VmmControl(path, std::move(fd));
}

std::string VmmControl::request(const std::string& command) {
  std::string out = command + "\n";
  if (::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
    throw_errno("control socket " + path_ + ": send");
  size_t nl;
  while ((nl = pending_.find('\n')) == std::string::npos) {
    char buf[512];
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error("control socket " + path_ + ": closed without a reply");
    pending_.append(buf, static_cast<size_t>(n));
  }
  std::string reply = pending_.substr(0, nl);
  pending_.erase(0, nl + 1);
  if (reply == "ok") return "";
  if (reply.rfind("ok ", 0) == 0) return reply.substr(3);
  throw Error(reply.rfind("error ", 0) == 0 ? reply.substr(6) : "unexpected reply: " + reply);
}

void VmmControl::ping() { request("ping"); }
void VmmControl::pause() { request("pause"); }
void VmmControl::resume() { request("resume"); }

SnapshotInfo VmmControl::snapshot(const std::string& dir, bool diff) {
  std::string json = request(std::string("snapshot ") + (diff ? "--diff " : "") + dir);
  SnapshotInfo s;
  s.id = json_text(json, "id");
  s.pause_ms = json_number(json, "pause_ms");
  s.state_ms = json_number(json, "state_ms");
  s.memory_ms = json_number(json, "memory_ms");
  s.total_ms = json_number(json, "total_ms");
  s.memory_file_bytes = json_count(json, "memory_file_bytes");
  s.memory_disk_bytes = json_count(json, "memory_disk_bytes");
  s.pages_written = json_count(json, "pages_written");
  s.pages_in_layer = json_count(json, "pages_in_layer");
  s.diff = json.find("\"diff\":true") != std::string::npos;
  return s;
}

VmmStats VmmControl::stats() {
  std::string json = request("stats");
  return {json_count(json, "resident_pages"), json_count(json, "written_pages"),
          json_count(json, "pages")};
}

}  // namespace wisp::manager
