#include "shim/container_task.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "shim/snapshot_start.h"

namespace wisp::shim {

namespace {

// serve's limit on one exec (manager/service/sandbox_server.cc): a container runs up to a day.
// TODO(containerd): longer-running containers need a streamed exec without a time limit.
constexpr uint64_t kExecTimeoutMs = 24ull * 3600 * 1000;

timespec now() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

}  // namespace

ContainerTask::ContainerTask(std::string id, std::string bundle, TaskStdio stdio,
                             OciProcess process, api::serve::Sandbox::Client sandbox)
    : id_(std::move(id)),
      bundle_(std::move(bundle)),
      stdio_(std::move(stdio)),
      process_(std::move(process)),
      sandbox_(kj::mv(sandbox)) {}

ContainerTask::~ContainerTask() noexcept(false) {}

uint32_t ContainerTask::pid() const { return static_cast<uint32_t>(::getpid()); }

void ContainerTask::start() {
  if (status_ != TaskStatus::kCreated) throw Error("task " + id_ + " was started already");
  api::serve::Sandbox::Client* sandbox = nullptr;
  KJ_IF_MAYBE (s, sandbox_) {
    sandbox = s;
  } else {
    throw Error("task " + id_ + " has no sandbox");
  }
  auto call = sandbox->execRequest();
  auto request = call.initRequest();
  auto argv = request.initArgv(static_cast<unsigned>(process_.args.size()));
  for (unsigned i = 0; i < argv.size(); ++i) argv.set(i, process_.args[i]);
  auto env = request.initEnv(static_cast<unsigned>(process_.env.size()));
  for (unsigned i = 0; i < env.size(); ++i) env.set(i, process_.env[i]);
  request.setTimeoutMs(kExecTimeoutMs);
  if (container_root_) fill_exec_sandbox(request.initSandbox(), *container_root_);
  status_ = TaskStatus::kRunning;
  running_ = call.send()
                 .then([this](capnp::Response<api::serve::Sandbox::ExecResults> results) {
                   auto r = results.getResponse();
                   write_output(stdio_.stdout_path, r.getStdout(), "stdout");
                   write_output(stdio_.stderr_path, r.getStderr(), "stderr");
                   if (r.getError().size() > 0) {
                     LOG_WARN("task %s: %s", id_.c_str(), r.getError().cStr());
                     finish(kill_signal_ ? 128 + kill_signal_ : 255);
                   } else if (r.isSignal()) {
                     finish(128 + static_cast<uint32_t>(r.getSignal()));
                   } else {
                     finish(static_cast<uint32_t>(r.getExitCode()));
                   }
                 })
                 .catch_([this](kj::Exception&& e) {
                   // A killed sandbox ends the call this way: the process died with the VM.
                   if (kill_signal_ == 0) {
                     LOG_WARN("task %s: exec: %s", id_.c_str(), e.getDescription().cStr());
                   }
                   finish(kill_signal_ ? 128 + kill_signal_ : 255);
                 })
                 .eagerlyEvaluate(nullptr);
}

void ContainerTask::finish(uint32_t exit_status) {
  if (status_ == TaskStatus::kStopped) return;
  status_ = TaskStatus::kStopped;
  exit_status_ = exit_status;
  exited_at_ = now();
  ended_->fulfiller->fulfill();
}

kj::Promise<void> ContainerTask::wait() { return ended_fork_.addBranch(); }

bool ContainerTask::kill(int signal) {
  if (status_ == TaskStatus::kStopped) return false;
  kill_signal_ = signal;
  KJ_IF_MAYBE (sandbox, sandbox_) {
    // The exec's call then fails (the process died with the VM), which finishes the task.
    killing_ = sandbox->killRequest()
                   .send()
                   .ignoreResult()
                   .catch_([this](kj::Exception&& e) {
                     LOG_WARN("task %s: kill: %s", id_.c_str(), e.getDescription().cStr());
                   })
                   .eagerlyEvaluate(nullptr);
  }
  if (status_ == TaskStatus::kCreated) finish(128 + static_cast<uint32_t>(signal));
  return true;
}

void ContainerTask::remove() {
  if (status_ == TaskStatus::kRunning) throw Error("task " + id_ + " is running: kill it first");
  sandbox_ = nullptr;  // the last reference: serve destroys the VM
}

void ContainerTask::write_output(const std::string& path, capnp::Data::Reader data,
                                 const char* which) {
  // Opened (and closed) even with nothing to write: the reader then sees end of file.
  if (path.empty()) return;
  // containerd holds the FIFO's read end open while the task lives; without a reader the
  // output has nowhere to go (O_NONBLOCK: ENXIO instead of blocking the shim).
  // TODO(perf): a blocking write stalls the event loop while a reader is slow; stream it
  // through execStream instead.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    LOG_WARN("task %s: %s %s: %s", id_.c_str(), which, path.c_str(), strerror(errno));
    return;
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  const auto* p = data.begin();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd.get(), p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      LOG_WARN("task %s: writing %s: %s", id_.c_str(), which, strerror(errno));
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace wisp::shim
