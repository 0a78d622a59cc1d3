// Warm clones (`wisp serve --warm NAME=N`): per template, N clones restored ahead of time with
// their agent connected, held paused (Vmm.pause lasting) so they cost no CPU; a call takes one
// (resumes it, reseeds it with agent.resumed and invokes it: still unique), and the pool
// refills in the background. A warm clone holds an admission ticket like any VM, taken only
// from spare capacity (never queued ahead of calls).
//
// Threads: serve's loop thread.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>

#include "manager/service/clone.h"

namespace wisp::service {

class WarmPools {
 public:
  // Makes one paused, connected clone of a template, or fails (no spare capacity, no such
  // template, the VM failed): then the pool tries again after kRetry.
  using Maker = std::function<kj::Promise<kj::Own<Clone>>(const std::string& name)>;
  // After a failure the next attempt waits kRetryMs, doubling per failure in a row up to
  // kMaxRetryMs (a template that is gone is not retried every second forever).
  static constexpr uint64_t kRetryMs = 1000;
  static constexpr uint64_t kMaxRetryMs = 30000;

  WarmPools(kj::Timer& timer, Maker maker);
  ~WarmPools();

  // Starts keeping `targets` (NAME -> N).
  void start(const std::map<std::string, uint32_t>& targets);
  // A ready clone of `name` restored from generation `generation_dir` (clones of an older
  // generation, or dead ones, are dropped), or none (then it refills). A taker that got one
  // calls refill() once that clone's resume is under way: a refill spawns a VMM on this loop
  // (45-85 ms on the testbed), which must not delay the resume's message.
  kj::Maybe<kj::Own<Clone>> take(const std::string& name, const std::string& generation_dir);
  // Starts making clones of `name` up to its target (none for a template without one).
  void refill(const std::string& name);
  uint32_t ready(const std::string& name) const;
  uint32_t target(const std::string& name) const;
  // How many of `name` are being made now.
  uint32_t filling(const std::string& name) const;
  // Stops making clones of `name` (its VM snapshot does not fit this host: every restore
  // would fail) and drops those ready; true when it was not paused yet. take() finds none.
  bool pause(const std::string& name);
  // Makes them again (a new generation of the template); nothing when it was not paused.
  void resume(const std::string& name);
  bool paused(const std::string& name) const;
  // Drops every warm clone and stops refilling (serve drains).
  void stop();

 private:
  struct Pool {
    uint32_t target = 0;
    uint32_t filling = 0;
    uint64_t retry_ms = kRetryMs;
    bool paused = false;
    std::deque<kj::Own<Clone>> ready;
  };
  class Errors : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  void fill(const std::string& name);

  kj::Timer& timer_;
  Maker maker_;
  bool stopped_ = false;
  std::map<std::string, Pool> pools_;
  Errors errors_;
  kj::TaskSet tasks_{errors_};
};

}  // namespace wisp::service
