#include "shim/guest_process.h"

#include <kj/debug.h>

#include "base/error.h"
#include "base/log.h"
#include "shim/snapshot_start.h"

namespace wisp::shim {

namespace {

// serve's longest exec (manager/service/sandbox_server.cc): a container's process is ended
// after a day; the sandbox's own time to live is longer (task_service.cc).
constexpr uint64_t kExecTimeoutMs = 24ull * 3600 * 1000;

// How long CloseIO waits for the stdin FIFO's end of file (see close_stdin).
constexpr auto kCloseIoGrace = 2 * kj::SECONDS;

timespec now() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

}  // namespace

uint32_t exit_status_of(api::serve::InvokeResponse::Reader r) {
  if (r.getError().size() > 0) return 255;
  if (r.isSignal()) return 128 + static_cast<uint32_t>(r.getSignal());
  return static_cast<uint32_t>(r.getExitCode());
}

GuestProcess::GuestProcess(std::string exec_id, std::string who, TaskStdio stdio,
                           OciProcess process, kj::LowLevelAsyncIoProvider& io)
    : exec_id_(std::move(exec_id)),
      who_(std::move(who)),
      stdio_(std::move(stdio)),
      process_(std::move(process)),
      io_(io),
      console_width_(process_.console_width),
      console_height_(process_.console_height) {}

GuestProcess::~GuestProcess() noexcept(false) {}

void GuestProcess::LogErrors::taskFailed(kj::Exception&& e) {
  // A signal or close that lost the race with the process's end: nothing to do.
  LOG_INFO("%s: %s", who_.c_str(), e.getDescription().cStr());
}

kj::Promise<void> GuestProcess::start(api::serve::Sandbox::Client sandbox, const OciSandbox* root) {
  if (status_ != TaskStatus::kCreated || starting_) {
    throw Error(who_ + " was started already");
  }
  starting_ = true;
  status_ = TaskStatus::kRunning;
  // On a terminal stderr is stdout (the pty): containerd gives no stderr FIFO.
  output_ = kj::refcounted<OutputFifos>(io_, stdio_.stdout_path,
                                        stdio_.terminal ? "" : stdio_.stderr_path, who_);
  auto call = sandbox.execStreamRequest();
  auto request = call.initRequest();
  auto argv = request.initArgv(static_cast<unsigned>(process_.args.size()));
  for (unsigned i = 0; i < argv.size(); ++i) argv.set(i, process_.args[i]);
  auto env = request.initEnv(static_cast<unsigned>(process_.env.size()));
  for (unsigned i = 0; i < env.size(); ++i) env.set(i, process_.env[i]);
  request.setTimeoutMs(kExecTimeoutMs);
  if (root) fill_exec_sandbox(request.initSandbox(), *root);
  if (stdio_.terminal) {
    request.setTerminal(true);
    request.setConsoleWidth(console_width_);
    request.setConsoleHeight(console_height_);
  }
  call.setOutput(output_->sink());
  return call.send().then(
      [this](capnp::Response<api::serve::Sandbox::ExecStreamResults> r) {
        starting_ = false;
        running(r.getProcess());
      },
      [this](kj::Exception&& e) {
        starting_ = false;
        output_->close();
        std::string why = e.getDescription().cStr();
        LOG_WARN("%s: execStream: %s", who_.c_str(), why.c_str());
        finish(pending_signal_ ? 128 + static_cast<uint32_t>(pending_signal_) : 255);
        throw Error(who_ + ": the sandbox did not run " + process_.args[0] + ": " + why);
      });
}

void GuestProcess::running(api::serve::Process::Client process) {
  process_client_ = process;
  if (!stdio_.stdin_path.empty() && !stdin_closed_) {
    try {
      stdin_ = kj::heap<InputFifo>(io_, stdio_.stdin_path);
      stdin_pump_ =
          pump_stdin(stdin_->stream(), process).eagerlyEvaluate([this](kj::Exception&& e) {
            // The process may end without reading all of its stdin: not its failure.
            LOG_INFO("%s: stdin: %s", who_.c_str(), e.getDescription().cStr());
          });
    } catch (const Error& e) {
      LOG_WARN("%s: %s", who_.c_str(), e.what());
    }
  } else {
    // No stdin (or CloseIO came first): the process reads end of file.
    calls_.add(process.closeStdinRequest().send().ignoreResult());
  }
  if (resize_after_start_) {
    auto req = process.resizeRequest();
    req.setWidth(console_width_);
    req.setHeight(console_height_);
    calls_.add(req.send().ignoreResult());
  }
  waiting_ = process.waitRequest()
                 .send()
                 .then(
                     [this](capnp::Response<api::serve::Process::WaitResults> r) {
                       auto response = r.getResponse();
                       if (response.getError().size() > 0) {
                         LOG_WARN("%s: %s", who_.c_str(), response.getError().cStr());
                       }
                       oom_ = response.getLimitExceeded() == "memory";
                       return ended(exit_status_of(response));
                     },
                     [this](kj::Exception&& e) {
                       // A killed sandbox ends the call this way: the process died with the VM.
                       if (kill_signal_ == 0) {
                         LOG_WARN("%s: wait: %s", who_.c_str(), e.getDescription().cStr());
                       }
                       return ended(kill_signal_ ? 128 + static_cast<uint32_t>(kill_signal_) : 255);
                     })
                 .eagerlyEvaluate(nullptr);
  if (pending_signal_) send_signal(pending_signal_);
}

kj::Promise<void> GuestProcess::ended(uint32_t exit_status) {
  // The output the guest wrote before it ended reaches the FIFOs before the end of file: its
  // last chunks may still be queued on the loop (evalLast runs after them), then written.
  return kj::evalLast([this] { return output_->drain(); }).then([this, exit_status] {
    output_->close();
    stdin_pump_ = kj::READY_NOW;
    stdin_ = nullptr;
    process_client_ = nullptr;
    finish(exit_status);
  });
}

void GuestProcess::finish(uint32_t exit_status) {
  if (status_ == TaskStatus::kStopped) return;
  status_ = TaskStatus::kStopped;
  exit_status_ = exit_status;
  exited_at_ = now();
  ended_->fulfiller->fulfill();
  for (auto& callback : on_exit_) callback();
}

kj::Promise<void> GuestProcess::wait() { return ended_fork_.addBranch(); }

bool GuestProcess::kill(int signal) {
  if (status_ == TaskStatus::kStopped) return false;
  if (status_ == TaskStatus::kCreated) {
    finish(128 + static_cast<uint32_t>(signal));
    return true;
  }
  if (starting_) {
    pending_signal_ = signal;
    return true;
  }
  send_signal(signal);
  return true;
}

void GuestProcess::send_signal(int signal) {
  kill_signal_ = signal;
  KJ_IF_MAYBE (p, process_client_) {
    auto req = p->signalRequest();
    req.setSignal(signal);
    calls_.add(req.send().ignoreResult());
  }
}

bool GuestProcess::resize(uint16_t width, uint16_t height) {
  if (!stdio_.terminal) return false;
  console_width_ = width;
  console_height_ = height;
  KJ_IF_MAYBE (p, process_client_) {
    auto req = p->resizeRequest();
    req.setWidth(width);
    req.setHeight(height);
    calls_.add(req.send().ignoreResult());
  }
  // Starting (execStream in flight): this size may miss the request; sent once it runs.
  if (starting_) resize_after_start_ = true;
  return true;
}

void GuestProcess::close_stdin() {
  if (stdin_closed_) return;
  stdin_closed_ = true;
  KJ_IF_MAYBE (p, process_client_) {
    if (!stdin_) return;  // no stdin FIFO: closed when the process started
    // containerd (ctr) closes its end of the FIFO before it sends CloseIO, and what it wrote
    // may still be on its way through the FIFO, the pipe and serve: the pump closes stdin at
    // that end of file, unless it has not come within kCloseIoGrace (a writer that stays).
    api::serve::Process::Client process = *p;
    auto grace = io_.getTimer().afterDelay(kCloseIoGrace).then([this, process]() mutable {
      LOG_INFO("%s: CloseIO: the stdin FIFO is still open; closing stdin", who_.c_str());
      calls_.add(process.closeStdinRequest().send().ignoreResult());
    });
    stdin_pump_ = stdin_pump_.exclusiveJoin(kj::mv(grace)).eagerlyEvaluate(nullptr);
  }
}

}  // namespace wisp::shim
