#include "manager/host_net/netns.h"

#include <fcntl.h>
#include <sched.h>

#include <exception>
#include <thread>

#include "base/error.h"

namespace wisp::host_net {
namespace {

// Runs `body` on a thread of its own and rethrows what it threw here.
void on_own_thread(const std::function<void()>& body) {
  std::exception_ptr failure;
  std::thread t([&] {
    try {
      body();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

UniqueFd new_netns(const std::function<void()>& setup) {
  UniqueFd fd;
  on_own_thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) throw_errno("creating a network namespace");
    fd = UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("opening the new network namespace");
    setup();
  });
  return fd;
}

void in_netns(int netns_fd, const std::function<void()>& work) {
  on_own_thread([&] {
    if (::setns(netns_fd, CLONE_NEWNET) != 0) throw_errno("entering a VM's network namespace");
    work();
  });
}

}  // namespace wisp::host_net
