#include "shim/task_service.h"

#include <unistd.h>

#include <memory>
#include <optional>
#include <utility>

#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/oci_process.h"
#include "shim/rootfs_image.h"
#include "shim/rootfs_mounts.h"
#include "shim/serve_link.h"
#include "shim/shim_commands.h"
#include "shim/snapshot_start.h"

namespace wisp::shim {

namespace task = containerd::task::v2;
using ttrpc::Code;
using ttrpc::Result;

namespace {

// The methods of shim.proto's Task service that this shim does not implement yet.
constexpr const char* kNotYet[] = {"Pause",     "Resume",  "Checkpoint", "Exec",
                                   "ResizePty", "CloseIO", "Update",     "Stats"};

// serve's longest sandbox time to live (manager/service/sandbox_registry.h): the sandbox lives
// as long as the task, which the shim's capability holds; the time to live is a backstop.
constexpr uint64_t kSandboxTimeoutMs = 7ull * 24 * 3600 * 1000;

Result bad_request(const char* method, const char* message_type) {
  return Result::error(Code::kInvalidArgument,
                       std::string(method) + ": the payload is not a " + message_type);
}

Result encoded(const google::protobuf::MessageLite& message) {
  std::string bytes;
  message.SerializeToString(&bytes);
  return Result::ok(std::move(bytes));
}

void set_time(google::protobuf::Timestamp* out, const timespec& t) {
  out->set_seconds(t.tv_sec);
  out->set_nanos(static_cast<int32_t>(t.tv_nsec));
}

// serve's error words (api/wisp.capnp) as the status containerd maps back to its errdefs.
Result serve_error(const std::string& what, kj::Exception&& e) {
  std::string d = e.getDescription().cStr();
  Code code = Code::kUnavailable;
  if (d.find("not-found:") != std::string::npos) code = Code::kNotFound;
  if (d.find("bad-request:") != std::string::npos) code = Code::kInvalidArgument;
  if (d.find("too-large:") != std::string::npos) code = Code::kInvalidArgument;
  if (d.find("overloaded:") != std::string::npos) code = Code::kResourceExhausted;
  if (d.find("draining:") != std::string::npos) code = Code::kUnavailable;
  return Result::error(code, what + ": " + d);
}

}  // namespace

TaskService::TaskService(ShimIdentity identity, ServeConnector connect_serve,
                         std::function<void()> on_shutdown)
    : identity_(std::move(identity)),
      connect_serve_(std::move(connect_serve)),
      on_shutdown_(std::move(on_shutdown)) {}

TaskService::~TaskService() noexcept(false) {}

void TaskService::register_methods(ttrpc::Router& router) {
  auto sync = [&](const char* method, Result (TaskService::*fn)(const std::string&)) {
    router.add(kService, method,
               [this, fn](std::string p) -> kj::Promise<Result> { return (this->*fn)(p); });
  };
  router.add(kService, "Create",
             [this](std::string p) -> kj::Promise<Result> { return create(std::move(p)); });
  router.add(kService, "Wait", [this](std::string p) -> kj::Promise<Result> { return wait(p); });
  sync("Start", &TaskService::start);
  sync("Kill", &TaskService::kill);
  sync("Delete", &TaskService::remove);
  sync("Connect", &TaskService::connect);
  sync("State", &TaskService::state);
  sync("Pids", &TaskService::pids);
  sync("Shutdown", &TaskService::shutdown);
  for (const char* method : kNotYet) {
    std::string name = method;
    router.add(kService, name, [name](std::string) -> kj::Promise<Result> {
      return Result::error(Code::kUnimplemented,
                           "containerd-shim-wisp-v2 does not support " + name + " yet");
    });
  }
}

ContainerTask* TaskService::find(const std::string& id, const std::string& exec_id, Result* error) {
  if (!exec_id.empty()) {
    *error = Result::error(Code::kUnimplemented,
                           "containerd-shim-wisp-v2 does not support exec processes yet");
    return nullptr;
  }
  auto it = tasks_.find(id);
  if (it == tasks_.end()) {
    *error = Result::error(Code::kNotFound, "task " + id + " not found in shim " + identity_.id +
                                                " (namespace " + identity_.ns + ")");
    return nullptr;
  }
  return it->second.get();
}

kj::Promise<Result> TaskService::create(std::string payload) {
  task::CreateTaskRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Create", "CreateTaskRequest");
  const std::string id = request.id();
  if (id.empty()) return Result::error(Code::kInvalidArgument, "Create: id is empty");
  if (tasks_.count(id)) return Result::error(Code::kAlreadyExists, "task " + id + " exists");
  if (request.terminal()) {
    return Result::error(Code::kInvalidArgument,
                         "Create: terminal: a TTY is not supported by containerd-shim-wisp-v2 yet");
  }
  if (!request.checkpoint().empty()) {
    return Result::error(Code::kUnimplemented,
                         "Create: starting from a checkpoint is not supported yet");
  }
  std::string bundle = request.bundle().empty() ? identity_.bundle : request.bundle();
  OciProcess process;
  try {
    process = read_oci_process(bundle);
  } catch (const Error& e) {
    return Result::error(Code::kInvalidArgument, std::string("Create: ") + e.what());
  }
  if (process.template_name.empty()) process.template_name = identity_.default_template;
  TaskStdio stdio{request.stdin(), request.stdout(), request.stderr()};
  // Without a fixed template: the container's own root, in a clone of the template of its
  // image + command (snapshot_start.h), made first if need be.
  std::optional<OciSandbox> container_root;
  auto template_name = std::make_shared<std::string>(process.template_name);
  kj::Promise<void> template_ready = kj::READY_NOW;
  if (process.template_name.empty()) {
    RootfsSource source;
    RootfsCache cache;
    try {
      std::vector<RootfsMount> mounts;
      for (const auto& m : request.rootfs())
        mounts.push_back(RootfsMount{
            m.type(), m.source(), m.target(), {m.options().begin(), m.options().end()}});
      source = parse_rootfs_mounts(mounts);
      container_root = parse_oci_sandbox(read_file(bundle + "/config.json"));
      cache = rootfs_cache_from_env();
    } catch (const Error& e) {
      return Result::error(Code::kInvalidArgument, std::string("Create: ") + e.what());
    }
    template_ready =
        prepare_start_async(source, cache, serve_socket_from_env(), process.args, process.env,
                            *container_root)
            .then([id, template_name](PreparedStart p) {
              LOG_INFO("task %s: template %s %s (%.0f ms), image %s %s (%.0f ms)", id.c_str(),
                       p.template_name.c_str(), p.template_made ? "made" : "reused", p.template_ms,
                       p.image.path.c_str(), p.image.built ? "built" : "cached", p.image_ms);
              *template_name = p.template_name;
            });
  }
  return template_ready.then([this] { return connect_serve_(); })
      .then([](api::serve::Wisp::Client wisp) {
        return wisp.sandboxesRequest().send().getSandboxes();
      })
      .then([template_name](api::serve::Sandboxes::Client sandboxes) {
        auto req = sandboxes.createRequest();
        req.setTemplate(*template_name);
        req.setTimeoutMs(kSandboxTimeoutMs);
        req.setDetached(false);  // the shim holds it: a shim that dies takes its VM along
        return req.send();
      })
      .then(
          [this, id, bundle, stdio, template_name, container_root, process = std::move(process)](
              capnp::Response<api::serve::Sandboxes::CreateResults> created) mutable -> Result {
            if (tasks_.count(id))
              return Result::error(Code::kAlreadyExists, "task " + id + " exists");
            std::string sandbox_id = created.getInfo().getId().cStr();
            LOG_INFO("task %s: sandbox %s of template %s", id.c_str(), sandbox_id.c_str(),
                     template_name->c_str());
            // For `delete` after this shim died: it kills the sandbox by id (shim_commands.h).
            try {
              write_file_atomic(bundle + "/" + kSandboxIdFile, sandbox_id, 0600);
            } catch (const Error& e) {
              LOG_WARN("task %s: %s", id.c_str(), e.what());
            }
            auto t = kj::heap<ContainerTask>(id, bundle, stdio, std::move(process),
                                             created.getSandbox());
            if (container_root) t->use_container_root(*container_root);
            task::CreateTaskResponse response;
            response.set_pid(t->pid());
            tasks_.emplace(id, kj::mv(t));
            return encoded(response);
          },
          [template_name](kj::Exception&& e) {
            if (template_name->empty())  // failed before a template was ready
              return serve_error("Create: the container's root and template", kj::mv(e));
            return serve_error("Create: a sandbox of template " + *template_name, kj::mv(e));
          });
}

Result TaskService::start(const std::string& payload) {
  task::StartRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Start", "StartRequest");
  Result error;
  ContainerTask* t = find(request.id(), request.exec_id(), &error);
  if (t == nullptr) return error;
  try {
    t->start();
  } catch (const Error& e) {
    return Result::error(Code::kFailedPrecondition, e.what());
  }
  task::StartResponse response;
  response.set_pid(t->pid());
  return encoded(response);
}

kj::Promise<Result> TaskService::wait(const std::string& payload) {
  task::WaitRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Wait", "WaitRequest");
  Result error;
  ContainerTask* t = find(request.id(), request.exec_id(), &error);
  if (t == nullptr) return error;
  std::string id = request.id();
  return t->wait().then([this, id]() -> Result {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return Result::error(Code::kNotFound, "task " + id + " was deleted");
    task::WaitResponse response;
    response.set_exit_status(it->second->exit_status());
    set_time(response.mutable_exited_at(), it->second->exited_at());
    return encoded(response);
  });
}

Result TaskService::kill(const std::string& payload) {
  task::KillRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Kill", "KillRequest");
  Result error;
  ContainerTask* t = find(request.id(), request.exec_id(), &error);
  if (t == nullptr) return error;
  int signal =
      request.signal() > 0 && request.signal() < 65 ? static_cast<int>(request.signal()) : 9;
  if (!t->kill(signal)) {
    // runc's shim answers the same for a process that is gone.
    return Result::error(Code::kNotFound, "process already finished");
  }
  return encoded(google::protobuf::Empty());
}

Result TaskService::remove(const std::string& payload) {
  task::DeleteRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Delete", "DeleteRequest");
  Result error;
  ContainerTask* t = find(request.id(), request.exec_id(), &error);
  if (t == nullptr) return error;
  try {
    t->remove();
  } catch (const Error& e) {
    return Result::error(Code::kFailedPrecondition, e.what());
  }
  task::DeleteResponse response;
  response.set_pid(t->pid());
  response.set_exit_status(t->exit_status());
  set_time(response.mutable_exited_at(), t->exited_at());
  tasks_.erase(request.id());
  return encoded(response);
}

Result TaskService::connect(const std::string& payload) {
  task::ConnectRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Connect", "ConnectRequest");
  task::ConnectResponse response;
  response.set_shim_pid(static_cast<uint32_t>(getpid()));
  auto it = tasks_.find(request.id());
  response.set_task_pid(it == tasks_.end() ? 0 : it->second->pid());
  return encoded(response);
}

Result TaskService::state(const std::string& payload) {
  task::StateRequest request;
  if (!request.ParseFromString(payload)) return bad_request("State", "StateRequest");
  Result error;
  ContainerTask* t = find(request.id(), request.exec_id(), &error);
  if (t == nullptr) return error;
  task::StateResponse response;
  response.set_id(t->id());
  response.set_bundle(t->bundle());
  response.set_pid(t->pid());
  response.set_status(static_cast<containerd::v1::types::Status>(t->status()));
  response.set_stdin(t->stdio().stdin_path);
  response.set_stdout(t->stdio().stdout_path);
  response.set_stderr(t->stdio().stderr_path);
  if (t->status() == TaskStatus::kStopped) {
    response.set_exit_status(t->exit_status());
    set_time(response.mutable_exited_at(), t->exited_at());
  }
  return encoded(response);
}

Result TaskService::pids(const std::string& payload) {
  task::PidsRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Pids", "PidsRequest");
  Result error;
  ContainerTask* t = find(request.id(), "", &error);
  if (t == nullptr) return error;
  task::PidsResponse response;
  response.add_processes()->set_pid(t->pid());
  return encoded(response);
}

Result TaskService::shutdown(const std::string& payload) {
  task::ShutdownRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Shutdown", "ShutdownRequest");
  // containerd sends Shutdown after Delete; a shim that still holds tasks stays (as runc's
  // does), unless `now`.
  if (!tasks_.empty() && !request.now()) return encoded(google::protobuf::Empty());
  if (!shutting_down_) {
    shutting_down_ = true;
    LOG_INFO("shim %s: shutdown", identity_.id.c_str());
    on_shutdown_();
  }
  return encoded(google::protobuf::Empty());
}

}  // namespace wisp::shim
