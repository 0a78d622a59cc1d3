// Network namespaces without switching the calling thread's: the work runs on a short-lived
// thread of its own that unshares or enters the namespace (a namespace belongs to a thread,
// and a multi-threaded `wisp serve` must never move its other threads).
#pragma once

#include <functional>

#include "base/unique_fd.h"

namespace wisp::host_net {

// A new, empty network namespace (anonymous: it lives while a descriptor or a process holds
// it), after `setup` ran inside it. Throws Error (or what `setup` threw).
UniqueFd new_netns(const std::function<void()>& setup);

// Runs `work` inside the namespace `netns_fd`. Throws Error (or what `work` threw).
void in_netns(int netns_fd, const std::function<void()>& work);

}  // namespace wisp::host_net
