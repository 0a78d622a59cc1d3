// worker mode: one long-lived sandboxed process per handler name that has done its expensive
// initialisation once and then answers framed requests on stdin/stdout
// (api/worker_protocol.md). Calls to one worker are serialized. A worker that dies, overruns
// its timeout or its output cap is killed and stays dead until startWorker runs again.
#pragma once

#include <kj/async.h>
#include <kj/common.h>
#include <kj/function.h>
#include <kj/refcount.h>

#include "agent/invocation.h"

namespace wisp::agent {

// The pipes between the agent and a worker, named by inode: a CRIU image of the worker
// refers to them so, and its restore reconnects new ones in their place (criu_worker.h).
struct WorkerPipeInodes {
  uint64_t stdin_pipe = 0, stdout_pipe = 0, stderr_pipe = 0, status_pipe = 0;
};

class Worker final : public kj::Refcounted {
 public:
  // Spawns the process now; throws kj::Exception when that is impossible.
  Worker(AgentServices& services, HandlerConfig config);
  // Adopts a worker restored from a CRIU image (criu_worker.h): `process` is its namespace
  // init (a child of the agent now) with the agent's ends of its new pipes, already in
  // `cgroup`.
  Worker(AgentServices& services, HandlerConfig config, kj::Own<Cgroup> cgroup,
         SandboxedProcess process);
  ~Worker();
  KJ_DISALLOW_COPY(Worker);

  const HandlerConfig& config() const { return config_; }
  bool alive() const { return exit_->alive; }
  // Kills the process; pending and later calls fail with an error.
  void stop() { kill_tree(); }

  // Queues one call. `payload` must stay valid until the promise resolves or is dropped. The
  // promise holds a reference, so stopWorker during a call is safe (the call fails).
  kj::Promise<InvocationResult> invoke(kj::ArrayPtr<const kj::byte> payload, uint64_t timeout_ms);

  // Queues the "resumed" notice (worker_frame.h) behind any call in progress, so it never
  // lands inside a request. Resolves once written; a worker that is gone or does not read is
  // left alone (its next call reports it).
  kj::Promise<void> notify_resumed();

  // Runs `task` when no call is in progress, and holds later calls until it is done (a
  // checkpoint must not catch a request half-way through the pipes).
  kj::Promise<void> run_between_calls(kj::Function<kj::Promise<void>()> task);

  pid_t pid() const { return pid_; }
  const WorkerPipeInodes& pipe_inodes() const { return pipe_inodes_; }

 private:
  struct Call;
  kj::Promise<InvocationResult> invoke_now(kj::ArrayPtr<const kj::byte> payload,
                                           uint64_t timeout_ms);
  kj::Promise<void> exchange_frames(Call& call);
  // Kills the tree, waits for the exit, and finishes `call` as a failure with `error`.
  kj::Promise<InvocationResult> fail_call(kj::Own<Call> call, std::string error);
  kj::Promise<void> pump_stderr();
  void kill_tree();
  void adopt(SandboxedProcess proc);

  AgentServices& services_;
  WorkerPipeInodes pipe_inodes_;
  HandlerConfig config_;
  kj::Own<Cgroup> cgroup_;
  pid_t pid_ = -1;
  // Written when the process ends, which may be after this Worker is gone: shared with the
  // exit continuation.
  struct ExitState : public kj::Refcounted {
    bool alive = true;
    ExitInfo exit;
    kj::Maybe<int> handler_status;
    kj::Own<kj::AsyncInputStream> status_pipe;
  };
  kj::Own<ExitState> exit_;
  kj::ForkedPromise<void> exited_;
  kj::Own<kj::AsyncOutputStream> stdin_;
  kj::Own<kj::AsyncInputStream> stdout_;
  kj::Own<kj::AsyncInputStream> stderr_;
  CapturedOutput* call_stderr_ = nullptr;  // where stderr goes during a call
  kj::Array<kj::byte> stderr_buffer_;
  kj::Promise<void> stderr_task_ = nullptr;
  kj::Promise<void> queue_tail_ = kj::READY_NOW;  // resolves when the last queued call ends
  bool in_call_ = false;  // a call is exchanging frames (cancelling it desynchronizes them)
};

}  // namespace wisp::agent
