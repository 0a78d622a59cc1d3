#include "agent/worker.h"

#include <kj/debug.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>

#include "agent/worker_frame.h"
#include "base/clock.h"

namespace wisp::agent {
namespace {

constexpr uint kFdFlags =
    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC;

uint64_t inode_of(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

struct Worker::Call {
  kj::ArrayPtr<const kj::byte> payload;
  std::array<uint8_t, kRequestHeaderBytes> request_header;
  std::array<uint8_t, kResponseHeaderBytes> response_header;
  uint64_t start_ns = 0;
  uint64_t cpu_start_ns = 0;
  InvocationResult result;
};

Worker::Worker(AgentServices& services, HandlerConfig config)
    : services_(services), config_(kj::mv(config)), exited_(nullptr) {
  cgroup_ = kj::heap<Cgroup>(services_.next_cgroup_name("worker"), config_.cgroup);
  // The worker is its namespace's init, so its tree can be checkpointed (criu_worker.h).
  config_.sandbox.handler_is_init = true;
  adopt(spawn_sandboxed(config_.sandbox, cgroup_->dir_fd()));
}

Worker::Worker(AgentServices& services, HandlerConfig config, kj::Own<Cgroup> cgroup,
               SandboxedProcess process)
    : services_(services), config_(kj::mv(config)), cgroup_(kj::mv(cgroup)), exited_(nullptr) {
  adopt(kj::mv(process));
}

void Worker::adopt(SandboxedProcess proc) {
  pid_ = proc.pid;
  pipe_inodes_.stdin_pipe = inode_of(proc.stdin_fd.get());
  pipe_inodes_.stdout_pipe = inode_of(proc.stdout_fd.get());
  pipe_inodes_.stderr_pipe = inode_of(proc.stderr_fd.get());
  pipe_inodes_.status_pipe = inode_of(proc.status_fd.get());
  exit_ = kj::refcounted<ExitState>();
  exit_->status_pipe = services_.io.wrapInputFd(proc.status_fd.release(), kFdFlags);
  exited_ = services_.reaper.wait_for_exit(pid_)
                .then([state = kj::addRef(*exit_)](ExitInfo e) mutable {
                  state->exit = e;
                  state->alive = false;
                  return read_handler_status(*state->status_pipe)
                      .then([state = kj::mv(state)](kj::Maybe<int> status) mutable {
                        state->handler_status = status;
                      });
                })
                .fork();
  stdin_ = services_.io.wrapOutputFd(proc.stdin_fd.release(), kFdFlags);
  stdout_ = services_.io.wrapInputFd(proc.stdout_fd.release(), kFdFlags);
  stderr_ = services_.io.wrapInputFd(proc.stderr_fd.release(), kFdFlags);
  stderr_buffer_ = kj::heapArray<kj::byte>(64 * 1024);
  stderr_task_ = pump_stderr().eagerlyEvaluate([](kj::Exception&&) {});
}

Worker::~Worker() {
  kill_tree();
  // The cgroup can go once the process is reaped; that may be after this object is gone.
  services_.background.add(exited_.addBranch().attach(kj::mv(cgroup_)));
}

void Worker::kill_tree() {
  if (exit_->alive && pid_ > 0) kill(pid_, SIGKILL);
  if (cgroup_) cgroup_->kill_all();
}

kj::Promise<void> Worker::pump_stderr() {
  return stderr_->tryRead(stderr_buffer_.begin(), 1, stderr_buffer_.size())
      .then([this](size_t n) -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        if (call_stderr_ != nullptr) {  // between calls, stderr is discarded
          CapturedOutput& out = *call_stderr_;
          size_t room = kStderrCapBytes - std::min(kStderrCapBytes, out.data.size());
          size_t keep = std::min(room, n);
          out.data.append(reinterpret_cast<const char*>(stderr_buffer_.begin()), keep);
          if (keep < n) out.truncated = true;
        }
        return pump_stderr();
      });
}

kj::Promise<InvocationResult> Worker::invoke(kj::ArrayPtr<const kj::byte> payload,
                                             uint64_t timeout_ms) {
  auto done = kj::newPromiseAndFulfiller<void>();
  auto previous = kj::mv(queue_tail_);
  queue_tail_ = kj::mv(done.promise);
  // Runs when this call ends or is cancelled, so the next one can go.
  auto release = kj::defer([this, f = kj::mv(done.fulfiller)]() mutable {
    call_stderr_ = nullptr;
    if (in_call_) {  // cancelled mid-exchange: the frames are out of step for good
      in_call_ = false;
      kill_tree();
    }
    f->fulfill();
  });
  return previous
      .then([this, payload, timeout_ms]() {
        in_call_ = true;
        return invoke_now(payload, timeout_ms);
      })
      .then([this](InvocationResult r) {
        in_call_ = false;
        return r;
      })
      .attach(kj::mv(release))
      .attach(kj::addRef(*this));  // outermost: released after `release` ran
}

kj::Promise<void> Worker::notify_resumed() {
  static constexpr std::array<uint8_t, kRequestHeaderBytes> kNotice = {0xff, 0xff, 0xff, 0xff};
  static_assert(kResumedNotice == 0xffffffff);
  auto done = kj::newPromiseAndFulfiller<void>();
  auto previous = kj::mv(queue_tail_);
  queue_tail_ = kj::mv(done.promise);
  auto release = kj::defer([f = kj::mv(done.fulfiller)]() mutable { f->fulfill(); });
  // Four bytes into an idle worker's empty pipe: one write, never left half done.
  return previous
      .then([this]() -> kj::Promise<void> {
        if (!exit_->alive) return kj::READY_NOW;
        return stdin_->write(kNotice.data(), kNotice.size());
      })
      .catch_([](kj::Exception&&) {})
      .attach(kj::mv(release))
      .attach(kj::addRef(*this));
}

kj::Promise<void> Worker::run_between_calls(kj::Function<kj::Promise<void>()> task) {
  auto done = kj::newPromiseAndFulfiller<void>();
  auto previous = kj::mv(queue_tail_);
  queue_tail_ = kj::mv(done.promise);
  auto release = kj::defer([f = kj::mv(done.fulfiller)]() mutable { f->fulfill(); });
  return previous.then([task = kj::mv(task)]() mutable { return task(); })
      .attach(kj::mv(release))
      .attach(kj::addRef(*this));
}

kj::Promise<InvocationResult> Worker::invoke_now(kj::ArrayPtr<const kj::byte> payload,
                                                 uint64_t timeout_ms) {
  auto call = kj::heap<Call>();
  call->payload = payload;
  call->start_ns = now_ns();
  call->cpu_start_ns = cgroup_->read_stats().cpu_time_ns;
  if (!exit_->alive) return fail_call(kj::mv(call), "worker " + config_.name + " is not running");
  if (payload.size() >= kResumedNotice)
    return fail_call(kj::mv(call), "payload too large for a frame");
  call_stderr_ = &call->result.stderr_data;

  Call* c = call.get();
  auto exchange = exchange_frames(*c).then(
      []() { return kj::Maybe<std::string>(nullptr); },
      [](kj::Exception&& e) {
        return kj::Maybe<std::string>(std::string(e.getDescription().cStr()));
      });
  auto timeout = after_from_now(services_.timer, timeout_ms * kj::MILLISECONDS).then([c]() {
    c->result.timed_out = true;
    return kj::Maybe<std::string>(std::string("worker timed out and was killed"));
  });
  return exchange.exclusiveJoin(kj::mv(timeout))
      .then([this, call = kj::mv(call)](
                kj::Maybe<std::string> failure) mutable -> kj::Promise<InvocationResult> {
        KJ_IF_MAYBE (message, failure) {
          return fail_call(kj::mv(call), kj::mv(*message));
        }
        call_stderr_ = nullptr;
        Call& c = *call;
        c.result.duration_ns = now_ns() - c.start_ns;
        CgroupStats stats = cgroup_->read_stats();
        stats.cpu_time_ns -= std::min(stats.cpu_time_ns, c.cpu_start_ns);
        apply_stats(stats, nullptr, c.result);
        return kj::mv(c.result);
      });
}

kj::Promise<void> Worker::exchange_frames(Call& c) {
  c.request_header = encode_request_header(static_cast<uint32_t>(c.payload.size()));
  auto header = kj::arrayPtr(reinterpret_cast<const kj::byte*>(c.request_header.data()),
                             c.request_header.size());
  return stdin_->write(header.begin(), header.size())
      .then([this, &c]() { return stdin_->write(c.payload.begin(), c.payload.size()); })
      .then([this, &c]() {
        return read_exactly(*stdout_, c.response_header.data(), c.response_header.size());
      })
      .then([this, &c]() -> kj::Promise<void> {
        ResponseHeader h = decode_response_header(c.response_header);
        c.result.status = h.status;
        if (h.length > config_.max_output_bytes) {
          c.result.limit_exceeded = "output";
          c.result.stdout_data.truncated = true;
          return KJ_EXCEPTION(FAILED, "worker result exceeds maxOutputBytes", h.length);
        }
        c.result.stdout_data.data.resize(h.length);
        return read_exactly(*stdout_, c.result.stdout_data.data.data(), h.length);
      });
}

kj::Promise<InvocationResult> Worker::fail_call(kj::Own<Call> call, std::string error) {
  kill_tree();
  return exited_.addBranch().then([this, call = kj::mv(call), error = kj::mv(error)]() mutable {
    call_stderr_ = nullptr;
    InvocationResult& r = call->result;
    r.error = kj::mv(error);
    r.stdout_data.data.clear();
    r.duration_ns = now_ns() - call->start_ns;
    apply_exit(exit_->exit, exit_->handler_status, r);
    CgroupStats stats = cgroup_->read_stats();
    stats.cpu_time_ns -= std::min(stats.cpu_time_ns, call->cpu_start_ns);
    apply_stats(stats, &exit_->exit, r);
    return kj::mv(r);
  });
}

}  // namespace wisp::agent
