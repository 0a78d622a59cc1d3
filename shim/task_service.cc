#include "shim/task_service.h"

#include <unistd.h>

#include <utility>

#include "base/log.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"

namespace wisp::shim {

namespace task = containerd::task::v2;
using ttrpc::Code;
using ttrpc::Result;

namespace {

// The methods of shim.proto's Task service that this shim does not implement yet.
constexpr const char* kNotYet[] = {
    "Create", "Start", "Delete",    "Pids",    "Pause",  "Resume", "Checkpoint",
    "Kill",   "Exec",  "ResizePty", "CloseIO", "Update", "Wait",   "Stats",
};

template <typename Message>
bool parse(const std::string& payload, Message* out) {
  return out->ParseFromString(payload);
}

Result bad_request(const char* method, const char* message_type) {
  return Result::error(Code::kInvalidArgument,
                       std::string(method) + ": the payload is not a " + message_type);
}

Result encoded(const google::protobuf::MessageLite& message) {
  std::string bytes;
  message.SerializeToString(&bytes);
  return Result::ok(std::move(bytes));
}

}  // namespace

TaskService::TaskService(ShimIdentity identity, std::function<void()> on_shutdown)
    : identity_(std::move(identity)), on_shutdown_(std::move(on_shutdown)) {}

void TaskService::register_methods(ttrpc::Router& router) {
  router.add(kService, "Connect",
             [this](std::string p) -> kj::Promise<Result> { return connect(p); });
  router.add(kService, "State", [this](std::string p) -> kj::Promise<Result> { return state(p); });
  router.add(kService, "Shutdown",
             [this](std::string p) -> kj::Promise<Result> { return shutdown(p); });
  for (const char* method : kNotYet) {
    std::string name = method;
    router.add(kService, name, [name](std::string) -> kj::Promise<Result> {
      return Result::error(Code::kUnimplemented,
                           "containerd-shim-wisp-v2 does not support " + name + " yet");
    });
  }
}

Result TaskService::connect(const std::string& payload) {
  task::ConnectRequest request;
  if (!parse(payload, &request)) return bad_request("Connect", "ConnectRequest");
  task::ConnectResponse response;
  response.set_shim_pid(static_cast<uint32_t>(getpid()));
  response.set_task_pid(0);  // no task process yet: Create is not implemented
  return encoded(response);
}

Result TaskService::state(const std::string& payload) {
  task::StateRequest request;
  if (!parse(payload, &request)) return bad_request("State", "StateRequest");
  return Result::error(Code::kNotFound, "task " + request.id() + " not found: shim " +
                                            identity_.id + " (namespace " + identity_.ns +
                                            ") holds no task");
}

Result TaskService::shutdown(const std::string& payload) {
  task::ShutdownRequest request;
  if (!parse(payload, &request)) return bad_request("Shutdown", "ShutdownRequest");
  // containerd sends Shutdown after Delete. runc's shim stays while it still runs tasks
  // (unless `now`); this one holds none, so it always goes.
  if (!shutting_down_) {
    shutting_down_ = true;
    LOG_INFO("shim %s: shutdown", identity_.id.c_str());
    on_shutdown_();
  }
  return encoded(google::protobuf::Empty());
}

}  // namespace wisp::shim
