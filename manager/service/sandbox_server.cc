// Sandboxes and Sandbox of api/wisp.capnp over the SandboxRegistry: each call looks its
// sandbox up by id (so a killed or expired one answers "not-found") and holds a reference to it
// while it runs.
#include "base/clock.h"
#include "base/error.h"
#include "manager/invoke.h"
#include "manager/service/api_convert.h"
#include "manager/service/exec_sandbox.h"
#include "manager/service/scratch_path.h"
#include "manager/service/wisp_server.h"
#include "manager/template_fork.h"

namespace wisp::service {
namespace {

constexpr uint64_t kMaxExecTimeoutMs = 24ull * 3600 * 1000;

// The wisp OutputSink behind the agent's stream (vm_links.h).
class SinkForward final : public OutputStream {
 public:
  explicit SinkForward(api::serve::OutputSink::Client sink) : sink_(kj::mv(sink)) {}
  kj::Promise<void> stdout_chunk(kj::ArrayPtr<const kj::byte> d) override {
    auto req = sink_.stdoutRequest();
    req.setData(d);
    return req.send();
  }
  kj::Promise<void> stderr_chunk(kj::ArrayPtr<const kj::byte> d) override {
    auto req = sink_.stderrRequest();
    req.setData(d);
    return req.send();
  }

 private:
  api::serve::OutputSink::Client sink_;
};

class ProcessImpl final : public api::serve::Process::Server {
 public:
  ProcessImpl(kj::Own<SandboxEntry> entry, kj::Own<StreamedProcess> p)
      : entry_(kj::mv(entry)), p_(kj::mv(p)) {}
  kj::Promise<void> write(WriteContext context) override {
    return guard(p_->write(kj::heapArray<kj::byte>(context.getParams().getData())), "write");
  }
  kj::Promise<void> closeStdin(CloseStdinContext) override {
    return guard(p_->close_stdin(), "closeStdin");
  }
  kj::Promise<void> signal(SignalContext context) override {
    int32_t sig = context.getParams().getSignal();
    if (sig <= 0 || sig >= 65) throw_api_error("bad-request: signal " + std::to_string(sig));
    return guard(p_->signal(sig), "signal");
  }
  kj::Promise<void> resize(ResizeContext context) override {
    auto params = context.getParams();
    return guard(p_->resize(params.getWidth(), params.getHeight()), "resize");
  }
  kj::Promise<void> wait(WaitContext context) override {
    return guard(p_->wait(), "wait").then([context](client::InvokeResult r) mutable {
      fill_response(context.getResults().initResponse(), r, CallTimings{});
    });
  }

 private:
  template <typename T>
  kj::Promise<T> guard(kj::Promise<T> p, const char* what) {
    if (!entry_->clone) throw_api_error("vm-failed: the sandbox has no VM");
    return entry_->clone->guard(kj::mv(p), std::string("sandbox process ") + what);
  }
  kj::Own<SandboxEntry> entry_;
  kj::Own<StreamedProcess> p_;
};

class SandboxImpl final : public api::serve::Sandbox::Server {
 public:
  SandboxImpl(Service& s, std::string id, bool owning)
      : s_(s), id_(std::move(id)), owning_(owning) {
    if (owning_) s_.sandboxes().add_owner(id_);
  }
  ~SandboxImpl() {
    if (owning_) s_.sandboxes().drop_owner(id_);
  }

  kj::Promise<void> info(InfoContext context) override {
    fill_sandbox_info(context.getResults().initInfo(), *s_.sandboxes().get(id_));
    return kj::READY_NOW;
  }

  kj::Promise<void> invoke(InvokeContext context) override {
    auto e = live();
    CallRequest request = call_request(context.getParams().getRequest());
    client::InvokeRequest req =
        manager::invoke_request_for(e->clone->info(), std::move(request.payload),
                                    std::chrono::milliseconds(request.timeout_ms));
    return run(kj::mv(e), req, context.getResults().initResponse());
  }

  kj::Promise<void> exec(ExecContext context) override {
    auto e = live();
    auto r = context.getParams().getRequest();
    client::InvokeRequest req;
    req.mode = client::InvokeMode::kExec;
    if (r.getTerminal())
      throw_api_error("bad-request: terminal: only execStream runs a command on a terminal");
    req.handler = exec_handler(r);
    req.payload = data(r.getStdin());
    req.timeout_ms = r.getTimeoutMs();
    return run(kj::mv(e), req, context.getResults().initResponse());
  }

