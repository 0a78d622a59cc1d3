// containerd's Task service (containerd.task.v2.Task, runtime/v2/task/shim.proto) as this shim
// serves it over ttrpc. This first layer answers from the shim's own state: Connect (the shim's
// pid), State (of the tasks it holds) and Shutdown (ends the shim once it holds none). Every
// other method (Create, Start, Wait, Kill, Delete, Exec, ...) answers Unimplemented, which
// containerd maps to errdefs.ErrNotImplemented, until it is mapped onto `wisp serve`.
#pragma once

#include <functional>
#include <string>

#include "shim/ttrpc_server.h"

namespace wisp::shim {

// Who this shim is: the flags containerd started it with.
struct ShimIdentity {
  std::string id;      // -id: the task (container) id
  std::string ns;      // -namespace
  std::string bundle;  // the bundle directory
};

class TaskService {
 public:
  static constexpr const char* kService = "containerd.task.v2.Task";

  // `on_shutdown` runs after Shutdown was accepted (the shim then exits once the answer is
  // written).
  TaskService(ShimIdentity identity, std::function<void()> on_shutdown);

  // Registers every method of the service in `router`; `this` must outlive it.
  void register_methods(ttrpc::Router& router);

 private:
  ttrpc::Result connect(const std::string& payload);
  ttrpc::Result state(const std::string& payload);
  ttrpc::Result shutdown(const std::string& payload);

  ShimIdentity identity_;
  std::function<void()> on_shutdown_;
  bool shutting_down_ = false;
  // The shim holds no task yet: Create (which will add them) is not mapped onto `wisp serve`
  // yet, so State answers NotFound and Shutdown always ends the shim.
};

}  // namespace wisp::shim
