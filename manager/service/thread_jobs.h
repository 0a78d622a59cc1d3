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
  // `held` (an admission ticket) is dropped on the loop once the job's thread has ended, also
  // when the promise is dropped first: a cancelled job is still killing its VM until then.
  template <typename T, typename H>
  kj::Promise<T> run(std::function<T(manager::Cancellation*)> job, const std::string& error_word,
                     kj::Own<H> held) {
    auto out = std::make_shared<std::optional<T>>();
    return run_void([out, job = std::move(job)](manager::Cancellation* c) { *out = job(c); },
                    error_word, kj::Promise<void>(kj::READY_NOW).attach(kj::mv(held)))
        .then([out]() -> T { return std::move(**out); });
  }
  template <typename T>
  kj::Promise<T> run(std::function<T(manager::Cancellation*)> job, const std::string& error_word) {
    return run(std::move(job), error_word, kj::Own<int>());
  }
  // Jobs whose thread has not finished.
  size_t running();

  struct Shared;

 private:
  // `held`: a promise that owns what `run` was given to hold.
  kj::Promise<void> run_void(std::function<void(manager::Cancellation*)> job,
                             const std::string& error_word, kj::Promise<void> held);
  JobThreads<Shared> threads_;
  class IgnoreErrors : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  IgnoreErrors lingering_errors_;
  // What cancelled jobs hold until their threads end; destroyed (and so released) before
  // threads_ joins the threads.
  kj::TaskSet lingering_{lingering_errors_};
  // Expires first when this goes: a promise dropped after that releases what it holds at once.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace wisp::service
