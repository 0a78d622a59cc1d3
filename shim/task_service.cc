#include "shim/task_service.h"

#include <time.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <utility>

#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/checkpoint_record.h"
#include "shim/exec_spec.h"
#include "shim/oci_process.h"
#include "shim/rootfs_image.h"
#include "shim/rootfs_mounts.h"
#include "shim/serve_link.h"
#include "shim/shim_commands.h"
#include "shim/snapshot_start.h"
#include "shim/stage_clock.h"

namespace wisp::shim {

namespace task = containerd::task::v2;
namespace events = containerd::events;
using ttrpc::Code;
using ttrpc::Result;

namespace {

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
Result failed(const Error& e) { return Result::error(Code::kFailedPrecondition, e.what()); }

// A wisp::Error thrown on the event loop arrives as a kj::Exception whose description KJ
// prefixes with "std::exception: ": containerd's log gets the message alone.
Result failed(const kj::Exception& e) {
  std::string d = e.getDescription().cStr();
  const std::string prefix = "std::exception: ";
  if (d.rfind(prefix, 0) == 0) d = d.substr(prefix.size());
  return Result::error(Code::kFailedPrecondition, d);
}

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
                         kj::LowLevelAsyncIoProvider& io, Publish publish,
                         std::function<void()> on_shutdown)
    : identity_(std::move(identity)),
      connect_serve_(std::move(connect_serve)),
      io_(io),
      publish_(std::move(publish)),
      on_shutdown_(std::move(on_shutdown)) {}

TaskService::~TaskService() noexcept(false) {}

void TaskService::register_methods(ttrpc::Router& router) {
  auto sync = [&](const char* method, Result (TaskService::*fn)(const std::string&)) {
    router.add(kService, method,
               [this, fn](std::string p) -> kj::Promise<Result> { return (this->*fn)(p); });
  };
  auto async = [&](const char* method, kj::Promise<Result> (TaskService::*fn)(const std::string&)) {
    router.add(kService, method,
               [this, fn](std::string p) -> kj::Promise<Result> { return (this->*fn)(p); });
  };
  router.add(kService, "Create",
             [this](std::string p) -> kj::Promise<Result> { return create(std::move(p)); });
  async("Wait", &TaskService::wait);
  async("Start", &TaskService::start);
  async("Pause", &TaskService::pause);
  async("Resume", &TaskService::resume);
  async("Checkpoint", &TaskService::checkpoint);
  sync("Kill", &TaskService::kill);
  sync("Delete", &TaskService::remove);
  sync("Exec", &TaskService::exec);
  sync("CloseIO", &TaskService::close_io);
  sync("ResizePty", &TaskService::resize_pty);
  sync("Stats", &TaskService::stats);
  sync("Update", &TaskService::update);
  sync("Connect", &TaskService::connect);
  sync("State", &TaskService::state);
  sync("Pids", &TaskService::pids);
  sync("Shutdown", &TaskService::shutdown);
}

ContainerTask* TaskService::find(const std::string& id, Result* error) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) {
    *error = Result::error(Code::kNotFound, "task " + id + " not found in shim " + identity_.id +
                                                " (namespace " + identity_.ns + ")");
    return nullptr;
  }
  return it->second.get();
}

GuestProcess* TaskService::find(const std::string& id, const std::string& exec_id,
                                ContainerTask** task, Result* error) {
  *task = find(id, error);
  if (*task == nullptr) return nullptr;
  GuestProcess* p = (*task)->process(exec_id);
  if (p == nullptr) {
    *error = Result::error(Code::kNotFound, "task " + id + ": exec " + exec_id + " not found");
  }
  return p;
}

