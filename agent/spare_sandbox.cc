#include "agent/spare_sandbox.h"

#include <kj/debug.h>
#include <signal.h>
#include <sys/socket.h>

#include "agent/pid1.h"

namespace wisp::agent {

SpareSandbox::SpareSandbox(AgentServices& services, HandlerConfig config)
    : services_(services),
      config_(kj::mv(config)),
      cgroup_(kj::heap<Cgroup>(services.next_cgroup_name("exec"), config_.cgroup)),
      proc_(spawn_sandboxed(config_.sandbox, cgroup_->dir_fd(), /*held=*/true)),
      namespaces_(hold_namespaces(proc_.pid)),
      exit_(services.reaper.wait_for_exit(proc_.pid).fork()),
      // Not owned: proc_.go_fd is closed after this stream is gone.
      go_(services.io.wrapSocketFd(proc_.go_fd.get(),
                                   kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC)),
      settled_(settled_paf_.promise.fork()) {
  watch_ready_ = go_->tryRead(&ready_byte_, 1, 1)
                     .then(
                         [this](size_t n) {
                           if (n == 1 && ready_byte_ == kHeldReady) {
                             ready_ = true;
                           } else {
                             dead_ = true;
                           }
                           settle();
                         },
                         [this](kj::Exception&&) {
                           dead_ = true;
                           settle();
                         })
                     .eagerlyEvaluate(nullptr);
  watch_exit_ = exit_.addBranch()
                    .then([this](ExitInfo) {
                      exited_ = true;
                      // Before it was ready: its set-up failed (the fresh path reports why).
                      if (ready_) console_log("the spare exec sandbox died while waiting");
                      dead_ = true;
                      settle();
                    })
                    .eagerlyEvaluate(nullptr);
}

SpareSandbox::~SpareSandbox() {
  settle();  // a prepareSnapshot waiting on it goes on (without it)
  watch_ready_ = nullptr;
  watch_exit_ = nullptr;
  go_ = nullptr;
  if (taken_ || !cgroup_) return;
  if (!exited_) {
    kill(proc_.pid, SIGKILL);  // the namespace init: the namespace goes with it
    cgroup_->kill_all();
    services_.background.add(exit_.addBranch().ignoreResult().attach(kj::mv(cgroup_)));
  }
}

void SpareSandbox::settle() {
  if (settled_paf_.fulfiller) {
    settled_paf_.fulfiller->fulfill();
    settled_paf_.fulfiller = nullptr;
  }
}

kj::Maybe<StartedSandbox> SpareSandbox::take(const CgroupLimits& limits) {
  KJ_REQUIRE(ready() && !taken_, "the spare sandbox is not ready");
  cgroup_->set_limits(limits);
  char go = kHeldGo;
  // MSG_NOSIGNAL: a handler that died unnoticed since is an EPIPE here, not a SIGPIPE.
  if (send(proc_.go_fd.get(), &go, 1, MSG_NOSIGNAL) != 1) {
    dead_ = true;
    return nullptr;
  }
  watch_ready_ = nullptr;
  watch_exit_ = nullptr;
  go_ = nullptr;
  proc_.go_fd = nullptr;
  taken_ = true;
  StartedSandbox s;
  s.cgroup = kj::mv(cgroup_);
  s.proc = kj::mv(proc_);
  s.namespaces = kj::mv(namespaces_);
  s.exit = exit_.addBranch();
  s.preforked = true;
  return kj::mv(s);
}

}  // namespace wisp::agent
