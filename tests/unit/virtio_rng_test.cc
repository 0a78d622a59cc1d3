#include <gtest/gtest.h>

#include <algorithm>

#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/rng/rng.h"

namespace wisp {
namespace {

using testing::DeviceHarness;
using testing::readable;
using testing::writable;

bool all_zero(const std::vector<uint8_t>& v) {
  return std::all_of(v.begin(), v.end(), [](uint8_t b) { return b == 0; });
}

TEST(VirtioRng, Identity) {
  VirtioRng rng;
  EXPECT_EQ(rng.device_type(), 4u);
  EXPECT_EQ(rng.num_queues(), 1);
  uint32_t cfg = 0xffffffff;
  rng.read_config(0, {reinterpret_cast<uint8_t*>(&cfg), 4});
  EXPECT_EQ(cfg, 0u);
}

TEST(VirtioRng, FillsEveryWritableBuffer) {
  VirtioRng rng;
  DeviceHarness h(rng);
  ASSERT_TRUE(h.activated());
  uint64_t a = h.q().alloc(64), b = h.q().alloc(200);
  uint16_t head = h.q().add_chain({writable(a, 64), writable(b, 200)});
  h.kick();
  EXPECT_EQ(h.q().used_idx(), 1);
  EXPECT_EQ(h.q().used_elem(0), std::make_pair(uint32_t{head}, 264u));
  EXPECT_FALSE(all_zero(h.q().bytes(a, 64)));
  EXPECT_FALSE(all_zero(h.q().bytes(b + 136, 64)));  // the end of the second buffer too
  EXPECT_EQ(h.signals().used, std::vector<uint16_t>{0});
  EXPECT_EQ(rng.bad_requests(), 0u);
}

TEST(VirtioRng, ServesSeveralRequestsPerKick) {
  VirtioRng rng;
  DeviceHarness h(rng);
  for (int i = 0; i < 5; ++i) h.q().add_chain({writable(h.q().alloc(16), 16)});
  h.kick();
  EXPECT_EQ(h.q().used_idx(), 5);
  EXPECT_EQ(h.signals().used.size(), 1u);  // one interrupt for the batch
}

TEST(VirtioRng, RequestsAreCapped) {
  VirtioRng rng;
  DeviceHarness h(rng);
  uint64_t big = h.q().alloc(VirtioRng::kMaxBytesPerRequest + 4096);
  h.q().add_chain({writable(big, VirtioRng::kMaxBytesPerRequest + 4096)});
  h.kick();
  EXPECT_EQ(h.q().used_elem(0).second, VirtioRng::kMaxBytesPerRequest);
  EXPECT_TRUE(all_zero(h.q().bytes(big + VirtioRng::kMaxBytesPerRequest, 4096)));
}

TEST(VirtioRng, ReadableBuffersAreRefused) {
  VirtioRng rng;
  DeviceHarness h(rng);
  uint64_t a = h.q().alloc(16);
  h.q().add_chain({readable(a, 16)});
  h.q().add_chain({readable(h.q().alloc(8), 8), writable(h.q().alloc(8), 8)});
  h.kick();
  EXPECT_EQ(h.q().used_idx(), 2);
  EXPECT_EQ(h.q().used_elem(0).second, 0u);
  EXPECT_EQ(h.q().used_elem(1).second, 0u);
  EXPECT_TRUE(all_zero(h.q().bytes(a, 16)));
  EXPECT_EQ(rng.bad_requests(), 2u);
}

TEST(VirtioRng, MalformedChainIsReturnedEmpty) {
  VirtioRng rng;
  DeviceHarness h(rng);
  h.q().add_chain({writable(DeviceHarness::kMemBytes - 8, 16)});
  h.q().add_chain({writable(h.q().alloc(8), 8)});
  h.kick();
  EXPECT_EQ(h.q().used_idx(), 2);
  EXPECT_EQ(h.q().used_elem(0).second, 0u);
  EXPECT_EQ(h.q().used_elem(1).second, 8u);
  EXPECT_EQ(rng.bad_requests(), 1u);
}

TEST(VirtioRng, InactiveDeviceIgnoresKicks) {
  VirtioRng rng;
  {
    DeviceHarness h(rng);
    rng.reset();
    h.q().add_chain({writable(h.q().alloc(8), 8)});
    h.kick();
    EXPECT_EQ(h.q().used_idx(), 0);
  }
}

TEST(VirtioRng, EventIdxSuppressesInterrupts) {
  VirtioRng rng;
  DeviceHarness h(rng, /*event_idx=*/true);
  h.q().set_used_event(1);  // interrupt once the second request is used
  h.q().add_chain({writable(h.q().alloc(8), 8)});
  h.kick();
  EXPECT_TRUE(h.signals().used.empty());
  EXPECT_EQ(h.q().avail_event(), 1);  // and kicks requested for the next chain
  h.q().add_chain({writable(h.q().alloc(8), 8)});
  h.kick();
  EXPECT_EQ(h.signals().used.size(), 1u);
}

}  // namespace
}  // namespace wisp