void TaskService::publish_exit(const std::string& task_id, GuestProcess& p) {
  if (p.exec_id().empty()) log_stage(task_id, "exited");
  events::TaskExit exit;
  exit.set_container_id(task_id);
  exit.set_id(p.exec_id().empty() ? task_id : p.exec_id());
  exit.set_pid(static_cast<uint32_t>(getpid()));
  exit.set_exit_status(p.exit_status());
  set_time(exit.mutable_exited_at(), p.exited_at());
  if (p.oom()) {
    events::TaskOOM oom;
    oom.set_container_id(task_id);
    publish_("/tasks/oom", oom);
  }
  publish_("/tasks/exit", exit);
}

kj::Promise<Result> TaskService::create(std::string payload) {
  task::CreateTaskRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Create", "CreateTaskRequest");
  const std::string id = request.id();
  if (id.empty()) return Result::error(Code::kInvalidArgument, "Create: id is empty");
  log_stage(id, "create");
  if (tasks_.count(id)) return Result::error(Code::kAlreadyExists, "task " + id + " exists");
  std::string bundle = request.bundle().empty() ? identity_.bundle : request.bundle();
  OciProcess process;
  // A start from a checkpoint: a clone of the checkpoint's snapshot (a template in serve's
  // store), which holds the sandbox as it was, its writable layer too. containerd removes the
  // directory once Create returns: it is read now.
  std::string checkpoint_template;
  try {
    process = read_oci_process(bundle);
    if (!request.checkpoint().empty())
      checkpoint_template = read_checkpoint_record(request.checkpoint()).template_name;
    else
      checkpoint_template = process.checkpoint_template;
  } catch (const Error& e) {
    return Result::error(Code::kInvalidArgument, std::string("Create: ") + e.what());
  }
  if (process.template_name.empty()) process.template_name = identity_.default_template;
  TaskStdio stdio{request.stdin(), request.stdout(), request.stderr(), request.terminal()};
  events::TaskCreate event;
  event.set_container_id(id);
  event.set_bundle(bundle);
  *event.mutable_rootfs() = request.rootfs();
  event.mutable_io()->set_stdin(request.stdin());
  event.mutable_io()->set_stdout(request.stdout());
  event.mutable_io()->set_stderr(request.stderr());
  // Without a fixed template: the container's own root, in a clone of the template of its
  // image + command (snapshot_start.h), made first if need be.
  std::optional<OciSandbox> container_root;
  auto template_name = std::make_shared<std::string>(process.template_name);
  kj::Promise<void> template_ready = kj::READY_NOW;
  if (process.template_name.empty() && !checkpoint_template.empty()) {
    // The container's root as when it was checkpointed: the snapshot's own drive.
    try {
      container_root = parse_oci_sandbox(read_file(bundle + "/config.json"));
    } catch (const Error& e) {
      return Result::error(Code::kInvalidArgument, std::string("Create: ") + e.what());
    }
  } else if (process.template_name.empty()) {
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
              log_stage(id, "template-ready");
              LOG_INFO("task %s: template %s %s (%.0f ms), image %s %s (%.0f ms)", id.c_str(),
                       p.template_name.c_str(), p.template_made ? "made" : "reused", p.template_ms,
                       p.image.path.c_str(), p.image.built ? "built" : "cached", p.image_ms);
              *template_name = p.template_name;
            });
  }
  if (!checkpoint_template.empty()) {
    LOG_INFO("task %s: from checkpoint %s", id.c_str(), checkpoint_template.c_str());
    *template_name = checkpoint_template;
  }
  return template_ready.then([this] { return connect_serve_(); })
      .then([](api::serve::Wisp::Client wisp) {
        return wisp.sandboxesRequest().send().getSandboxes();
      })
      .then([template_name, id](api::serve::Sandboxes::Client sandboxes) {
        log_stage(id, "sandbox-request");
        auto req = sandboxes.createRequest();
        req.setTemplate(*template_name);
        req.setTimeoutMs(kSandboxTimeoutMs);
        req.setDetached(false);  // the shim holds it: a shim that dies takes its VM along
        return req.send();
      })
      .then(
          [this, id, bundle, stdio, template_name, container_root, process = std::move(process),
           event = std::move(event)](
              capnp::Response<api::serve::Sandboxes::CreateResults> created) mutable -> Result {
            if (tasks_.count(id))
              return Result::error(Code::kAlreadyExists, "task " + id + " exists");
            log_stage(id, "sandbox-created");
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
                                             created.getSandbox(), io_);
            if (container_root) t->use_container_root(*container_root);
            task::CreateTaskResponse response;
            response.set_pid(t->pid());
            tasks_.emplace(id, kj::mv(t));
            event.set_pid(response.pid());
            publish_("/tasks/create", event);
            return encoded(response);
          },
          [template_name](kj::Exception&& e) {
            if (template_name->empty())  // failed before a template was ready
              return serve_error("Create: the container's root and template", kj::mv(e));
            return serve_error("Create: a sandbox of template " + *template_name, kj::mv(e));
          });
}

