// Admission control for `wisp serve`: every VM serve runs (a clone for one call, a sandbox, a
// warm clone, a template build) holds a Ticket for its VM slot and its guest memory while it
// lives. A request beyond the limits waits, in arrival order, up to its deadline, then fails
// "overloaded: ..."; serve never admits past a limit.
//
// Threads: one loop thread owns an Admission and every Ticket of it.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace wisp::service {

struct AdmissionLimits {
  uint32_t max_vms = 0;           // 0: no limit
  uint64_t max_memory_mib = 0;    // 0: no limit
  uint32_t max_per_template = 0;  // concurrent VMs of one template; 0: no limit
  // Memory of --max-memory held for serve's idle standby VMMs (the pool): never admitted.
  uint64_t reserved_mib = 0;
};

class Admission;

// One admitted VM: its slot and memory are given back when this is destroyed.
class Ticket {
 public:
  Ticket(Admission& admission, std::string key, uint64_t mem_mib)
      : admission_(admission), key_(std::move(key)), mem_mib_(mem_mib) {}
  ~Ticket();
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  const std::string& key() const { return key_; }
  uint64_t mem_mib() const { return mem_mib_; }

 private:
  Admission& admission_;
  std::string key_;
  uint64_t mem_mib_;
};

class Admission {
 public:
  Admission(kj::Timer& timer, AdmissionLimits limits) : timer_(timer), limits_(limits) {}
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // A ticket for a VM of template `key` with `mem_mib` of guest memory: at once when it fits,
  // else when enough is released, at most `deadline` later; then it fails with a kj::Exception
  // "overloaded: ..." naming the limit. One that can never fit fails at once.
  kj::Promise<kj::Own<Ticket>> acquire(const std::string& key, uint64_t mem_mib,
                                       kj::Duration deadline);
  // A ticket now or none (warm clones fill only spare capacity; they never queue).
  kj::Maybe<kj::Own<Ticket>> try_acquire(const std::string& key, uint64_t mem_mib);
  // Fails every waiting request with `message` (serve drains).
  void fail_waiters(const std::string& message);

  const AdmissionLimits& limits() const { return limits_; }
  uint32_t vms() const { return vms_; }
  // Committed: the admitted VMs' guest memory and the reserve.
  uint64_t memory_mib() const { return memory_mib_ + limits_.reserved_mib; }
  uint32_t waiting();  // requests queued now
  uint32_t in_use(const std::string& key) const;

 private:
  friend class Ticket;
  struct Waiter {
    std::string key;
    uint64_t mem_mib;
    kj::Own<kj::PromiseFulfiller<kj::Own<Ticket>>> fulfiller;
  };
  // "" when a VM of `key` with `mem_mib` fits now, else which limit it is over.
  std::string over_limit(const std::string& key, uint64_t mem_mib) const;
  kj::Own<Ticket> grant(const std::string& key, uint64_t mem_mib);
  void release(const std::string& key, uint64_t mem_mib);
  // Grants waiters that fit now, in order; stops at the first one over a global limit so a
  // large request is not starved by smaller ones behind it.
  void admit_waiters();

  kj::Timer& timer_;
  AdmissionLimits limits_;
  uint32_t vms_ = 0;
  uint64_t memory_mib_ = 0;
  std::map<std::string, uint32_t> per_key_;
  std::deque<Waiter> waiters_;
};

}  // namespace wisp::service
