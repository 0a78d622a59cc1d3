// One process of a container task, run in the task's wisp sandbox through Sandbox.execStream
// (api/wisp.capnp): the container's own process (exec id "") or one that `ctr task exec` added.
// Its stdout and stderr go to containerd's FIFOs as the guest writes them (on a terminal, its
// one output goes to the stdout FIFO: containerd gives no stderr FIFO then), its stdin FIFO is
// copied to Process.write (end of file -> Process.closeStdin), Kill sends Process.signal, and
// it has ended when Process.wait answers: exit code, or 128 + the signal that ended it.
// Single-threaded: lives on the shim's KJ event loop.
#pragma once

#include <time.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "api/wisp.capnp.h"
#include "shim/fifo_io.h"
#include "shim/oci_process.h"
#include "shim/oci_sandbox.h"

namespace wisp::shim {

// containerd.v1.types.Status (api/types/task/task.proto).
enum class TaskStatus : int { kCreated = 1, kRunning = 2, kStopped = 3, kPaused = 4 };

struct TaskStdio {
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;  // Create's or Exec's `terminal`: the process runs on a pseudo-terminal
};

// How the guest reported a process's end (InvokeResponse), as containerd's exit status:
// exitCode, or 128 + signal; 255 for a process that could not run (`error`).
uint32_t exit_status_of(api::serve::InvokeResponse::Reader r);

class GuestProcess {
 public:
  // `who` names it in the log ("task ID" or "task ID exec EXEC").
  GuestProcess(std::string exec_id, std::string who, TaskStdio stdio, OciProcess process,
               kj::LowLevelAsyncIoProvider& io);
  ~GuestProcess() noexcept(false);

  const std::string& exec_id() const { return exec_id_; }
  const TaskStdio& stdio() const { return stdio_; }
  // kCreated, kRunning (also while starting) or kStopped.
  TaskStatus status() const { return status_; }
  uint32_t exit_status() const { return exit_status_; }
  const timespec& exited_at() const { return exited_at_; }
  bool oom() const { return oom_; }

  // Adds a callback run after the process ended and its output was written (the TaskExit
  // event; the container's other processes going with it).
  void on_exit(std::function<void()> callback) { on_exit_.push_back(std::move(callback)); }

  // Runs the process in `sandbox` (in the container's own root when `root` is given);
  // resolves once it runs (execStream answered), rejects with wisp::Error (not created, or
  // serve refused it: the message says why).
  kj::Promise<void> start(api::serve::Sandbox::Client sandbox, const OciSandbox* root = nullptr);
  // Resolves when the process has ended (at once if it has).
  kj::Promise<void> wait();
  // Sends `signal` to the process; before Start, ends it with 128 + signal. False when it had
  // ended already.
  bool kill(int signal);
  // Closes its stdin (containerd's CloseIO) once what was written to the FIFO has been passed
  // on (its end of file), or after a grace time.
  void close_stdin();
  // The terminal's size (ResizePty): before Start it becomes the initial size; false for a
  // process without a terminal (runc's shim ignores those too).
  bool resize(uint16_t width, uint16_t height);

 private:
  void running(api::serve::Process::Client process);
  void send_signal(int signal);
  kj::Promise<void> ended(uint32_t exit_status);
  void finish(uint32_t exit_status);

  std::string exec_id_;
  std::string who_;
  TaskStdio stdio_;
  OciProcess process_;
  kj::LowLevelAsyncIoProvider& io_;
  TaskStatus status_ = TaskStatus::kCreated;
  bool starting_ = false;
  uint32_t exit_status_ = 0;
  timespec exited_at_{};
  bool oom_ = false;
  int kill_signal_ = 0;     // the last signal sent, for an end the guest does not explain
  int pending_signal_ = 0;  // a Kill while execStream was in flight
  bool stdin_closed_ = false;
  uint16_t console_width_ = 0;  // the terminal's size: ResizePty's, else process.consoleSize
  uint16_t console_height_ = 0;
  bool resize_after_start_ = false;  // a ResizePty came while execStream was in flight
  std::vector<std::function<void()>> on_exit_;
  kj::Own<OutputFifos> output_;
  kj::Maybe<api::serve::Process::Client> process_client_;
  kj::Own<InputFifo> stdin_;
  kj::Own<kj::PromiseFulfillerPair<void>> ended_ =
      kj::heap<kj::PromiseFulfillerPair<void>>(kj::newPromiseAndFulfiller<void>());
  kj::ForkedPromise<void> ended_fork_ = ended_->promise.fork();
  kj::Promise<void> stdin_pump_ = kj::READY_NOW;
  kj::Promise<void> waiting_ = kj::READY_NOW;
  // Signals and closeStdin in flight: kept to their end (dropping a call's promise would
  // cancel it).
  class LogErrors final : public kj::TaskSet::ErrorHandler {
   public:
    explicit LogErrors(const std::string& who) : who_(who) {}
    void taskFailed(kj::Exception&& e) override;

   private:
    const std::string& who_;
  };
  LogErrors log_errors_{who_};
  kj::TaskSet calls_{log_errors_};
};

}  // namespace wisp::shim
