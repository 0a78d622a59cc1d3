#include "agent/exec_invocation.h"

#include <kj/debug.h>
#include <signal.h>

#include "base/clock.h"

namespace wisp::agent {
namespace {

constexpr uint kFdFlags =
    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC;

// Everything one invocation owns; lives until its promise resolves or is cancelled.
struct ExecRun {
  explicit ExecRun(AgentServices& s) : services(s) {}
  ~ExecRun() {
    // Cancelled (e.g. the host hung up): do not leave the tree running.
    if (!exited && cgroup && pid > 0) {
      kill(pid, SIGKILL);
      cgroup->kill_all();
      services.background.add(
          services.reaper.wait_for_exit(pid).ignoreResult().attach(kj::mv(cgroup)));
    }
  }
  KJ_DISALLOW_COPY(ExecRun);

  void kill_tree() {
    if (pid > 0)
      kill(pid, SIGKILL);  // the pid namespace's init: its death takes the namespace with it
    cgroup->kill_all();
  }

  AgentServices& services;
  kj::Own<Cgroup> cgroup;
  HeldNamespaces namespaces;
  pid_t pid = -1;
  bool exited = false;
  ExitInfo exit;
  kj::Maybe<int> handler_status;
  kj::Own<kj::AsyncInputStream> status_stream;
  uint64_t start_ns = 0;
  kj::Own<kj::AsyncOutputStream> stdin_stream;
  kj::Own<kj::AsyncInputStream> stdout_stream;
  kj::Own<kj::AsyncInputStream> stderr_stream;
  kj::Promise<void> stdin_task = nullptr;
  kj::Promise<void> timeout_task = nullptr;
  InvocationResult result;
};

}  // namespace

kj::Promise<InvocationResult> run_exec_invocation(AgentServices& services,
                                                  const HandlerConfig& config,
                                                  kj::ArrayPtr<const kj::byte> payload,
                                                  uint64_t timeout_ms,
                                                  kj::Maybe<StartedSandbox> preforked) {
  auto run = kj::heap<ExecRun>(services);
  ExecRun* r = run.get();
  r->start_ns = now_ns();
  StartedSandbox started;
  KJ_IF_MAYBE (p, preforked) {
    started = kj::mv(*p);
  } else {
    started.cgroup = kj::heap<Cgroup>(services.next_cgroup_name("exec"), config.cgroup);
    started.proc = spawn_sandboxed(config.sandbox, started.cgroup->dir_fd());
    started.namespaces = hold_namespaces(started.proc.pid);
    started.exit = services.reaper.wait_for_exit(started.proc.pid);
  }
  r->cgroup = kj::mv(started.cgroup);
  r->namespaces = kj::mv(started.namespaces);
  r->result.preforked = started.preforked;
  SandboxedProcess& proc = started.proc;
  r->pid = proc.pid;
  auto& io = services.io;
  r->status_stream = io.wrapInputFd(proc.status_fd.release(), kFdFlags);
  auto exited = kj::mv(started.exit)
                    .then([r](ExitInfo e) {
                      r->exit = e;
                      r->exited = true;
                      return read_handler_status(*r->status_stream);
                    })
                    .then([r](kj::Maybe<int> status) { r->handler_status = status; });

  r->stdin_stream = io.wrapOutputFd(proc.stdin_fd.release(), kFdFlags);
  r->stdout_stream = io.wrapInputFd(proc.stdout_fd.release(), kFdFlags);
  r->stderr_stream = io.wrapInputFd(proc.stderr_fd.release(), kFdFlags);

  // A handler that ignores its stdin makes this write fail with EPIPE: not an error.
  r->stdin_task = r->stdin_stream->write(payload.begin(), payload.size())
                      .then([r]() { r->stdin_stream = nullptr; },
                            [r](kj::Exception&&) { r->stdin_stream = nullptr; })
                      .eagerlyEvaluate(nullptr);
  r->timeout_task = after_from_now(services.timer, timeout_ms * kj::MILLISECONDS)
                        .then([r]() {
                          r->result.timed_out = true;
                          r->kill_tree();
                        })
                        .eagerlyEvaluate(nullptr);

  auto out = read_capped(*r->stdout_stream, r->result.stdout_data, config.max_output_bytes,
                         /*keep_draining=*/false, [r]() {
                           r->result.limit_exceeded = "output";
                           r->kill_tree();
                         });
  auto err = read_capped(*r->stderr_stream, r->result.stderr_data, kStderrCapBytes,
                         /*keep_draining=*/true, []() {});

  auto parts = kj::heapArrayBuilder<kj::Promise<void>>(3);
  parts.add(kj::mv(exited));
  parts.add(kj::mv(out));
  parts.add(kj::mv(err));
  return kj::joinPromises(parts.finish())
      .then([r]() {
        r->timeout_task = nullptr;
        r->stdin_task = nullptr;
        r->stdin_stream = nullptr;
        r->result.duration_ns = now_ns() - r->start_ns;
        apply_exit(r->exit, r->handler_status, r->result);
        apply_stats(r->cgroup->read_stats(), &r->exit, r->result);
        // Tearing the sandbox down (its namespaces, its cgroup's removal) waits until the
        // result is out: on the guest's one vCPU it would otherwise run first.
        r->services.remains.drop_later(kj::mv(r->namespaces), kj::mv(r->cgroup), kAfterResultDelay);
        return kj::mv(r->result);
      })
      .attach(kj::mv(run));
}

}  // namespace wisp::agent