kj::Promise<Result> TaskService::start(const std::string& payload) {
  task::StartRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Start", "StartRequest");
  Result error;
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  if (request.exec_id().empty()) log_stage(request.id(), "start");
  kj::Promise<void> started = nullptr;
  try {
    started = t->start(*p);
  } catch (const Error& e) {
    return failed(e);
  }
  std::string id = request.id(), exec_id = request.exec_id();
  p->on_exit([this, id, p] { publish_exit(id, *p); });
  return started.then(
      [this, id, exec_id]() -> Result {
        task::StartResponse response;
        response.set_pid(static_cast<uint32_t>(getpid()));
        if (exec_id.empty()) {
          log_stage(id, "started");
          events::TaskStart event;
          event.set_container_id(id);
          event.set_pid(response.pid());
          publish_("/tasks/start", event);
        } else {
          events::TaskExecStarted event;
          event.set_container_id(id);
          event.set_exec_id(exec_id);
          event.set_pid(response.pid());
          publish_("/tasks/exec-started", event);
        }
        return encoded(response);
      },
      [](kj::Exception&& e) { return failed(e); });
}

kj::Promise<Result> TaskService::wait(const std::string& payload) {
  task::WaitRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Wait", "WaitRequest");
  Result error;
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  std::string id = request.id(), exec_id = request.exec_id();
  // Looked up again when it ends: Delete may have dropped it meanwhile.
  return p->wait().then([this, id, exec_id]() -> Result {
    Result error;
    ContainerTask* t = nullptr;
    GuestProcess* p = find(id, exec_id, &t, &error);
    if (p == nullptr) return error;
    task::WaitResponse response;
    response.set_exit_status(p->exit_status());
    set_time(response.mutable_exited_at(), p->exited_at());
    return encoded(response);
  });
}

Result TaskService::kill(const std::string& payload) {
  task::KillRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Kill", "KillRequest");
  Result error;
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  if (request.signal() > 64) {
    return Result::error(Code::kInvalidArgument,
                         "Kill: signal " + std::to_string(request.signal()) + ": expected 0 to 64");
  }
  int signal = static_cast<int>(request.signal());
  // Signal 0 asks whether the process is there, as kill(2)'s does.
  if (signal == 0 ? p->status() == TaskStatus::kStopped : !p->kill(signal)) {
    // runc's shim answers the same for a process that is gone.
    return Result::error(Code::kNotFound, "process already finished");
  }
  if (request.all() && request.exec_id().empty()) {
    // Every process of the container, as runc's kill --all.
    for (const auto& exec_id : t->exec_ids()) t->process(exec_id)->kill(signal);
  }
  return encoded(google::protobuf::Empty());
}

