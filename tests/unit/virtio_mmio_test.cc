#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <thread>

#include "base/error.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/event/event_loop.h"
#include "vmm/virtio/mmio_layout.h"
#include "vmm/virtio/mmio_transport.h"

namespace wisp {
namespace {

using namespace virtio_mmio;  // NOLINT: register offsets
using testing::CountingIrq;
using testing::MockQueue;
using testing::reg_read;
using testing::reg_write;
using testing::setup_device;
using testing::writable;
using virtio::kStatusAcknowledge;
using virtio::kStatusDriver;
using virtio::kStatusDriverOk;
using virtio::kStatusFeaturesOk;
using virtio::kStatusNeedsReset;

constexpr uint64_t kDeviceBits = (1ull << 0) | (1ull << 35);

// A device with two queues (16 and 8 descriptors) that returns every chain with its writable
// length, and an 8-byte config space.
class FakeDevice : public VirtioDeviceBase {
 public:
  const char* name() const override { return "fake"; }
  uint32_t device_type() const override { return 42; }
  uint64_t device_features() const override { return kDeviceBits; }
  uint16_t num_queues() const override { return 2; }
  uint16_t queue_max_size(uint16_t i) const override { return i == 0 ? 16 : 8; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override {
    read_config_bytes(config, offset, data);
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset + data.size() <= config.size())
      std::memcpy(config.data() + offset, data.data(), data.size());
  }
  // Nothing to keep (snapshots are tested in virtio_snapshot_test.cc).
  VirtioDeviceState save_state() const override { return RngState{}; }
  void restore_state(const VirtioDeviceState&) override {}
  // Test hooks, called like a back-end event handler would.
  void change_config() {
    auto lock = lock_state();
    if (is_active_locked()) signals().signal_config_change();
  }

  std::array<uint8_t, 8> config{1, 2, 3, 4, 5, 6, 7, 8};
  int activations = 0, resets = 0, processed = 0;
  bool refuse = false;

 protected:
  bool on_activate() override {
    ++activations;
    return !refuse;
  }
  void on_reset() override { ++resets; }
  void process_queue(uint16_t index) override {
    Queue& q = queue(index);
    while (auto c = q.pop(memory())) {
      ++processed;
      if (!c->ok()) {
        discard_chain(index, *c);
        continue;
      }
      q.add_used(memory(), c->head(), static_cast<uint32_t>(c->writable_bytes()));
    }
    notify_if_needed(index);
  }
};

class MmioTest : public ::testing::Test {
 protected:
  GuestMemory mem = GuestMemory::create(1 << 20);
  MockQueue q0{mem, 0x10000, 16, 0x40000};
  MockQueue q1{mem, 0x20000, 8, 0x60000};
  std::shared_ptr<FakeDevice> dev = std::make_shared<FakeDevice>();
  CountingIrq irq;
  MmioTransport t{dev, mem, irq, "fake@test"};

