// One container task of the shim, run in a wisp sandbox: Create made the sandbox (a clone of
// the template, held by this shim: if the shim dies, serve destroys the VM); Start runs the OCI
// process in it through the agent (Sandbox.exec); its output goes to the FIFOs containerd gave
// when it ends; Kill ends the sandbox (and so the process); Wait and Delete report how it ended.
// Single-threaded: lives on the shim's KJ event loop.
#pragma once

#include <time.h>

#include <cstdint>
#include <optional>
#include <string>

#include "api/wisp.capnp.h"
#include "shim/oci_process.h"
#include "shim/oci_sandbox.h"

namespace wisp::shim {

// containerd.v1.types.Status (api/types/task/task.proto).
enum class TaskStatus : int { kCreated = 1, kRunning = 2, kStopped = 3 };

struct TaskStdio {
  std::string stdin_path, stdout_path, stderr_path;
};

class ContainerTask {
 public:
  ContainerTask(std::string id, std::string bundle, TaskStdio stdio, OciProcess process,
                api::serve::Sandbox::Client sandbox);
  ~ContainerTask() noexcept(false);

  const std::string& id() const { return id_; }
  const std::string& bundle() const { return bundle_; }
  const TaskStdio& stdio() const { return stdio_; }
  TaskStatus status() const { return status_; }
  // The pid containerd records for the task: the shim's own (the process runs in the guest).
  uint32_t pid() const;
  uint32_t exit_status() const { return exit_status_; }
  const timespec& exited_at() const { return exited_at_; }

  // The process runs in the container's own root (snapshot_start.h), with this sandbox.
  void use_container_root(const OciSandbox& sandbox) { container_root_ = sandbox; }
  // Runs the process. Throws wisp::Error unless the task is created and not started.
  void start();
  // Resolves when the process has ended (at once if it has).
  kj::Promise<void> wait();
  // Ends the process with `signal` (the sandbox is killed: a VM has no finer way yet). False
  // when it had already ended.
  bool kill(int signal);
  // Drops the sandbox (serve destroys the VM). Throws wisp::Error while the process runs.
  void remove();

 private:
  void finish(uint32_t exit_status);
  void write_output(const std::string& path, capnp::Data::Reader data, const char* which);

  std::string id_;
  std::string bundle_;
  TaskStdio stdio_;
  OciProcess process_;
  std::optional<OciSandbox> container_root_;
  kj::Maybe<api::serve::Sandbox::Client> sandbox_;
  TaskStatus status_ = TaskStatus::kCreated;
  uint32_t exit_status_ = 0;
  timespec exited_at_{};
  int kill_signal_ = 0;
  kj::Own<kj::PromiseFulfillerPair<void>> ended_ =
      kj::heap<kj::PromiseFulfillerPair<void>>(kj::newPromiseAndFulfiller<void>());
  kj::ForkedPromise<void> ended_fork_ = ended_->promise.fork();
  kj::Promise<void> running_ = kj::READY_NOW;
  kj::Promise<void> killing_ = kj::READY_NOW;
};

}  // namespace wisp::shim