Result TaskService::remove(const std::string& payload) {
  task::DeleteRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Delete", "DeleteRequest");
  Result error;
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  if (request.exec_id().empty()) log_stage(request.id(), "delete");
  task::DeleteResponse response;
  response.set_pid(t->pid());
  response.set_exit_status(p->exit_status());
  set_time(response.mutable_exited_at(), p->exited_at());
  try {
    if (!request.exec_id().empty()) {
      t->remove_exec(request.exec_id());
      return encoded(response);
    }
    t->remove();
  } catch (const Error& e) {
    return failed(e);
  }
  events::TaskDelete event;
  event.set_container_id(request.id());
  event.set_id(request.id());
  event.set_pid(response.pid());
  event.set_exit_status(response.exit_status());
  *event.mutable_exited_at() = response.exited_at();
  tasks_.erase(request.id());
  publish_("/tasks/delete", event);
  return encoded(response);
}

Result TaskService::exec(const std::string& payload) {
  task::ExecProcessRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Exec", "ExecProcessRequest");
  Result error;
  ContainerTask* t = find(request.id(), &error);
  if (t == nullptr) return error;
  if (request.exec_id().empty())
    return Result::error(Code::kInvalidArgument, "Exec: exec_id is empty");
  OciProcess process;
  try {
    process = parse_exec_spec(request.spec().type_url(), request.spec().value());
  } catch (const Error& e) {
    return Result::error(Code::kInvalidArgument, std::string("Exec: ") + e.what());
  }
  bool exists = false;
  try {
    t->add_exec(request.exec_id(),
                TaskStdio{request.stdin(), request.stdout(), request.stderr(), request.terminal()},
                std::move(process), &exists);
  } catch (const Error& e) {
    return Result::error(exists ? Code::kAlreadyExists : Code::kFailedPrecondition, e.what());
  }
  events::TaskExecAdded event;
  event.set_container_id(request.id());
  event.set_exec_id(request.exec_id());
  publish_("/tasks/exec-added", event);
  return encoded(google::protobuf::Empty());
}

Result TaskService::close_io(const std::string& payload) {
  task::CloseIORequest request;
  if (!request.ParseFromString(payload)) return bad_request("CloseIO", "CloseIORequest");
  Result error;
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  if (request.stdin()) p->close_stdin();
  return encoded(google::protobuf::Empty());
}

Result TaskService::resize_pty(const std::string& payload) {
  task::ResizePtyRequest request;
  if (!request.ParseFromString(payload)) return bad_request("ResizePty", "ResizePtyRequest");
  Result error;
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  constexpr uint32_t kMax = 65535;
  if (request.width() > kMax || request.height() > kMax) {
    return Result::error(Code::kInvalidArgument,
                         "ResizePty: width " + std::to_string(request.width()) + ", height " +
                             std::to_string(request.height()) + ": each at most 65535");
  }
  if (!p->resize(static_cast<uint16_t>(request.width()), static_cast<uint16_t>(request.height()))) {
    // As runc's shim: a process without a terminal has no size to set.
    LOG_INFO("task %s exec '%s': ResizePty ignored: the process has no terminal",
             request.id().c_str(), request.exec_id().c_str());
  }
  return encoded(google::protobuf::Empty());
}

kj::Promise<Result> TaskService::pause(const std::string& payload) {
  task::PauseRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Pause", "PauseRequest");
  Result error;
  ContainerTask* t = find(request.id(), &error);
  if (t == nullptr) return error;
  std::string id = request.id();
  return kj::evalNow([t] { return t->pause(); })
      .then(
          [this, id]() -> Result {
            events::TaskPaused event;
            event.set_container_id(id);
            publish_("/tasks/paused", event);
            return encoded(google::protobuf::Empty());
          },
          [](kj::Exception&& e) { return failed(e); });
}

kj::Promise<Result> TaskService::resume(const std::string& payload) {
  task::ResumeRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Resume", "ResumeRequest");
  Result error;
  ContainerTask* t = find(request.id(), &error);
  if (t == nullptr) return error;
  std::string id = request.id();
  return kj::evalNow([t] { return t->resume(); })
      .then(
          [this, id]() -> Result {
            events::TaskResumed event;
            event.set_container_id(id);
            publish_("/tasks/resumed", event);
            return encoded(google::protobuf::Empty());
          },
          [](kj::Exception&& e) { return failed(e); });
}

