#include "manager/service/reaper.h"

namespace wisp::service {

Reaper::Reaper() {
  for (int i = 0; i < kThreads; ++i) threads_.emplace_back([this] { run(); });
}

Reaper::~Reaper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void Reaper::dispose(std::unique_ptr<CloneProcess> process, kj::Maybe<kj::Own<Ticket>> ticket,
                     kj::Maybe<kj::Own<Kept>> kept) {
  // SIGTERM (VmmChild::kill_now) on the thread, not SIGKILL here: the jail's supervisor then
  // removes the VM's cgroup itself.
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{std::move(process), kj::mv(paf.fulfiller)});
  }
  cv_.notify_one();
  ++pending_;
  tasks_.add(paf.promise.attach(kj::mv(ticket), kj::mv(kept), kj::defer([this] { --pending_; })));
}

void Reaper::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and everything queued is done
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job.process.reset();
    job.done->fulfill();
  }
}

}  // namespace wisp::service
