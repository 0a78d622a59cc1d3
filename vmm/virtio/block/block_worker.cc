#include "vmm/virtio/block/block_worker.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <exception>
#include <future>

#include "base/error.h"

namespace wisp {

BlockWorker::BlockWorker() : done_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!done_fd_) throw_errno("virtio-blk: eventfd for I/O completions");
}

BlockWorker::~BlockWorker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BlockWorker::start(const std::function<void()>& on_start) {
  std::promise<void> ready;
  std::future<void> started = ready.get_future();
  thread_ = std::thread([this, &on_start, &ready] {
    pthread_setname_np(pthread_self(), "vmm-block");
    try {
      if (on_start) on_start();
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value();
    run();
  });
  try {
    started.get();
  } catch (...) {
    thread_.join();
    throw;
  }
  std::lock_guard lock(mu_);
  started_ = true;
}

void BlockWorker::submit(uint16_t head, Job job) {
  std::unique_lock lock(mu_);
  if (!started_) {
    lock.unlock();
    finish(head, job());
    return;
  }
  jobs_.emplace_back(head, std::move(job));
  work_cv_.notify_one();
}

void BlockWorker::run() {
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    auto [head, job] = std::move(jobs_.front());
    jobs_.pop_front();
    running_job_ = true;
    lock.unlock();
    uint32_t len = job();
    finish(head, len);
    lock.lock();
    running_job_ = false;
    if (jobs_.empty()) idle_cv_.notify_all();
  }
}

void BlockWorker::finish(uint16_t head, uint32_t len) {
  {
    std::lock_guard lock(mu_);
    done_.push_back({head, len});
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(done_fd_.get(), &one, sizeof(one));
}

std::vector<BlockWorker::Done> BlockWorker::take_done() {
  // The eventfd first: a job finishing after it is read is either in the list taken below or
  // signals again.
  uint64_t count;
  [[maybe_unused]] ssize_t r = ::read(done_fd_.get(), &count, sizeof(count));
  std::lock_guard lock(mu_);
  std::vector<Done> out;
  out.swap(done_);
  return out;
}

void BlockWorker::discard_done() {
  std::lock_guard lock(mu_);
  done_.clear();
}

void BlockWorker::wait_idle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return stop_ || (jobs_.empty() && !running_job_); });
}

}  // namespace wisp
