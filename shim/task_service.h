// containerd's Task service (containerd.task.v2.Task, runtime/v2/task/shim.proto) as this shim
// serves it over ttrpc. A task runs in a wisp sandbox (shim/container_task.h) that `wisp serve`
// makes at Create from a template: the OCI spec's annotation io.wisp.template, else the shim's
// default (WISP_SHIM_TEMPLATE). Connect, State, Pids and Shutdown answer from the shim's state;
// Create, Start, Wait, Kill, Delete, Exec, CloseIO, ResizePty (Create and Exec with `terminal`
// run the process on a pseudo-terminal in the guest), Pause and Resume drive the sandbox and
// its processes (shim/container_task.h); Checkpoint saves the sandbox as a wisp snapshot and a
// Create with a checkpoint starts from it (shim/checkpoint_record.h); Update and Stats answer
// Unimplemented (containerd's errdefs.ErrNotImplemented) with what is missing.
// The task events runc's shim publishes are published the same way (shim/event_publisher.h).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "api/wisp.capnp.h"
#include "shim/container_task.h"
#include "shim/event_publisher.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim {

// Who this shim is: the flags containerd started it with, and its defaults.
struct ShimIdentity {
  std::string id;                // -id: the task (container) id
  std::string ns;                // -namespace
  std::string bundle;            // the bundle directory
  std::string default_template;  // for specs without the io.wisp.template annotation
};

// Reaches `wisp serve` (called at each Create; may connect once and cache). Throws or rejects
// with wisp::Error when serve is not configured or not reachable.
using ServeConnector = std::function<kj::Promise<api::serve::Wisp::Client>()>;

class TaskService {
 public:
  static constexpr const char* kService = "containerd.task.v2.Task";

  // `io` opens containerd's FIFOs; `publish` sends an event to containerd; `on_shutdown` runs
  // after Shutdown was accepted (the shim then exits once the answer is written).
  TaskService(ShimIdentity identity, ServeConnector connect_serve, kj::LowLevelAsyncIoProvider& io,
              Publish publish, std::function<void()> on_shutdown);
  ~TaskService() noexcept(false);

  // Registers every method of the service in `router`; `this` must outlive it.
  void register_methods(ttrpc::Router& router);

 private:
  kj::Promise<ttrpc::Result> create(std::string payload);
  kj::Promise<ttrpc::Result> start(const std::string& payload);
  kj::Promise<ttrpc::Result> wait(const std::string& payload);
  ttrpc::Result kill(const std::string& payload);
  ttrpc::Result remove(const std::string& payload);
  ttrpc::Result exec(const std::string& payload);
  ttrpc::Result close_io(const std::string& payload);
  ttrpc::Result resize_pty(const std::string& payload);
  kj::Promise<ttrpc::Result> pause(const std::string& payload);
  kj::Promise<ttrpc::Result> resume(const std::string& payload);
  kj::Promise<ttrpc::Result> checkpoint(const std::string& payload);
  ttrpc::Result stats(const std::string& payload);
  ttrpc::Result update(const std::string& payload);
  ttrpc::Result connect(const std::string& payload);
  ttrpc::Result state(const std::string& payload);
  ttrpc::Result pids(const std::string& payload);
  ttrpc::Result shutdown(const std::string& payload);

  // The task `id` of a request, or nullptr (with *error set to NotFound).
  ContainerTask* find(const std::string& id, ttrpc::Result* error);
  // Its process `exec_id` ("" = the container's), or nullptr (with *error set to NotFound).
  GuestProcess* find(const std::string& id, const std::string& exec_id, ContainerTask** task,
                     ttrpc::Result* error);
  // Publishes TaskExit (and TaskOOM) when `p` of `task_id` ends.
  void publish_exit(const std::string& task_id, GuestProcess& p);

  ShimIdentity identity_;
  ServeConnector connect_serve_;
  kj::LowLevelAsyncIoProvider& io_;
  Publish publish_;
  std::function<void()> on_shutdown_;
  bool shutting_down_ = false;
  std::map<std::string, kj::Own<ContainerTask>> tasks_;
};

}  // namespace wisp::shim
