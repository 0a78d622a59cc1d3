// Blocking manager work that is not a template build, off serve's loop: a call served from a
// template's CRIU image (a cold boot and a CRIU restore: seconds) and the background re-make
// of its VM snapshot (manager/template_rebuild.h). Each job runs on a thread of its own; its
// result comes back to the loop through a cross-thread fulfiller (as TemplateBuilds' do).
//
// Threads: run() on the loop thread; each job on its own thread. Cancelling a job's promise
// cancels its manager::Cancellation (its VM is killed); the destructor cancels the jobs still
// running and joins every thread (serve's shutdown kills their VMs).
#pragma once

#include <kj/async.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "manager/cancellation.h"
#include "manager/service/job_threads.h"

namespace wisp::service {

class ThreadJobs {
 public:
  // Out of line: Shared is complete only in the .cc.
  ThreadJobs();
  ~ThreadJobs();  // cancels the jobs still running, joins every thread (JobThreads)
  ThreadJobs(const ThreadJobs&) = delete;
  ThreadJobs& operator=(const ThreadJobs&) = delete;

  // Runs `job` on a new thread. The promise fails with an API error: "vm-failed: ..." when
  // the job threw manager::VmFailed, else "ERROR_WORD: ..." with the exception's message.
  template <typename T>
  kj::Promise<T> run(std::function<T(manager::Cancellation*)> job, const std::string& error_word) {
    auto out = std::make_shared<std::optional<T>>();
    return run_void([out, job = std::move(job)](manager::Cancellation* c) { *out = job(c); },
                    error_word)
        .then([out]() -> T { return std::move(**out); });
  }
  // Jobs whose thread has not finished.
  size_t running();

  struct Shared;

 private:
  kj::Promise<void> run_void(std::function<void(manager::Cancellation*)> job,
                             const std::string& error_word);
  JobThreads<Shared> threads_;
};

}  // namespace wisp::service
