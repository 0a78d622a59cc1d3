// The pause protocol without KVM: plain threads play the vCPUs, looping as VcpuRunner's threads
// do (stop check, pause check, one step of work), and the test body plays the event loop.
#include "vmm/vcpu/pause_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace wisp {
namespace {

class PauseGateTest : public ::testing::Test {
 protected:
  // Starts `n` vCPU threads.
  void start(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      threads.emplace_back([this, i] {
        while (!gate.stopping()) {
          if (gate.requested()) {
            gate.park();
            continue;
          }
          steps[i].fetch_add(1);
          std::this_thread::yield();
        }
        gate.leave();
      });
    }
  }
  void TearDown() override {
    gate.stop();
    for (auto& t : threads) t.join();
  }
  uint64_t total_steps() const {
    uint64_t sum = 0;
    for (const auto& step : steps) sum += step.load();
    return sum;
  }
  void wait_for_steps(uint64_t n) {
    while (total_steps() < n) std::this_thread::yield();
  }

  PauseGate gate;
  std::atomic<uint64_t> steps[8] = {};
  std::vector<std::thread> threads;
};

TEST_F(PauseGateTest, EveryVcpuParksAndNoneRunsUntilRelease) {
  start(3);
  wait_for_steps(30);
  gate.request();
  ASSERT_TRUE(gate.wait_parked(3));
  EXPECT_EQ(gate.parked(), 3u);
  uint64_t frozen = total_steps();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(total_steps(), frozen) << "a parked vCPU ran";

  gate.release();
  wait_for_steps(frozen + 30);
  EXPECT_FALSE(gate.requested());

  // A second pause works like the first.
  gate.request();
  ASSERT_TRUE(gate.wait_parked(3));
  gate.release();
}

TEST_F(PauseGateTest, AVcpuThatStopsInsteadOfParkingEndsTheWait) {
  // vCPU 0 parks; vCPU 1 is in KVM_RUN when the pause comes and leaves it with a power-off
  // exit, so it stops the machine and its thread ends without parking.
  start(1);
  std::thread powering_off([this] {
    while (!gate.requested()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gate.stop();
    gate.leave();
  });
  gate.request();
  EXPECT_FALSE(gate.wait_parked(2));
  powering_off.join();
  EXPECT_TRUE(gate.stopping());
  EXPECT_FALSE(gate.requested()) << "the failed pause withdrew its request";
}

TEST_F(PauseGateTest, StopReleasesParkedVcpus) {
  start(2);
  gate.request();
  ASSERT_TRUE(gate.wait_parked(2));
  gate.stop();
  for (auto& t : threads) t.join();
  threads.clear();
  EXPECT_EQ(gate.parked(), 0u);
}

TEST_F(PauseGateTest, StopBeforeAnyPauseEndsTheLoops) {
  start(4);
  wait_for_steps(10);
  gate.stop();
  for (auto& t : threads) t.join();
  threads.clear();
  gate.request();
  EXPECT_FALSE(gate.wait_parked(4)) << "nobody is left to park";
}

}  // namespace
}  // namespace wisp
