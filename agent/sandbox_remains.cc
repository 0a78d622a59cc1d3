#include "agent/sandbox_remains.h"

namespace wisp::agent {

void SandboxRemains::drop_later(HeldNamespaces namespaces, kj::Own<Cgroup> cgroup,
                                kj::Duration delay) {
  uint64_t id = next_++;
  pending_.emplace(id, Remains{kj::mv(namespaces), kj::mv(cgroup)});
  // Already gone when drop_all() came first: erasing nothing is fine.
  tasks_.add(timer_.afterDelay(delay).then([this, id]() { pending_.erase(id); }));
}

}  // namespace wisp::agent
