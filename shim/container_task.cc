#include "shim/container_task.h"

#include <signal.h>
#include <unistd.h>

#include "base/error.h"
#include "base/log.h"

namespace wisp::shim {

ContainerTask::ContainerTask(std::string id, std::string bundle, TaskStdio stdio,
                             OciProcess process, api::serve::Sandbox::Client sandbox,
                             kj::LowLevelAsyncIoProvider& io)
    : id_(std::move(id)), bundle_(std::move(bundle)), io_(io), sandbox_(kj::mv(sandbox)) {
  init_ = kj::heap<GuestProcess>("", "task " + id_, std::move(stdio), std::move(process), io_);
  init_->on_exit([this] { init_ended(); });
}

ContainerTask::~ContainerTask() noexcept(false) {}

uint32_t ContainerTask::pid() const { return static_cast<uint32_t>(::getpid()); }

TaskStatus ContainerTask::status() const {
  if (paused_ && init_->status() == TaskStatus::kRunning) return TaskStatus::kPaused;
  return init_->status();
}

GuestProcess* ContainerTask::process(const std::string& exec_id) {
  if (exec_id.empty()) return init_.get();
  auto it = execs_.find(exec_id);
  return it == execs_.end() ? nullptr : it->second.get();
}

GuestProcess& ContainerTask::add_exec(const std::string& exec_id, TaskStdio stdio,
                                      OciProcess process, bool* exists) {
  *exists = execs_.count(exec_id) > 0;
  if (*exists) throw Error("task " + id_ + ": exec " + exec_id + " exists");
  if (init_->status() == TaskStatus::kStopped) {
    throw Error("task " + id_ + " has ended: no process can be added");
  }
  auto p = kj::heap<GuestProcess>(exec_id, "task " + id_ + " exec " + exec_id, std::move(stdio),
                                  std::move(process), io_);
  GuestProcess& ref = *p;
  execs_.emplace(exec_id, kj::mv(p));
  return ref;
}

api::serve::Sandbox::Client& ContainerTask::sandbox() {
  KJ_IF_MAYBE (s, sandbox_) {
    return *s;
  }
  throw Error("task " + id_ + " has no sandbox");
}

kj::Promise<void> ContainerTask::start(GuestProcess& p) {
  if (paused_ || pausing_) throw Error("task " + id_ + " is paused: resume it first");
  if (&p != init_.get() && init_->status() != TaskStatus::kRunning) {
    throw Error("task " + id_ + ": the container's process is not running");
  }
  return p.start(sandbox(), container_root_ ? &*container_root_ : nullptr);
}

void ContainerTask::init_ended() {
  // runc's container ends with its first process (its pid namespace goes): so do these.
  // One not started yet ends too: it can no longer run.
  for (auto& [exec_id, p] : execs_) {
    if (p->status() == TaskStatus::kStopped) continue;
    LOG_INFO("task %s: killing exec %s: the container's process ended", id_.c_str(),
             exec_id.c_str());
    p->kill(SIGKILL);
  }
}

std::vector<std::string> ContainerTask::exec_ids() const {
  std::vector<std::string> ids;
  for (const auto& entry : execs_) ids.push_back(entry.first);
  return ids;
}

void ContainerTask::remove_exec(const std::string& exec_id) {
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) return;
  if (it->second->status() == TaskStatus::kRunning) {
    throw Error("task " + id_ + ": exec " + exec_id + " is running: kill it first");
  }
  execs_.erase(it);
}

kj::Promise<void> ContainerTask::pause() {
  if (init_->status() != TaskStatus::kRunning) {
    throw Error("task " + id_ + " is not running");
  }
  if (paused_ || pausing_) throw Error("task " + id_ + " is paused already");
  pausing_ = true;
  return sandbox().pauseRequest().send().ignoreResult().then(
      [this] {
        pausing_ = false;
        paused_ = true;
      },
      [this](kj::Exception&& e) {
        pausing_ = false;
        throw Error("task " + id_ + ": pausing the sandbox: " + e.getDescription().cStr());
      });
}

kj::Promise<void> ContainerTask::resume() {
  if (!paused_) throw Error("task " + id_ + " is not paused");
  return sandbox().resumeRequest().send().ignoreResult().then(
      [this] { paused_ = false; },
      [this](kj::Exception&& e) {
        throw Error("task " + id_ + ": resuming the sandbox: " + e.getDescription().cStr());
      });
}

kj::Promise<void> ContainerTask::checkpoint(const std::string& name) {
  if (init_->status() == TaskStatus::kStopped) throw Error("task " + id_ + " has ended");
  auto req = sandbox().snapshotRequest();
  req.setName(name);
  return req.send().ignoreResult();
}

void ContainerTask::remove() {
  if (init_->status() == TaskStatus::kRunning) {
    throw Error("task " + id_ + " is running: kill it first");
  }
  execs_.clear();
  sandbox_ = nullptr;  // the last reference: serve destroys the VM
}

}  // namespace wisp::shim
