#include "manager/service/thread_jobs.h"

#include <mutex>

#include "base/error.h"
#include "manager/agent_vm.h"
#include "manager/service/clone.h"  // throw_api_error

namespace wisp::service {

struct ThreadJobs::Shared {
  std::mutex mu;
  bool done = false;                                    // guarded by mu
  std::string error;                                    // guarded by mu
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;  // guarded by mu
  manager::Cancellation cancel;
};

ThreadJobs::~ThreadJobs() {
  for (auto& [s, t] : threads_) {
    s->cancel.cancel();
    t.join();
  }
}

void ThreadJobs::join_finished() {
  for (auto it = threads_.begin(); it != threads_.end();) {
    bool done;
    {
      std::lock_guard<std::mutex> lock(it->first->mu);
      done = it->first->done;
    }
    if (done) {
      it->second.join();  // `done` is its last step: this returns at once
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t ThreadJobs::running() {
  join_finished();
  return threads_.size();
}

kj::Promise<void> ThreadJobs::run_void(std::function<void(manager::Cancellation*)> job,
                                       const std::string& error_word) {
  join_finished();
  auto s = std::make_shared<Shared>();
  // Made before the thread starts: the job may finish before this function returns.
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  s->wake = kj::mv(paf.fulfiller);
  std::thread t([s, job = std::move(job), error_word] {
    std::string error;
    try {
      job(&s->cancel);
    } catch (const manager::VmFailed& e) {
      error = std::string("vm-failed: ") + e.what();
    } catch (const std::exception& e) {
      error = error_word + ": " + e.what();
    }
    std::lock_guard<std::mutex> lock(s->mu);
    s->error = error;
    s->done = true;
    s->wake->fulfill();
    s->wake = nullptr;
  });
  threads_.emplace_back(s, std::move(t));
  return paf.promise
      .then([s] {
        std::string error;
        {
          std::lock_guard<std::mutex> lock(s->mu);
          error = s->error;
        }
        if (!error.empty()) throw_api_error(error);
      })
      .attach(kj::defer([s] { s->cancel.cancel(); }));
}

}  // namespace wisp::service