  kj::Promise<void> execStream(ExecStreamContext context) override {
    auto e = live();
    auto params = context.getParams();
    auto r = params.getRequest();
    client::Handler h = exec_handler(r);
    uint64_t timeout = r.getTimeoutMs();
    if (r.getStdin().size() > 0)
      throw_api_error("bad-request: execStream takes stdin through Process.write, not stdin");
    auto out = kj::heap<SinkForward>(params.getOutput());
    Clone& c = *e->clone;
    auto started = c.guard(c.agent().exec_stream(h, timeout, kj::mv(out)), "execStream");
    return started.then([context, e = kj::mv(e)](kj::Own<StreamedProcess> p) mutable {
      context.getResults().setProcess(kj::heap<ProcessImpl>(kj::mv(e), kj::mv(p)));
    });
  }

  kj::Promise<void> putFile(PutFileContext context) override {
    auto e = live();
    auto params = context.getParams();
    std::string path = checked_path(text(params.getPath()));
    if (params.getData().size() > api::serve::Wisp::MAX_PAYLOAD_BYTES)
      throw_api_error("too-large: the file is " + std::to_string(params.getData().size()) +
                      " bytes; at most " + std::to_string(api::serve::Wisp::MAX_PAYLOAD_BYTES));
    uint32_t mode = params.getMode();
    if (mode > 07777) throw_api_error("bad-request: mode " + std::to_string(mode) + ": over 07777");
    Clone& c = *e->clone;
    return c.guard(c.agent().put_file(path, params.getData(), mode), "putFile").attach(kj::mv(e));
  }

  kj::Promise<void> getFile(GetFileContext context) override {
    auto e = live();
    std::string path = checked_path(text(context.getParams().getPath()));
    Clone& c = *e->clone;
    return c.guard(c.agent().get_file(path), "getFile")
        .then([context](kj::Array<kj::byte> d) mutable {
          if (d.size() > api::serve::Wisp::MAX_PAYLOAD_BYTES)
            throw_api_error("too-large: the file is over Wisp.maxPayloadBytes");
          context.getResults().setData(d);
        })
        .attach(kj::mv(e));
  }

  kj::Promise<void> pause(PauseContext) override { return pause_resume(true); }
  kj::Promise<void> resume(ResumeContext) override { return pause_resume(false); }

  // A diff snapshot of the sandbox as a new template (manager/template_fork.h). The VMM pauses
  // the guest while it writes and resumes it; the sandbox may be paused already (it stays so).
  // The blocking work runs on a thread of the template builds (a drain waits for it).
  kj::Promise<void> snapshot(SnapshotContext context) override {
    s_.check_accepting();
    std::string name = text(context.getParams().getName());
    try {
      manager::check_template_name(name);
    } catch (const Error& err) {
      throw_api_error(std::string("bad-request: ") + err.what());
    }
    auto e = s_.sandboxes().get(id_);
    if (!e->clone) throw_api_error("vm-failed: sandbox " + id_ + " has no VM");
    Clone& c = *e->clone;
    auto parent = std::make_shared<manager::OpenTemplate>(c.hold_template());
    std::string socket = c.control_path();
    auto in_flight = kj::heap<Service::InFlight>(s_, name);
    auto job = [parent, socket, name](const manager::Progress&, manager::Cancellation*) {
      manager::TemplateCreated out;
      out.info = manager::fork_template(*parent, socket, name);
      return out;
    };
    auto quiet = [](const std::string&) -> kj::Promise<void> { return kj::READY_NOW; };
    return c.guard(s_.builds().run(job, quiet), "snapshotting sandbox " + id_)
        .then([this, context](manager::TemplateCreated created) mutable {
          fill_template_info(context.getResults().initTemplate(), created.info, s_);
        })
        .attach(kj::mv(e), kj::mv(in_flight));
  }

  kj::Promise<void> setTimeout(SetTimeoutContext context) override {
    s_.sandboxes().set_timeout(id_, context.getParams().getTimeoutMs());
    return kj::READY_NOW;
  }

  kj::Promise<void> kill(KillContext) override {
    if (!s_.sandboxes().kill(id_)) s_.sandboxes().get(id_);  // throws not-found
    return kj::READY_NOW;
  }

 private:
  kj::Own<SandboxEntry> live() {
    s_.check_accepting();
    auto e = s_.sandboxes().get(id_);
    if (!e->clone) throw_api_error("vm-failed: sandbox " + id_ + " has no VM");
    if (e->state == "paused")
      throw_api_error("bad-request: sandbox " + id_ + " is paused (resume it first)");
    return e;
  }

  static std::string checked_path(const std::string& path) {
    std::string why = scratch_path_problem(path);
    if (!why.empty()) throw_api_error("bad-request: path '" + path.substr(0, 128) + "': " + why);
    return path;
  }

