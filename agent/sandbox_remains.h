// What an exec call's sandbox leaves once its handler has ended: its namespaces
// (held_namespaces.h) and its cgroup. Tearing them down waits until a little after the call's
// result is out, so that the guest's one vCPU sends the result first; a pool clone is destroyed
// before then and never spends the time. Before a snapshot the agent drops them all at once
// (drop_all), so that no clone of it inherits a teardown to do during its first call.
#pragma once

#include <kj/async.h>
#include <kj/memory.h>
#include <kj/time.h>
#include <kj/timer.h>

#include <cstdint>
#include <map>

#include "agent/cgroup.h"
#include "agent/held_namespaces.h"

namespace wisp::agent {

class SandboxRemains {
 public:
  // `tasks` runs the drops' timers, whose callbacks use this object: the event loop must not
  // run them after it is gone (the agent destroys it, then `tasks`, once its loop has ended).
  SandboxRemains(kj::Timer& timer, kj::TaskSet& tasks) : timer_(timer), tasks_(tasks) {}
  KJ_DISALLOW_COPY(SandboxRemains);

  // Drops `namespaces` and `cgroup` (either may be empty) after `delay`, or at drop_all().
  void drop_later(HeldNamespaces namespaces, kj::Own<Cgroup> cgroup, kj::Duration delay);
  // Drops every pending one now.
  void drop_all() { pending_.clear(); }
  size_t pending() const { return pending_.size(); }

 private:
  struct Remains {
    HeldNamespaces namespaces;
    kj::Own<Cgroup> cgroup;
  };

  kj::Timer& timer_;
  kj::TaskSet& tasks_;
  uint64_t next_ = 0;
  std::map<uint64_t, Remains> pending_;
};

}  // namespace wisp::agent
