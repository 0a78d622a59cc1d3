// execStream (api/agent.capnp): a command in the handler sandbox, like an exec-mode invoke
// (same sandbox, cgroup limits, wall-clock timeout killing the whole tree, output caps), but
// interactive: stdin is a pipe fed by Process.write/closeStdin, and stdout/stderr go to the
// caller's OutputSink as they are written, through Cap'n Proto streaming calls (flow control:
// a slow sink stalls only this command's pipes, which stalls the command, never the agent).
//
// On a terminal (Handler.terminal, agent/sandbox_terminal.h): stdin and stdout are the pty's
// master (one output, to the sink's stdout, capped as stdout), closeStdin types the terminal's
// end of file, and resize sets its size.
//
// Lifetime: the Process capability owns the command. Dropping it while the command runs kills
// the tree; the result is kept until it is dropped, for any number of wait() calls.
#pragma once

#include <capnp/capability.h>
#include <kj/async-io.h>

#include "agent/invocation.h"
#include "api/agent.capnp.h"

namespace wisp::agent {

class StreamProcess final : public api::Process::Server {
 public:
  StreamProcess(AgentServices& services, api::OutputSink::Client sink);
  ~StreamProcess();
  KJ_DISALLOW_COPY(StreamProcess);

  // Spawns the command (throws kj::Exception when the agent cannot start it at all).
  void start(const HandlerConfig& config, uint64_t timeout_ms);

 protected:
  kj::Promise<void> write(WriteContext context) override;
  kj::Promise<void> closeStdin(CloseStdinContext context) override;
  kj::Promise<void> signal(SignalContext context) override;
  kj::Promise<void> wait(WaitContext context) override;
  kj::Promise<void> resize(ResizeContext context) override;

 private:
  // One of the command's output pipes and what has gone to the sink from it.
  struct Output {
    kj::Own<kj::AsyncInputStream> in;
    kj::Array<kj::byte> buffer;
    uint64_t cap = 0;
    uint64_t sent = 0;
    bool truncated = false;
    bool is_stdout = false;
  };

  kj::Promise<void> pump(Output& out);
  kj::Promise<void> queue_stdin(kj::Array<kj::byte> data);
  kj::Promise<void> send(Output& out, size_t size);
  kj::Promise<void> wait_for_exit(pid_t pid);
  kj::Promise<void> drain_after_exit();
  void finish();
  void kill_tree();

  AgentServices& services_;
  api::OutputSink::Client sink_;
  bool sink_failed_ = false;  // a streaming call failed: later output is read and dropped

  kj::Own<Cgroup> cgroup_;
  pid_t pid_ = -1;
  bool exited_ = false;  // the namespace init was reaped: nothing of the tree is left
  bool ended_ = false;   // the result is final
  ExitInfo exit_;
  kj::Maybe<int> handler_status_;
  uint64_t start_ns_ = 0;
  InvocationResult result_;

  // The streams are declared before the promises that use them, so they outlive them.
  kj::Own<kj::AsyncInputStream> status_stream_;
  kj::AutoCloseFd terminal_;  // the pty's master (ioctls), or none
  kj::Own<kj::AsyncOutputStream> stdin_;
  Output stdout_, stderr_;

  // Writes are queued one after another; a failed one fails the later ones.
  kj::Promise<void> stdin_tail_ = kj::READY_NOW;
  uint64_t stdin_queued_bytes_ = 0;
  bool stdin_closing_ = false;
  bool stdin_failed_ = false;

  kj::Promise<void> timeout_task_ = nullptr;
  kj::Maybe<kj::ForkedPromise<void>> pumps_;
  kj::Maybe<kj::ForkedPromise<void>> done_;
};

}  // namespace wisp::agent