  static client::Handler exec_handler(api::serve::ExecRequest::Reader r) {
    client::Handler h;
    h.name = "exec";
    for (auto a : r.getArgv()) h.argv.push_back(text(a));
    for (auto v : r.getEnv()) h.env.push_back(text(v));
    if (h.argv.empty() || h.argv[0].empty()) throw_api_error("bad-request: argv: empty command");
    if (r.hasSandbox()) {
      try {
        apply_exec_sandbox(r.getSandbox(), &h);
      } catch (const Error& e) {
        throw_api_error(e.what());
      }
    }
    h.terminal = r.getTerminal();
    h.console_width = r.getConsoleWidth();
    h.console_height = r.getConsoleHeight();
    uint64_t t = r.getTimeoutMs();
    if (t == 0 || t > kMaxExecTimeoutMs)
      throw_api_error("bad-request: timeoutMs " + std::to_string(t) + ": expected 1 to " +
                      std::to_string(kMaxExecTimeoutMs));
    return h;
  }

  kj::Promise<void> run(kj::Own<SandboxEntry> e, const client::InvokeRequest& req,
                        api::serve::InvokeResponse::Builder out) {
    uint64_t t0 = now_ns();
    ++e->invocations;
    auto in_flight = kj::heap<Service::InFlight>(s_, e->template_name);
    Clone& c = *e->clone;
    return c.guard(c.agent().invoke(req), "invoking in sandbox " + id_)
        .then([out, t0](client::InvokeResult r) mutable {
          CallTimings t;
          t.invoke_ms = t.total_ms = ms_since(t0);
          fill_response(out, r, t);
        })
        .attach(kj::mv(e), kj::mv(in_flight));
  }

  kj::Promise<void> pause_resume(bool pause) {
    s_.check_accepting();
    auto e = s_.sandboxes().get(id_);
    if (!e->clone) throw_api_error("vm-failed: sandbox " + id_ + " has no VM");
    Clone& c = *e->clone;
    auto linked = c.connect_control_link();
    return linked
        .then([&c, pause] {
          // A sandbox's clock runs on while paused, as its user's wall clock does.
          return pause ? c.control().pause(/*lasting=*/true, /*hold_clock=*/false)
                       : c.control().resume();
        })
        .then([e = kj::addRef(*e), pause]() mutable { e->state = pause ? "paused" : "running"; })
        .attach(kj::mv(e));
  }

  Service& s_;
  std::string id_;
  bool owning_;
};

class SandboxesImpl final : public api::serve::Sandboxes::Server {
 public:
  explicit SandboxesImpl(Service& s) : s_(s) {}

  kj::Promise<void> create(CreateContext context) override {
    auto params = context.getParams();
    std::string name = text(params.getTemplate());
    uint64_t timeout = params.getTimeoutMs();
    bool detached = params.getDetached();
    SandboxRegistry::check_timeout(timeout);
    auto in_flight = kj::heap<Service::InFlight>(s_, name);
    return s_.start_clone(name, params.getDeadlineMs())
        .then([this, context, name, timeout, detached](kj::Own<Clone> clone) mutable {
          auto e = kj::refcounted<SandboxEntry>();
          e->template_name = name;
          e->mem_mib = clone->info().mem_mib;
          e->detached = detached;
          e->clone = kj::mv(clone);
          std::string id = s_.sandboxes().add(kj::mv(e), timeout);
          auto results = context.getResults();
          results.setSandbox(kj::heap<SandboxImpl>(s_, id, /*owning=*/true));
          fill_sandbox_info(results.initInfo(), *s_.sandboxes().get(id));
        })
        .attach(kj::mv(in_flight));
  }

  kj::Promise<void> get(GetContext context) override {
    std::string id = text(context.getParams().getId());
    s_.sandboxes().get(id);  // not-found now rather than on first use
    context.getResults().setSandbox(kj::heap<SandboxImpl>(s_, id, /*owning=*/false));
    return kj::READY_NOW;
  }

  kj::Promise<void> list(ListContext context) override {
    auto all = s_.sandboxes().list();
    auto out = context.getResults().initSandboxes(static_cast<unsigned>(all.size()));
    for (size_t i = 0; i < all.size(); ++i)
      fill_sandbox_info(out[static_cast<unsigned>(i)], *all[i]);
    return kj::READY_NOW;
  }

 private:
  Service& s_;
};

}  // namespace

api::serve::Sandboxes::Client make_sandboxes_server(Service& service) {
  return kj::heap<SandboxesImpl>(service);
}

}  // namespace wisp::service