  uint32_t status() { return reg_read(t, kStatus); }
  uint32_t setup() { return setup_device(t, {&q0, &q1}); }
  // Drains what the event loop would: the queue's eventfd, then the device.
  bool kicked(uint16_t q) {
    uint64_t v = 0;
    bool pending = ::read(t.queue_eventfd(q), &v, 8) == 8;
    if (pending) dev->queue_notify(q);
    return pending;
  }
};

TEST_F(MmioTest, IdentityRegisters) {
  EXPECT_EQ(reg_read(t, kMagicValue), 0x74726976u);
  EXPECT_EQ(reg_read(t, kVersion), 2u);
  EXPECT_EQ(reg_read(t, kDeviceId), 42u);
  EXPECT_EQ(reg_read(t, kVendorId), kVendor);
  EXPECT_EQ(reg_read(t, kStatus), 0u);
  EXPECT_EQ(reg_read(t, kInterruptStatus), 0u);
  EXPECT_EQ(reg_read(t, kConfigGeneration), 0u);
  EXPECT_EQ(reg_read(t, kShmLenLow), 0xffffffffu);
  EXPECT_EQ(reg_read(t, kShmLenHigh), 0xffffffffu);
  EXPECT_EQ(reg_read(t, kQueueReset), 0u);
  EXPECT_EQ(t.protocol_violations(), 0u);
}

TEST_F(MmioTest, QueueNumMaxPerQueueAndZeroPastTheLast) {
  for (uint32_t sel : {0u, 1u, 2u, 1000u}) {
    reg_write(t, kQueueSel, sel);
    EXPECT_EQ(reg_read(t, kQueueNumMax), sel == 0 ? 16u : sel == 1 ? 8u : 0u) << sel;
    EXPECT_EQ(reg_read(t, kQueueReady), 0u);
  }
}

TEST_F(MmioTest, DeviceFeaturesIncludeTheTransportBits) {
  reg_write(t, kDeviceFeaturesSel, 0);
  uint64_t f = reg_read(t, kDeviceFeatures);
  reg_write(t, kDeviceFeaturesSel, 1);
  f |= static_cast<uint64_t>(reg_read(t, kDeviceFeatures)) << 32;
  EXPECT_EQ(f, kDeviceBits | MmioTransport::kTransportFeatures);
  reg_write(t, kDeviceFeaturesSel, 2);
  EXPECT_EQ(reg_read(t, kDeviceFeatures), 0u);
}

TEST_F(MmioTest, FullSetupActivatesTheDevice) {
  uint32_t s = setup();
  EXPECT_EQ(s, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(dev->activations, 1);
  EXPECT_TRUE(dev->is_active());
  reg_write(t, kQueueSel, 1);
  EXPECT_EQ(reg_read(t, kQueueReady), 1u);
  EXPECT_EQ(t.protocol_violations(), 0u);
  // Activation kicks every queue once, for chains posted before DRIVER_OK.
  EXPECT_TRUE(kicked(0));
  EXPECT_TRUE(kicked(1));
  EXPECT_EQ(irq.edges, 0);  // nothing was there: no interrupt
}

TEST_F(MmioTest, ChainsPostedBeforeDriverOkAreProcessed) {
  q0.add_chain({writable(q0.alloc(4), 4)});
  setup();
  EXPECT_TRUE(kicked(0));
  EXPECT_EQ(q0.used_idx(), 1);
  EXPECT_EQ(irq.edges, 1);
}

TEST_F(MmioTest, QueueNotifyWriteKicksThroughTheEventfd) {
  setup();
  kicked(0);
  kicked(1);
  q1.add_chain({writable(q1.alloc(8), 8)});
  reg_write(t, kQueueNotify, 1);
  EXPECT_FALSE(kicked(0));
  EXPECT_TRUE(kicked(1));
  EXPECT_EQ(q1.used_idx(), 1);
  EXPECT_EQ(q1.used_elem(0).second, 8u);
  EXPECT_EQ(reg_read(t, kInterruptStatus), virtio::kInterruptUsedBuffer);
  EXPECT_EQ(irq.edges, 1);
  reg_write(t, kInterruptAck, virtio::kInterruptUsedBuffer);
  EXPECT_EQ(reg_read(t, kInterruptStatus), 0u);
}

TEST_F(MmioTest, InterruptEdgeOnlyWhenABitIsNewlySet) {
  setup();
  auto complete_one = [&] {
    q0.set_used_event(q0.used_idx());  // a driver that wants every completion
    q0.add_chain({writable(q0.alloc(4), 4)});
    reg_write(t, kQueueNotify, 0);
    kicked(0);
  };
  complete_one();
  complete_one();
  EXPECT_EQ(irq.edges, 1);  // the driver has not acknowledged the first yet
  reg_write(t, kInterruptAck, 1);
  complete_one();
  EXPECT_EQ(irq.edges, 2);
}

TEST_F(MmioTest, NotifyForAMissingQueueIsCountedAndIgnored) {
  setup();
  reg_write(t, kQueueNotify, 7);
  EXPECT_EQ(t.protocol_violations(), 1u);
  EXPECT_EQ(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, UnofferedFeatureIsRefusedAtFeaturesOk) {
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver);
  reg_write(t, kDriverFeaturesSel, 1);
  reg_write(t, kDriverFeatures, 1 | (1u << 5));  // VERSION_1 and bit 37, not offered
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(status() & kStatusFeaturesOk, 0u);
  EXPECT_EQ(t.protocol_violations(), 1u);
}

TEST_F(MmioTest, LegacyDriverWithoutVersion1IsRefused) {
  EXPECT_EQ(setup_device(t, {&q0, &q1}, ~virtio::kFeatureVersion1) & kStatusFeaturesOk, 0u);
  EXPECT_EQ(dev->activations, 0);
}

TEST_F(MmioTest, DriverOkWithoutFeaturesOkIsRefused) {
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver);
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  EXPECT_EQ(status(), kStatusAcknowledge | kStatusDriver);
  EXPECT_EQ(dev->activations, 0);
  EXPECT_GE(t.protocol_violations(), 1u);
}

TEST_F(MmioTest, FeaturesCannotChangeAfterFeaturesOk) {
  setup();
  reg_write(t, kDriverFeaturesSel, 0);
  reg_write(t, kDriverFeatures, 0);
  EXPECT_EQ(t.protocol_violations(), 1u);
}

TEST_F(MmioTest, StatusBitsCannotBeClearedWithoutReset) {
  setup();
  reg_write(t, kStatus, kStatusAcknowledge);
  EXPECT_EQ(status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(t.protocol_violations(), 1u);
  reg_write(t, kStatus, status() | kStatusNeedsReset);  // device-only bit
  EXPECT_EQ(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, QueueConfigAfterDriverOkNeedsReset) {
  setup();
  irq.edges = 0;
  reg_write(t, kQueueSel, 0);
  reg_write(t, kQueueNum, 8);
  EXPECT_NE(status() & kStatusNeedsReset, 0u);
  EXPECT_EQ(reg_read(t, kInterruptStatus) & virtio::kInterruptConfigChange,
            virtio::kInterruptConfigChange);
  EXPECT_EQ(irq.edges, 1);
  // The running queue kept its configuration.
  q0.add_chain({writable(q0.alloc(4), 4)});
  reg_write(t, kQueueNotify, 0);
  kicked(0);
  EXPECT_EQ(q0.used_idx(), 1);
}

TEST_F(MmioTest, BadQueueSizesAreRefusedAtQueueReady) {
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver);
  for (uint32_t bad : {0u, 12u, 32u, 0x10010u}) {
    reg_write(t, kStatus, 0);
    reg_write(t, kQueueSel, 0);
    reg_write(t, kQueueNum, bad);
    reg_write(t, kQueueDescLow, static_cast<uint32_t>(q0.desc_addr()));
    reg_write(t, kQueueDriverLow, static_cast<uint32_t>(q0.avail_addr()));
    reg_write(t, kQueueDeviceLow, static_cast<uint32_t>(q0.used_addr()));
    reg_write(t, kQueueReady, 1);
    EXPECT_EQ(reg_read(t, kQueueReady), 0u) << bad;
    EXPECT_NE(status() & kStatusNeedsReset, 0u) << bad;
  }
}

TEST_F(MmioTest, RingsOutsideRamAreRefusedAtQueueReady) {
  reg_write(t, kQueueSel, 0);
  reg_write(t, kQueueNum, 16);
  reg_write(t, kQueueDescLow, 0);
  reg_write(t, kQueueDescHigh, 1);  // 4 GiB: no RAM there in a 1 MiB guest
  reg_write(t, kQueueReady, 1);
  EXPECT_EQ(reg_read(t, kQueueReady), 0u);
  EXPECT_NE(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, DriverOkIsNotHonouredWhileNeedsReset) {
  reg_write(t, kQueueSel, 0);
  reg_write(t, kQueueNum, 3);
  reg_write(t, kQueueReady, 1);  // refused: NEEDS_RESET
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver);
  reg_write(t, kDriverFeaturesSel, 1);
  reg_write(t, kDriverFeatures, 1);
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  reg_write(t, kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(dev->activations, 0);
  EXPECT_NE(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, QueueRegistersAreFrozenWhileReady) {
  reg_write(t, kQueueSel, 0);
  reg_write(t, kQueueNum, 16);
  reg_write(t, kQueueDescLow, static_cast<uint32_t>(q0.desc_addr()));
  reg_write(t, kQueueDriverLow, static_cast<uint32_t>(q0.avail_addr()));
  reg_write(t, kQueueDeviceLow, static_cast<uint32_t>(q0.used_addr()));
  reg_write(t, kQueueReady, 1);
  ASSERT_EQ(reg_read(t, kQueueReady), 1u);
  reg_write(t, kQueueNum, 8);
  EXPECT_EQ(t.protocol_violations(), 1u);
  reg_write(t, kQueueReady, 0);  // allowed: how Linux tears queues down
  EXPECT_EQ(reg_read(t, kQueueReady), 0u);
  EXPECT_EQ(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, ResetClearsEverythingAndStopsTheDevice) {
  setup();
  q0.add_chain({writable(q0.alloc(4), 4)});
  reg_write(t, kQueueNotify, 0);
  kicked(0);
  reg_write(t, kQueueSel, 0);
  reg_write(t, kQueueNum, 4);  // NEEDS_RESET
  ASSERT_NE(status() & kStatusNeedsReset, 0u);
  reg_write(t, kStatus, 0);
  EXPECT_EQ(status(), 0u);
  EXPECT_EQ(reg_read(t, kInterruptStatus), 0u);
  EXPECT_FALSE(dev->is_active());
  EXPECT_EQ(dev->resets, 1);
  for (uint32_t sel : {0u, 1u}) {
    reg_write(t, kQueueSel, sel);
    EXPECT_EQ(reg_read(t, kQueueReady), 0u);
  }
  // A stale kick after the reset is ignored: the device is not active.
  q0.add_chain({writable(q0.alloc(4), 4)});
  reg_write(t, kQueueNotify, 0);
  kicked(0);
  EXPECT_EQ(q0.used_idx(), 1);
  // And the device can be brought up again.
  EXPECT_EQ(setup() & kStatusDriverOk, kStatusDriverOk);
  EXPECT_EQ(dev->activations, 2);
}

TEST_F(MmioTest, DeviceRefusingActivationNeedsReset) {
  dev->refuse = true;
  setup();
  EXPECT_FALSE(dev->is_active());
  EXPECT_NE(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, BrokenRingFromTheDeviceNeedsReset) {
  setup();
  kicked(0);
  q0.set_avail_idx(100);  // 100 pending on a 16-entry ring
  reg_write(t, kQueueNotify, 0);
  kicked(0);
  EXPECT_NE(status() & kStatusNeedsReset, 0u);
  EXPECT_NE(reg_read(t, kInterruptStatus) & virtio::kInterruptConfigChange, 0u);
  EXPECT_FALSE(dev->is_active());
  EXPECT_EQ(dev->bad_requests(), 1u);
}

TEST_F(MmioTest, MalformedChainIsReturnedEmptyAndCounted) {
  setup();
  kicked(0);
  q0.add_chain({writable(0x7000'0000, 4)});  // outside the 1 MiB guest
  reg_write(t, kQueueNotify, 0);
  kicked(0);
  EXPECT_EQ(q0.used_idx(), 1);
  EXPECT_EQ(q0.used_elem(0).second, 0u);
  EXPECT_EQ(dev->bad_requests(), 1u);
  EXPECT_EQ(status() & kStatusNeedsReset, 0u);
}

TEST_F(MmioTest, RegistersNeed32BitAlignedAccess) {
  uint8_t b = 0xaa;
  t.write(kStatus, {&b, 1});
  uint16_t w = 0xffff;
  t.read(kMagicValue, {reinterpret_cast<uint8_t*>(&w), 2});
  EXPECT_EQ(w, 0);
  uint32_t v = 0xffffffff;
  t.read(kMagicValue + 2, {reinterpret_cast<uint8_t*>(&v), 4});
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(status(), 0u);
  EXPECT_EQ(t.protocol_violations(), 3u);
}

TEST_F(MmioTest, UnknownAndReadOnlyRegistersAreCounted) {
  reg_write(t, kMagicValue, 1);
  reg_write(t, kInterruptStatus, 1);
  reg_write(t, 0x0f0, 1);
  EXPECT_EQ(reg_read(t, 0x0f0), 0u);
  EXPECT_EQ(reg_read(t, kQueueNotify), 0u);  // write-only
  EXPECT_EQ(t.protocol_violations(), 5u);
  EXPECT_EQ(reg_read(t, kMagicValue), kMagic);
}

TEST_F(MmioTest, ConfigSpaceIsDelegatedAtAnyWidth) {
  uint8_t b = 0;
  t.read(kConfig + 2, {&b, 1});
  EXPECT_EQ(b, 3);
  uint16_t w = 0;
  t.read(kConfig + 6, {reinterpret_cast<uint8_t*>(&w), 2});
  EXPECT_EQ(w, 0x0807);
  uint64_t q = 0;
  t.read(kConfig, {reinterpret_cast<uint8_t*>(&q), 8});
  EXPECT_EQ(q, 0x0807060504030201ull);
  uint32_t past = 0xffffffff;
  t.read(kConfig + 6, {reinterpret_cast<uint8_t*>(&past), 4});  // straddles the end
  EXPECT_EQ(past, 0x0807u);
  t.read(0xffc, {reinterpret_cast<uint8_t*>(&past), 4});
  EXPECT_EQ(past, 0u);
  uint8_t nb = 0x99;
  t.write(kConfig + 1, {&nb, 1});
  EXPECT_EQ(dev->config[1], 0x99);
  EXPECT_EQ(t.protocol_violations(), 0u);
}

TEST_F(MmioTest, ConfigChangeBumpsGenerationAndInterrupts) {
  setup();
  dev->change_config();
  EXPECT_EQ(reg_read(t, kConfigGeneration), 1u);
  EXPECT_EQ(reg_read(t, kInterruptStatus), virtio::kInterruptConfigChange);
  EXPECT_EQ(irq.edges, 1);
}

TEST_F(MmioTest, EventIdxIsNegotiatedIntoTheQueues) {
  setup();
  kicked(0);
  q0.set_used_event(5);  // the driver wants an interrupt only after entry 5
  q0.add_chain({writable(q0.alloc(4), 4)});
  reg_write(t, kQueueNotify, 0);
  kicked(0);
  EXPECT_EQ(q0.used_idx(), 1);
  EXPECT_EQ(irq.edges, 0);
}

TEST_F(MmioTest, KicksReachTheDeviceThroughARealEventLoop) {
  EventLoop loop;
  for (uint16_t i = 0; i < t.num_queues(); ++i)
    loop.add(t.queue_eventfd(i), [this, i](uint32_t) { t.handle_queue_event(i); });
  setup();
  q1.add_chain({writable(q1.alloc(4), 4)});
  reg_write(t, kQueueNotify, 1);
  loop.add_timer(50, [&] { loop.stop(0); });
  loop.run();
  EXPECT_EQ(q1.used_idx(), 1);
  EXPECT_EQ(irq.edges, 1);
}

// The vCPU thread resets and re-activates while the loop thread keeps processing kicks: the
// device lock must keep them apart (run under ASan/TSan to see it).
TEST_F(MmioTest, ResetWhileTheLoopProcessesIsSafe) {
  setup();
  std::atomic<bool> done{false};
  std::thread loop_thread([&] {
    while (!done.load()) {
      dev->queue_notify(0);
      dev->queue_notify(1);
    }
  });
  for (int i = 0; i < 200; ++i) {
    q0.add_chain({writable(q0.alloc(0), 0)});
    setup();
  }
  done.store(true);
  loop_thread.join();
  EXPECT_EQ(dev->activations, 201);
}

TEST(MmioLayout, SlotsAndCommandLine) {
  VirtioMmioSlot s0 = virtio_mmio_slot(0);
  EXPECT_EQ(s0.base, 0xd0000000u);
  EXPECT_EQ(s0.size, 0x1000u);
  EXPECT_EQ(s0.irq, 5u);
  EXPECT_EQ(virtio_mmio_cmdline(s0), "virtio_mmio.device=4K@0xd0000000:5");
  VirtioMmioSlot last = virtio_mmio_slot(kMaxVirtioMmioDevices - 1);
  EXPECT_EQ(last.irq, 15u);
  EXPECT_EQ(virtio_mmio_cmdline(last), "virtio_mmio.device=4K@0xd000a000:15");
  EXPECT_THROW(virtio_mmio_slot(kMaxVirtioMmioDevices), Error);
}

TEST(MmioTransportCtor, RefusesImpossibleDeviceQueues) {
  struct BadDevice : FakeDevice {
    uint16_t queue_max_size(uint16_t) const override { return 100; }
  };
  auto mem = GuestMemory::create(1 << 20);
  CountingIrq irq;
  EXPECT_THROW(MmioTransport(std::make_shared<BadDevice>(), mem, irq), Error);
}

}  // namespace
}  // namespace wisp
