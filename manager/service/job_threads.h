// The threads of serve's blocking jobs (template_builds.h, thread_jobs.h): each job runs on a
// thread of its own, with state it shares with serve's loop. S has a std::mutex `mu`, a bool
// `done` (guarded by mu) the thread sets as its last step, and a manager::Cancellation
// `cancel`. Finished threads are joined as new jobs start; the destructor cancels the jobs
// still running (their VMs are killed) and joins every thread.
//
// Threads: serve's loop thread.
#pragma once

#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace wisp::service {

template <typename S>
class JobThreads {
 public:
  JobThreads() = default;
  ~JobThreads() {
    for (auto& [s, t] : threads_) {
      s->cancel.cancel();
      t.join();
    }
  }
  JobThreads(const JobThreads&) = delete;
  JobThreads& operator=(const JobThreads&) = delete;

  // A new job's thread and its shared state (finished ones are joined first).
  void add(std::shared_ptr<S> s, std::thread t) {
    join_finished();
    threads_.emplace_back(std::move(s), std::move(t));
  }
  // Joins the threads whose job has finished.
  void join_finished() {
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
  // Threads not joined yet.
  size_t size() const { return threads_.size(); }

 private:
  std::vector<std::pair<std::shared_ptr<S>, std::thread>> threads_;
};

}  // namespace wisp::service
