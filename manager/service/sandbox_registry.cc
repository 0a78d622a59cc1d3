#include "manager/service/sandbox_registry.h"

#include <sys/random.h>
#include <time.h>

#include <span>

#include "base/hex.h"

namespace wisp::service {

int64_t unix_ms_now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

SandboxRegistry::SandboxRegistry(kj::Timer& timer) : timer_(timer) {
  sweeper_ = sweep().eagerlyEvaluate(nullptr);
}

SandboxRegistry::~SandboxRegistry() { clear(); }

std::string SandboxRegistry::new_id() {
  uint8_t bytes[12];
  if (getentropy(bytes, sizeof(bytes)) != 0) throw_api_error("getentropy failed");
  return "sb-" + hex_bytes(std::span<const uint8_t>(bytes, sizeof(bytes)));
}

void SandboxRegistry::check_timeout(uint64_t timeout_ms) {
  if (timeout_ms == 0 || timeout_ms > kMaxTimeoutMs)
    throw_api_error("bad-request: timeoutMs " + std::to_string(timeout_ms) + ": expected 1 to " +
                    std::to_string(kMaxTimeoutMs) + " (7 days)");
}

std::string SandboxRegistry::add(kj::Own<SandboxEntry> entry, uint64_t timeout_ms) {
  check_timeout(timeout_ms);
  entry->id = new_id();
  entry->created_unix_ms = unix_ms_now();
  entry->expires_unix_ms = entry->created_unix_ms + static_cast<int64_t>(timeout_ms);
  std::string id = entry->id;
  entries_[id] = kj::mv(entry);
  return id;
}

kj::Own<SandboxEntry> SandboxRegistry::get(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end())
    throw_api_error("not-found: sandbox " + id.substr(0, 64) +
                    " (it was killed, its time ran out, or it never existed)");
  return kj::addRef(*it->second);
}

void SandboxRegistry::set_timeout(const std::string& id, uint64_t timeout_ms) {
  check_timeout(timeout_ms);
  get(id)->expires_unix_ms = unix_ms_now() + static_cast<int64_t>(timeout_ms);
}

bool SandboxRegistry::kill(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  kj::Own<SandboxEntry> e = kj::mv(it->second);
  entries_.erase(it);
  e->state = "dead";
  // Calls in flight hold references: stop the guest now; their guard fails them, and the
  // last reference destroys the VM (Clone's destructor hands it to the reaper).
  if (e->clone) e->clone->terminate();
  return true;
}

void SandboxRegistry::add_owner(const std::string& id) {
  auto it = entries_.find(id);
  if (it != entries_.end()) ++it->second->owners;
}

void SandboxRegistry::drop_owner(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  SandboxEntry& e = *it->second;
  if (e.owners > 0) --e.owners;
  if (e.owners == 0 && !e.detached) kill(id);
}

std::vector<kj::Own<SandboxEntry>> SandboxRegistry::list() {
  std::vector<kj::Own<SandboxEntry>> out;
  for (auto& [id, e] : entries_) out.push_back(kj::addRef(*e));
  return out;
}

void SandboxRegistry::clear() {
  while (!entries_.empty()) kill(entries_.begin()->first);
}

kj::Promise<void> SandboxRegistry::sweep() {
  return timer_.afterDelay(static_cast<int64_t>(kSweepMs) * kj::MILLISECONDS).then([this] {
    int64_t now = unix_ms_now();
    std::vector<std::string> expired;
    for (auto& [id, e] : entries_)
      if (e->expires_unix_ms <= now) expired.push_back(id);
    for (const std::string& id : expired) kill(id);
    return sweep();
  });
}

}  // namespace wisp::service
