#include "agent/child_reaper.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

namespace wisp::agent {

ChildReaper::ChildReaper(kj::UnixEventPort& port) : port_(port) {}

kj::Promise<ExitInfo> ChildReaper::wait_for_exit(pid_t pid) {
  auto paf = kj::newPromiseAndFulfiller<ExitInfo>();
  waiting_[pid] = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

kj::Promise<void> ChildReaper::run() {
  return port_.onSignal(SIGCHLD).then([this](siginfo_t) {
    reap_all();
    return run();
  });
}

void ChildReaper::reap_all() {
  for (;;) {
    ExitInfo info;
    pid_t pid = wait4(-1, &info.wait_status, WNOHANG, &info.usage);
    if (pid <= 0) return;  // 0: children left but none exited; -1/ECHILD: no children
    auto it = waiting_.find(pid);
    if (it == waiting_.end()) continue;  // an orphan, or a caller that gave up
    auto fulfiller = kj::mv(it->second);
    waiting_.erase(it);
    fulfiller->fulfill(kj::mv(info));
  }
}

}  // namespace wisp::agent
