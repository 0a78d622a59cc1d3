// Destroys clone VMMs off serve's loop: a VMM's kill waits up to VmmChild::kTermGrace for it to
// exit, and its runtime directory's removal walks a tree; the loop must not block on either.
// A VM's admission ticket is given back only once its VMM is gone, so the memory budget counts
// what the host really holds.
//
// Threads: dispose() on the loop thread that made the Reaper; the work on kThreads threads of
// its own. The destructor finishes every queued disposal (nothing survives serve's exit).
#pragma once

#include <kj/async.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "manager/service/admission.h"
#include "manager/service/clone_start.h"

namespace wisp::service {

class Reaper {
 public:
  Reaper();
  ~Reaper();
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // What must outlive a clone's VMM (its connections: Clone::~Clone).
  struct Kept {
    virtual ~Kept() noexcept(false) = default;
  };
  // Kills and reaps `process`, removes its runtime directory, then drops `ticket` (may be
  // null) and `kept` (may be null) on this loop.
  void dispose(std::unique_ptr<CloneProcess> process, kj::Maybe<kj::Own<Ticket>> ticket,
               kj::Maybe<kj::Own<Kept>> kept = nullptr);
  // Disposals queued or running.
  size_t pending() const { return pending_; }

 private:
  static constexpr int kThreads = 2;
  struct Job {
    std::unique_ptr<CloneProcess> process;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> done;
  };
  class Errors : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  std::vector<std::thread> threads_;
  size_t pending_ = 0;  // loop thread only
  Errors errors_;
  kj::TaskSet tasks_{errors_};
};

}  // namespace wisp::service
