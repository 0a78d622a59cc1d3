// One container task of the shim, run in a wisp sandbox: Create made the sandbox (a clone of
// the template, held by this shim: if the shim dies, serve destroys the VM); its processes
// (shim/guest_process.h) run in it: the container's own (exec id ""), started by Start, and
// those Exec adds. When the container's process ends, the others are killed, as they would die
// with runc's container (its pid namespace). Pause and Resume stop and continue the VM's vCPUs.
// Delete drops the sandbox. Single-threaded: lives on the shim's KJ event loop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/wisp.capnp.h"
#include "shim/guest_process.h"
#include "shim/oci_process.h"
#include "shim/oci_sandbox.h"

namespace wisp::shim {

class ContainerTask {
 public:
  ContainerTask(std::string id, std::string bundle, TaskStdio stdio, OciProcess process,
                api::serve::Sandbox::Client sandbox, kj::LowLevelAsyncIoProvider& io);
  ~ContainerTask() noexcept(false);

  const std::string& id() const { return id_; }
  const std::string& bundle() const { return bundle_; }
  // The pid containerd records for the task and its processes: the shim's own (the processes
  // run in the guest, whose pids mean nothing on the host).
  uint32_t pid() const;
  // The container's process's status, or kPaused while the sandbox is paused.
  TaskStatus status() const;
  GuestProcess& init() { return *init_; }

  // Its processes run in the container's own root (snapshot_start.h), with this sandbox.
  void use_container_root(const OciSandbox& sandbox) { container_root_ = sandbox; }

  // The process `exec_id` ("" = the container's), or nullptr.
  GuestProcess* process(const std::string& exec_id);
  std::vector<std::string> exec_ids() const;
  // Adds an exec process. Throws wisp::Error when the id is taken (AlreadyExists) or the
  // container's process has ended (FailedPrecondition); `*exists` says which.
  GuestProcess& add_exec(const std::string& exec_id, TaskStdio stdio, OciProcess process,
                         bool* exists);
  // Starts `p` in the sandbox (GuestProcess::start). Throws wisp::Error while paused.
  kj::Promise<void> start(GuestProcess& p);
  // Drops an ended exec process. Throws wisp::Error while it runs.
  void remove_exec(const std::string& exec_id);

  // Sandbox.pause / resume. Reject with wisp::Error when the state does not allow it.
  kj::Promise<void> pause();
  kj::Promise<void> resume();

  // Sandbox.snapshot as template `name` (a checkpoint, checkpoint_record.h): the VM is saved,
  // paused or not, and runs on as it was. Rejects with wisp::Error once the container's process
  // has ended, or with serve's error.
  kj::Promise<void> checkpoint(const std::string& name);

  // Drops the sandbox (serve destroys the VM). Throws wisp::Error while the container's process
  // runs.
  void remove();

 private:
  api::serve::Sandbox::Client& sandbox();
  void init_ended();

  std::string id_;
  std::string bundle_;
  kj::LowLevelAsyncIoProvider& io_;
  std::optional<OciSandbox> container_root_;
  kj::Maybe<api::serve::Sandbox::Client> sandbox_;
  kj::Own<GuestProcess> init_;
  std::map<std::string, kj::Own<GuestProcess>> execs_;
  bool paused_ = false;
  bool pausing_ = false;
};

}  // namespace wisp::shim
