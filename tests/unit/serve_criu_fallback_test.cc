// wisp serve's CRIU fallback (issue 17) without a VM: the once-per-generation bookkeeping
// (which generations do not fit, one re-make of each's snapshot shared by every call), warm
// pools that stop making clones while their template's snapshot does not fit, and ThreadJobs,
// which runs the fallback's blocking work off the loop (results, error words, cancellation).
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "base/error.h"
#include "manager/agent_vm.h"
#include "manager/service/criu_fallbacks.h"
#include "manager/service/thread_jobs.h"
#include "manager/service/warm_pool.h"

namespace wisp::service {
namespace {

TEST(CriuFallbacksTest, AGenerationIsMarkedUnfitOnce) {
  CriuFallbacks f;
  EXPECT_EQ(f.unfit("/t/a.1"), nullptr);
  EXPECT_TRUE(f.mark_unfit("/t/a.1", "memory: missing"));
  // Later failures of the same generation are not news (logged once).
  EXPECT_FALSE(f.mark_unfit("/t/a.1", "another reason"));
  ASSERT_NE(f.unfit("/t/a.1"), nullptr);
  EXPECT_EQ(*f.unfit("/t/a.1"), "memory: missing");
  // Another generation of the same template is another matter.
  EXPECT_EQ(f.unfit("/t/a.2"), nullptr);
  EXPECT_EQ(f.unfit_count(), 1u);
}

TEST(CriuFallbacksTest, OneRebuildPerGenerationSharedByItsCalls) {
  CriuFallbacks f;
  f.mark_unfit("/t/a.1", "memory: missing");
  EXPECT_TRUE(f.claim_rebuild("/t/a.1"));   // the first fallback call starts it
  EXPECT_FALSE(f.claim_rebuild("/t/a.1"));  // concurrent ones share it
  EXPECT_FALSE(f.claim_rebuild("/t/a.1"));
  EXPECT_TRUE(f.claim_rebuild("/t/b.7"));  // another template's generation: its own
  // Rebuilt: the generation's entries go, and a late call of it does not rebuild again.
  f.forget("/t/a.1");
  EXPECT_EQ(f.unfit("/t/a.1"), nullptr);
  EXPECT_FALSE(f.claim_rebuild("/t/a.1"));
}

TEST(CriuFallbacksTest, ARebuildThatDidNotStartCanBeClaimedAgain) {
  CriuFallbacks f;
  EXPECT_TRUE(f.claim_rebuild("/t/a.1"));
  f.release_rebuild("/t/a.1");  // no capacity for its VM
  EXPECT_TRUE(f.claim_rebuild("/t/a.1"));
}

TEST(CriuFallbacksTest, AFailedRebuildIsRetriedAFewTimesThenNoMore) {
  CriuFallbacks f;
  ASSERT_TRUE(f.mark_unfit("g", "memory: missing"));
  for (int i = 1; i < CriuFallbacks::kRebuildAttempts; ++i) {
    ASSERT_TRUE(f.claim_rebuild("g")) << i;
    EXPECT_TRUE(f.rebuild_failed("g")) << i;  // the next fallback call may try again
  }
  ASSERT_TRUE(f.claim_rebuild("g"));
  EXPECT_FALSE(f.rebuild_failed("g"));  // the last attempt: no more
  EXPECT_FALSE(f.claim_rebuild("g"));
  EXPECT_NE(f.unfit("g"), nullptr);  // its calls keep falling back
}

TEST(WarmPoolsTest, APausedPoolMakesNoClonesUntilResumed) {
  auto io = kj::setupAsyncIo();
  int made = 0;
  WarmPools pools(io.provider->getTimer(), [&made](const std::string&) {
    ++made;
    return kj::Promise<kj::Own<Clone>>(KJ_EXCEPTION(FAILED, "vm-failed: no snapshot here"));
  });
  pools.start({{"f", 2}});
  kj::evalLater([] {}).wait(io.waitScope);
  EXPECT_EQ(made, 2);
  EXPECT_FALSE(pools.paused("f"));
  EXPECT_TRUE(pools.pause("f"));
  EXPECT_FALSE(pools.pause("f"));  // said once
  EXPECT_TRUE(pools.paused("f"));
  // The retries after the failures find it paused; a take makes none either.
  io.provider->getTimer().afterDelay(1200 * kj::MILLISECONDS).wait(io.waitScope);
  EXPECT_EQ(pools.take("f", "/t/f.1"), nullptr);
  EXPECT_EQ(made, 2);
  EXPECT_EQ(pools.filling("f"), 0u);
  pools.resume("f");  // a new generation
  EXPECT_FALSE(pools.paused("f"));
  kj::evalLater([] {}).wait(io.waitScope);
  EXPECT_EQ(made, 4);
  // A template without a pool is never paused.
  EXPECT_FALSE(pools.pause("g"));
  EXPECT_FALSE(pools.paused("g"));
  pools.stop();
}

TEST(ThreadJobsTest, ResultsComeBackToTheLoop) {
  auto io = kj::setupAsyncIo();
  ThreadJobs jobs;
  std::thread::id loop = std::this_thread::get_id();
  std::atomic<bool> off_loop{false};
  auto p = jobs.run<std::string>(
      [&](manager::Cancellation*) {
        off_loop = std::this_thread::get_id() != loop;
        return std::string("answer");
      },
      "vm-failed");
  EXPECT_EQ(p.wait(io.waitScope), "answer");
  EXPECT_TRUE(off_loop);
  EXPECT_EQ(jobs.running(), 0u);
}

std::string failure(kj::Promise<int>& p, kj::WaitScope& ws) {
  try {
    p.wait(ws);
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "";
}

TEST(ThreadJobsTest, ErrorsCarryTheirWord) {
  auto io = kj::setupAsyncIo();
  ThreadJobs jobs;
  auto vm = jobs.run<int>(
      [](manager::Cancellation*) -> int { throw manager::VmFailed("the guest did not boot"); },
      "rebuild");
  EXPECT_EQ(failure(vm, io.waitScope), "vm-failed: the guest did not boot");
  auto other = jobs.run<int>(
      [](manager::Cancellation*) -> int { throw Error("criu-image.wci: checksum mismatch"); },
      "rebuild");
  EXPECT_EQ(failure(other, io.waitScope), "rebuild: criu-image.wci: checksum mismatch");
}

TEST(ThreadJobsTest, DroppingThePromiseCancelsTheJob) {
  auto io = kj::setupAsyncIo();
  ThreadJobs jobs;
  std::atomic<bool> started{false}, saw_cancel{false};
  {
    auto p = jobs.run<int>(
        [&](manager::Cancellation* c) {
          started = true;
          auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
          while (!c->cancelled() && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          saw_cancel = c->cancelled();
          return 0;
        },
        "vm-failed");
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (jobs.running() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(saw_cancel);
  EXPECT_EQ(jobs.running(), 0u);
}

// What a job holds (serve: its admission ticket) outlives a dropped promise until the job's
// thread has ended (its VM killed), and is released on the loop then.
struct Held {
  explicit Held(std::atomic<int>* released) : released(released) {}
  ~Held() { ++*released; }
  std::atomic<int>* released;
};

TEST(ThreadJobsTest, ADroppedJobHoldsWhatItWasGivenUntilItsThreadEnds) {
  auto io = kj::setupAsyncIo();
  ThreadJobs jobs;
  std::atomic<int> released{0};
  std::atomic<bool> started{false}, finish{false};
  {
    auto p = jobs.run<int>(
        [&](manager::Cancellation*) {
          started = true;
          while (!finish) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          return 0;
        },
        "vm-failed", kj::heap<Held>(&released));
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  io.waitScope.poll();
  EXPECT_EQ(released, 0);  // the job still runs: still held
  finish = true;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (released == 0 && std::chrono::steady_clock::now() < until) {
    io.waitScope.poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(released, 1);
  // A job that ends normally releases it with its promise.
  auto q = jobs.run<int>([](manager::Cancellation*) { return 7; }, "vm-failed",
                         kj::heap<Held>(&released));
  EXPECT_EQ(q.wait(io.waitScope), 7);
  q = nullptr;
  EXPECT_EQ(released, 2);
}

TEST(ThreadJobsTest, TheDestructorCancelsAndJoins) {
  std::atomic<bool> started{false}, saw_cancel{false};
  {
    auto io = kj::setupAsyncIo();
    ThreadJobs jobs;
    auto p = jobs.run<int>(
        [&](manager::Cancellation* c) {
          started = true;
          while (!c->cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          saw_cancel = true;
          return 0;
        },
        "vm-failed");
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    p = nullptr;  // as serve's shutdown: promises first, then the jobs
  }
  EXPECT_TRUE(saw_cancel);
}

}  // namespace
}  // namespace wisp::service
