// serve's live sandboxes, by id: each a clone kept between calls, with a time to live, ended
// when its time runs out, when it is killed, or when the last owning capability drops (unless
// detached). A call on a sandbox holds a reference to its entry, so a kill mid-call stops the
// VM at once (the call fails "vm-failed") and the VM is destroyed when the call lets go.
//
// Threads: serve's loop thread.
#pragma once

#include <kj/async.h>
#include <kj/refcount.h>
#include <kj/timer.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "manager/service/clone.h"

namespace wisp::service {

struct SandboxEntry : public kj::Refcounted {
  std::string id;
  std::string template_name;
  kj::Own<Clone> clone;           // null only in tests
  std::string state = "running";  // running, paused, dead
  int64_t created_unix_ms = 0;
  int64_t expires_unix_ms = 0;
  uint64_t mem_mib = 0;
  uint64_t invocations = 0;
  bool detached = false;
  uint32_t owners = 0;  // owning capabilities alive
};

class SandboxRegistry {
 public:
  static constexpr uint64_t kMaxTimeoutMs = 7ull * 24 * 3600 * 1000;
  // How often expiries are checked: a time to live is kept to within this.
  static constexpr uint64_t kSweepMs = 100;

  explicit SandboxRegistry(kj::Timer& timer);
  ~SandboxRegistry();

  // Registers `entry` (its id made here) expiring `timeout_ms` from now. Returns the id.
  // Throws "bad-request: ..." for a timeout of 0 or over kMaxTimeoutMs.
  std::string add(kj::Own<SandboxEntry> entry, uint64_t timeout_ms);
  // A reference to a live sandbox; throws "not-found: sandbox ID ..." for an unknown id.
  kj::Own<SandboxEntry> get(const std::string& id);
  bool contains(const std::string& id) const { return entries_.count(id) > 0; }
  void set_timeout(const std::string& id, uint64_t timeout_ms);
  // Ends it: removed at once, its VM stopped; false if it was not there.
  bool kill(const std::string& id);
  void add_owner(const std::string& id);
  // An owning capability dropped: the last one ends a sandbox that is not detached.
  void drop_owner(const std::string& id);
  std::vector<kj::Own<SandboxEntry>> list();
  size_t size() const { return entries_.size(); }
  void clear();

  // 24 hex digits from getentropy: unguessable, so an id is as good as a capability here.
  static std::string new_id();
  static void check_timeout(uint64_t timeout_ms);

 private:
  kj::Promise<void> sweep();

  kj::Timer& timer_;
  std::map<std::string, kj::Own<SandboxEntry>> entries_;
  kj::Promise<void> sweeper_ = nullptr;
};

int64_t unix_ms_now();

}  // namespace wisp::service
