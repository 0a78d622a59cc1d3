// The thread that does a virtio-blk device's disk I/O, so that a slow disk (an fdatasync of a
// gigabyte of dirty pages, a read that misses the page cache) never holds the event loop, which
// also serves the control socket, stop signals and the other devices.
//
// The device parses and checks each request on the event loop and submits the I/O as a job;
// the worker runs jobs one at a time in submission order (so a flush follows the writes before
// it, as virtio-blk's FLUSH asks), records each as done and signals completion_fd(); the
// device, back on the loop, takes the done ones and returns their chains to the guest.
// Until start() the jobs run at once on the submitting thread (unit tests without a loop).
//
// Threads: submit(), take_done(), discard_done() and wait_idle() from any thread (the device
// calls them with its lock held); jobs run on the worker thread and must not take the device
// lock.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/unique_fd.h"

namespace wisp {

class BlockWorker {
 public:
  // A job does the I/O of chain `head` and returns the bytes it wrote into the chain (for the
  // used ring).
  using Job = std::function<uint32_t()>;
  struct Done {
    uint16_t head;
    uint32_t len;
  };

  BlockWorker();   // throws Error (no eventfd)
  ~BlockWorker();  // lets the running job finish, drops the queued ones, joins
  BlockWorker(const BlockWorker&) = delete;
  BlockWorker& operator=(const BlockWorker&) = delete;

  // Starts the thread, named "vmm-block"; `on_start` runs on it first thing (the jail installs
  // the thread's seccomp filter) and start() returns once it has: what it throws is rethrown
  // here and the thread ends. Call at most once.
  void start(const std::function<void()>& on_start);

  void submit(uint16_t head, Job job);
  // Readable (an eventfd) when jobs are done; take_done() drains it.
  int completion_fd() const { return done_fd_.get(); }
  // The jobs done since the last call, in completion order.
  std::vector<Done> take_done();
  // Forgets the jobs done without reading completion_fd() (no system call: a device reset
  // runs on a vCPU thread, whose seccomp table has no read); the fd's next take_done() finds
  // nothing.
  void discard_done();
  // Waits until no job is queued or running (their Done entries stay to be taken).
  void wait_idle();

 private:
  void run();
  void finish(uint16_t head, uint32_t len);  // mu_ not held

  UniqueFd done_fd_;
  std::mutex mu_;
  std::condition_variable work_cv_;  // a job was queued, or stop_
  std::condition_variable idle_cv_;  // the queue ran empty
  std::deque<std::pair<uint16_t, Job>> jobs_;
  std::vector<Done> done_;
  bool running_job_ = false;
  bool stop_ = false;
  bool started_ = false;
  std::thread thread_;
};

}  // namespace wisp