kj::Promise<Result> TaskService::checkpoint(const std::string& payload) {
  task::CheckpointTaskRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Checkpoint", "CheckpointTaskRequest");
  Result error;
  ContainerTask* t = find(request.id(), &error);
  if (t == nullptr) return error;
  // containerd's directory for the checkpoint (it tars it into its content store after).
  // request.options (runc's CheckpointOptions: CRIU's switches) mean nothing to a VM snapshot.
  const std::string dir = request.path();
  if (dir.empty() || dir[0] != '/')
    return Result::error(Code::kInvalidArgument, "Checkpoint: path \"" + dir.substr(0, 256) +
                                                     "\": expected an absolute directory");
  std::string id = request.id();
  std::string name;
  try {
    name = checkpoint_template_name(id);
  } catch (const Error& e) {
    return failed(e);
  }
  timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  return kj::evalNow([t, name] { return t->checkpoint(name); })
      .then(
          [id, dir, name, t0]() -> Result {
            try {
              write_checkpoint_record(dir, CheckpointRecord{name, id});
            } catch (const Error& e) {
              return failed(e);
            }
            timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            LOG_INFO("task %s: checkpoint %s (%.0f ms)", id.c_str(), name.c_str(),
                     static_cast<double>(t1.tv_sec - t0.tv_sec) * 1e3 +
                         static_cast<double>(t1.tv_nsec - t0.tv_nsec) / 1e6);
            return encoded(google::protobuf::Empty());
          },
          [id](kj::Exception&& e) {
            return serve_error("Checkpoint: a wisp snapshot of task " + id + "'s sandbox",
                               kj::mv(e));
          });
}

Result TaskService::stats(const std::string& payload) {
  task::StatsRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Stats", "StatsRequest");
  Result error;
  if (find(request.id(), &error) == nullptr) return error;
  // runc's shim answers cgroup metrics; the guest's cgroup is not visible to the host, and
  // serve's Sandbox API has no per-sandbox metrics yet.
  return Result::error(Code::kUnimplemented,
                       "Stats: wisp serve reports no per-sandbox metrics yet "
                       "(containerd-shim-wisp-v2)");
}

Result TaskService::update(const std::string& payload) {
  task::UpdateTaskRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Update", "UpdateTaskRequest");
  Result error;
  if (find(request.id(), &error) == nullptr) return error;
  // A VM's memory and vCPUs are fixed by its template when the sandbox starts.
  return Result::error(Code::kUnimplemented,
                       "Update: a running sandbox's resources cannot change; they come from its "
                       "wisp template (containerd-shim-wisp-v2)");
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
  ContainerTask* t = nullptr;
  GuestProcess* p = find(request.id(), request.exec_id(), &t, &error);
  if (p == nullptr) return error;
  task::StateResponse response;
  response.set_id(t->id());
  response.set_exec_id(request.exec_id());
  response.set_bundle(t->bundle());
  response.set_pid(t->pid());
  TaskStatus status = request.exec_id().empty() ? t->status() : p->status();
  response.set_status(static_cast<containerd::v1::types::Status>(status));
  response.set_stdin(p->stdio().stdin_path);
  response.set_stdout(p->stdio().stdout_path);
  response.set_stderr(p->stdio().stderr_path);
  response.set_terminal(p->stdio().terminal);
  if (p->status() == TaskStatus::kStopped) {
    response.set_exit_status(p->exit_status());
    set_time(response.mutable_exited_at(), p->exited_at());
  }
  return encoded(response);
}

Result TaskService::pids(const std::string& payload) {
  task::PidsRequest request;
  if (!request.ParseFromString(payload)) return bad_request("Pids", "PidsRequest");
  Result error;
  ContainerTask* t = find(request.id(), &error);
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
