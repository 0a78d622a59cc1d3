#include "agent/stream_process.h"

#include <kj/debug.h>
#include <signal.h>

#include <algorithm>

#include "agent/agent_server.h"
#include "agent/sandbox_terminal.h"
#include "base/clock.h"

namespace wisp::agent {
namespace {

constexpr uint kFdFlags =
    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC;
// One streaming call per read: small enough that output shows up as it is written.
constexpr size_t kChunkBytes = 64 * 1024;
// Stdin written but not yet taken by the command; beyond it write() is refused, so a caller
// that does not wait for its writes cannot make the agent queue without bound.
constexpr uint64_t kMaxQueuedStdinBytes = 64ull << 20;
// After the command ended, how long the sink gets to take the rest of the output before it is
// dropped and wait() answers anyway (a sink that never acknowledges must not hold the result).
constexpr auto kSinkGrace = 10 * kj::SECONDS;
constexpr int kMaxSignal = 64;  // SIGRTMAX on Linux

}  // namespace

StreamProcess::StreamProcess(AgentServices& services, api::OutputSink::Client sink)
    : services_(services), sink_(kj::mv(sink)) {}

StreamProcess::~StreamProcess() {
  // Dropped while running (the caller let go of the Process, or hung up): kill the tree.
  if (!exited_ && cgroup_ && pid_ > 0) {
    kill_tree();
    services_.background.add(
        services_.reaper.wait_for_exit(pid_).ignoreResult().attach(kj::mv(cgroup_)));
  }
}

void StreamProcess::start(const HandlerConfig& config, uint64_t timeout_ms) {
  start_ns_ = now_ns();
  cgroup_ = kj::heap<Cgroup>(services_.next_cgroup_name("stream"), config.cgroup);
  SandboxedProcess proc = spawn_sandboxed(config.sandbox, cgroup_->dir_fd());
  pid_ = proc.pid;
  auto exited = wait_for_exit(proc.pid);  // registered before the loop runs again
  auto& io = services_.io;
  status_stream_ = io.wrapInputFd(proc.status_fd.release(), kFdFlags);
  stdin_ = io.wrapOutputFd(proc.stdin_fd.release(), kFdFlags);
  stdout_ = Output{io.wrapInputFd(proc.stdout_fd.release(), kFdFlags),
                   kj::heapArray<kj::byte>(kChunkBytes),
                   config.max_output_bytes,
                   0,
                   false,
                   true};
  terminal_ = kj::mv(proc.terminal_fd);
  if (terminal_.get() < 0) {
    stderr_ = Output{io.wrapInputFd(proc.stderr_fd.release(), kFdFlags),
                     kj::heapArray<kj::byte>(kChunkBytes),
                     kStderrCapBytes,
                     0,
                     false,
                     false};
  }

  timeout_task_ = after_from_now(services_.timer, timeout_ms * kj::MILLISECONDS)
                      .then([this]() {
                        result_.timed_out = true;
                        kill_tree();
                      })
                      .eagerlyEvaluate(nullptr);
  auto both = kj::heapArrayBuilder<kj::Promise<void>>(2);
  both.add(pump(stdout_));
  if (stderr_.in) both.add(pump(stderr_));  // a terminal has one output
  pumps_ = kj::joinPromises(both.finish()).fork();
  done_ = exited.then([this]() { return drain_after_exit(); }).then([this]() { finish(); }).fork();
}

kj::Promise<void> StreamProcess::wait_for_exit(pid_t pid) {
  return services_.reaper.wait_for_exit(pid)
      .then([this](ExitInfo e) {
        exit_ = e;
        exited_ = true;
        return read_handler_status(*status_stream_);
      })
      .then([this](kj::Maybe<int> status) { handler_status_ = status; });
}

kj::Promise<void> StreamProcess::drain_after_exit() {
  // The tree is gone, so the pipes reach EOF; what is left is the sink taking the rest.
  auto& pumps = KJ_ASSERT_NONNULL(pumps_);
  return pumps.addBranch().exclusiveJoin(services_.timer.afterDelay(kSinkGrace).then([this]() {
    result_.error =
        "the output sink did not take the command's output in time; the rest "
        "was dropped";
  }));
}

void StreamProcess::finish() {
  timeout_task_ = nullptr;
  result_.duration_ns = now_ns() - start_ns_;
  result_.stdout_data.truncated = stdout_.truncated;
  result_.stderr_data.truncated = stderr_.truncated;
  apply_exit(exit_, handler_status_, result_);
  apply_stats(cgroup_->read_stats(), &exit_, result_);
  cgroup_ = nullptr;  // removes it now, not when the caller drops the Process
  ended_ = true;
}

void StreamProcess::kill_tree() {
  if (exited_ || !cgroup_) return;
  if (pid_ > 0) kill(pid_, SIGKILL);  // the pid namespace's init: its death ends the namespace
  cgroup_->kill_all();
}

kj::Promise<void> StreamProcess::pump(Output& out) {
  // evalNow: kj's fd stream may throw from tryRead itself when read() fails at once (a pty's
  // master reads EIO once the terminal's last user closed it), not only through the promise.
  return kj::evalNow([&out]() { return out.in->tryRead(out.buffer.begin(), 1, out.buffer.size()); })
      .then(
          [this, &out](size_t n) -> kj::Promise<void> {
            if (n == 0) return kj::READY_NOW;
            size_t room = out.cap - std::min(out.cap, out.sent);
            size_t keep = std::min<size_t>(room, n);
            out.sent += keep;
            kj::Promise<void> sent = keep > 0 ? send(out, keep) : kj::READY_NOW;
            if (keep < n && !out.truncated) {
              out.truncated = true;
              if (out.is_stdout) {
                // As invoke does: stdout over its cap ends the command.
                result_.limit_exceeded = "output";
                kill_tree();
                return sent;
              }
            }
            // Stderr past its cap is read and dropped, so the command never blocks on it.
            return sent.then([this, &out]() { return pump(out); });
          },
          [](kj::Exception&&) {
            // A read error ends this output like EOF; the exit status still tells.
          });
}

kj::Promise<void> StreamProcess::send(Output& out, size_t size) {
  if (sink_failed_) return kj::READY_NOW;
  auto data = kj::arrayPtr(out.buffer.begin(), size);
  // setData copies into the message, so the buffer is free for the next read right away.
  kj::Promise<void> sent = nullptr;
  if (out.is_stdout) {
    auto request = sink_.stdoutRequest(capnp::MessageSize{size / sizeof(capnp::word) + 8, 0});
    request.setData(data);
    sent = request.send();
  } else {
    auto request = sink_.stderrRequest(capnp::MessageSize{size / sizeof(capnp::word) + 8, 0});
    request.setData(data);
    sent = request.send();
  }
  // A sink that failed or went away: keep draining (dropping) so the command does not block.
  return sent.catch_([this](kj::Exception&&) { sink_failed_ = true; });
}

kj::Promise<void> StreamProcess::write(WriteContext context) {
  // A write the command never reads must not keep the Process alive after the caller let go.
  context.allowCancellation();
  KJ_REQUIRE(!stdin_closing_, "Process.write: stdin is already closed");
  KJ_REQUIRE(!stdin_failed_, "Process.write: the command no longer reads its stdin");
  uint64_t size = context.getParams().getData().size();
  KJ_REQUIRE(stdin_queued_bytes_ + size <= kMaxQueuedStdinBytes,
             "Process.write: too much stdin queued; wait for earlier writes to complete",
             stdin_queued_bytes_, size);
  // A copy: the write may outlive the call (queued behind others, or the call cancelled).
  auto data = kj::heapArray<kj::byte>(context.getParams().getData());
  context.releaseParams();
  return queue_stdin(kj::mv(data));
}

kj::Promise<void> StreamProcess::queue_stdin(kj::Array<kj::byte> data) {
  uint64_t size = data.size();
  stdin_queued_bytes_ += size;
  auto written =
      kj::mv(stdin_tail_)
          .then([this, data = kj::mv(data)]() mutable -> kj::Promise<void> {
            KJ_REQUIRE(!stdin_failed_, "Process.write: the command no longer reads its stdin");
            auto pending = stdin_->write(data.begin(), data.size());
            return pending.attach(kj::mv(data));
          })
          .then(
              [this, size]() -> kj::Promise<void> {
                stdin_queued_bytes_ -= size;
                return kj::READY_NOW;
              },
              [this, size](kj::Exception&& e) -> kj::Promise<void> {
                stdin_queued_bytes_ -= size;
                stdin_failed_ = true;
                return kj::mv(e);
              })
          .fork();
  stdin_tail_ = written.addBranch().catch_([](kj::Exception&&) {});
  return written.addBranch();
}

kj::Promise<void> StreamProcess::closeStdin(CloseStdinContext) {
  if (stdin_closing_) return kj::READY_NOW;
  stdin_closing_ = true;
  if (terminal_.get() >= 0) {
    // Closing the master would hang the terminal up (SIGHUP), not end the input: the end of
    // file is a character typed after the queued input.
    int eof = ended_ ? -1 : terminal_eof_char(terminal_.get());
    if (eof < 0) return kj::READY_NOW;
    auto data = kj::heapArray<kj::byte>(1);
    data[0] = static_cast<kj::byte>(eof);
    return queue_stdin(kj::mv(data));
  }
  // After the queued writes; dropping the stream closes the pipe, the command reads EOF.
  auto closed = kj::mv(stdin_tail_).then([this]() { stdin_ = nullptr; }).fork();
  stdin_tail_ = closed.addBranch();
  return closed.addBranch();
}

kj::Promise<void> StreamProcess::signal(SignalContext context) {
  int sig = context.getParams().getSignal();
  KJ_REQUIRE(sig >= 1 && sig <= kMaxSignal, "Process.signal: signal must be 1 to 64", sig);
  if (exited_ || !cgroup_) return kj::READY_NOW;  // already over: nothing to signal
  if (sig == SIGKILL) {
    kill_tree();
  } else {
    // Every process of the tree; the namespace init ignores it (it has no handlers).
    cgroup_->signal_all(sig);
  }
  return kj::READY_NOW;
}

kj::Promise<void> StreamProcess::resize(ResizeContext context) {
  KJ_REQUIRE(terminal_.get() >= 0, "Process.resize: the command has no terminal");
  auto params = context.getParams();
  if (ended_) return kj::READY_NOW;  // nothing left to see the size
  resize_terminal(terminal_.get(), params.getWidth(), params.getHeight());
  return kj::READY_NOW;
}

kj::Promise<void> StreamProcess::wait(WaitContext context) {
  // A caller that gives up waiting must not keep the command alive (capnp 0.9 calls are not
  // cancelled unless allowed), so dropping the Process can end it.
  context.allowCancellation();
  auto& done = KJ_ASSERT_NONNULL(done_);
  return done.addBranch().then(
      [this, context]() mutable { fill_result(result_, context.getResults().initResult()); });
}

}  // namespace wisp::agent
