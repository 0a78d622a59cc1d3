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

ThreadJobs::ThreadJobs() = default;
ThreadJobs::~ThreadJobs() = default;

size_t ThreadJobs::running() {
  threads_.join_finished();
  return threads_.size();
}

kj::Promise<void> ThreadJobs::run_void(std::function<void(manager::Cancellation*)> job,
                                       const std::string& error_word, kj::Promise<void> held) {
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
  threads_.add(s, std::move(t));
  // Forked: the branch below is the caller's; another keeps `held` when that one is dropped
  // before the thread ends.
  auto ended = kj::heap<kj::ForkedPromise<void>>(paf.promise.fork());
  auto result = ended->addBranch();
  return result
      .then([s] {
        std::string error;
        {
          std::lock_guard<std::mutex> lock(s->mu);
          error = s->error;
        }
        if (!error.empty()) throw_api_error(error);
      })
      .attach(kj::defer([this, alive = std::weak_ptr<int>(alive_), s, ended = kj::mv(ended),
                         held = kj::mv(held)]() mutable {
        s->cancel.cancel();
        bool done;
        {
          std::lock_guard<std::mutex> lock(s->mu);
          done = s->done;
        }
        // Done (or this ThreadJobs gone): `held` goes with this lambda. Else it waits for the
        // thread's end.
        if (!done && !alive.expired())
          lingering_.add(ended->addBranch().attach(kj::mv(held), kj::mv(ended)));
      }));
}

}  // namespace wisp::service
