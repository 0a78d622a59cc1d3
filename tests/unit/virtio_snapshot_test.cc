// Snapshots of virtio-mmio slots: MmioTransport::save/restore carries a running device's queues
// over to a fresh transport and device on the same guest memory, so the rings continue where
// they stopped; impossible transport states are refused. Also each device's save_state /
// restore_state: compatibility checks, wrong kinds, and vsock's TRANSPORT_RESET after restore.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "base/error.h"
#include "tests/unit/memory_disk.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/block/block.h"
#include "vmm/virtio/mmio_transport.h"
#include "vmm/virtio/rng/rng.h"
#include "vmm/virtio/vsock/vsock.h"

namespace wisp {
namespace {

using namespace virtio_mmio;  // NOLINT: register offsets
using testing::CountingIrq;
using testing::MockQueue;
using testing::reg_read;
using testing::reg_write;
using testing::setup_device;
using testing::writable;
using virtio::kStatusDriverOk;
using virtio::kStatusFeaturesOk;
using virtio::kStatusNeedsReset;

// One queue of at most 16 descriptors; returns every chain with its writable length. Its saved
// state is an RngState (it has nothing of its own to keep).
class FakeDevice : public VirtioDeviceBase {
 public:
  const char* name() const override { return "fake"; }
  uint32_t device_type() const override { return 42; }
  uint64_t device_features() const override { return 1ull << 3; }
  uint16_t num_queues() const override { return 1; }
  uint16_t queue_max_size(uint16_t) const override { return 16; }
  void read_config(uint64_t, std::span<uint8_t> data) override {
    std::memset(data.data(), 0, data.size());
  }
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  VirtioDeviceState save_state() const override { return RngState{}; }
  void restore_state(const VirtioDeviceState& s) override {
    expect_device_state<RngState>(s, name());
  }

  int processed = 0;

 protected:
  void process_queue(uint16_t index) override {
    drain_queue(index, [&](const DescriptorChain& c) {
      ++processed;
      return static_cast<uint32_t>(c.writable_bytes());
    });
  }
};

// A transport and its device, as the machine builds them for one slot.
struct Slot {
  Slot(const GuestMemory& mem) : t(dev, mem, irq, "fake@test") {}
  std::shared_ptr<FakeDevice> dev = std::make_shared<FakeDevice>();
  CountingIrq irq;
  MmioTransport t;
  // What the event loop does on a kick: drain the eventfd, let the device process the queue.
  bool run_kick(uint16_t q = 0) {
    uint64_t v = 0;
    bool pending = ::read(t.queue_eventfd(q), &v, 8) == 8;
    if (pending) t.handle_queue_event(q);
    return pending;
  }
};

std::string restore_error(Slot& s, const MmioTransportState& st) {
  try {
    s.t.restore(st);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class TransportSnapshotTest : public ::testing::Test {
 protected:
  GuestMemory mem = GuestMemory::create(1 << 20);
  MockQueue q{mem, 0x10000, 16, 0x40000};

  // A driven slot with one chain served, saved.
  MmioTransportState running_state(Slot& a) {
    EXPECT_EQ(setup_device(a.t, {&q}) & kStatusDriverOk, kStatusDriverOk);
    a.run_kick();
    q.add_chain({writable(q.alloc(8), 8)});
    reg_write(a.t, kQueueNotify, 0);
    a.run_kick();
    EXPECT_EQ(q.used_idx(), 1);
    return a.t.save();
  }
};

TEST_F(TransportSnapshotTest, RunningQueueContinuesAfterRestore) {
  Slot a(mem);
  ASSERT_EQ(setup_device(a.t, {&q}) & kStatusDriverOk, kStatusDriverOk);
  a.run_kick();
  q.add_chain({writable(q.alloc(8), 8)});
  reg_write(a.t, kQueueNotify, 0);
  a.run_kick();
  ASSERT_EQ(q.used_idx(), 1);
  // A chain the device has not seen yet when the vCPUs pause.
  uint16_t pending = q.add_chain({writable(q.alloc(24), 24)});

  MmioTransportState saved = a.t.save();
  EXPECT_TRUE(saved.device_activated);
  ASSERT_EQ(saved.queues.size(), 1u);
  EXPECT_EQ(saved.queues[0].next_avail, 1);
  EXPECT_EQ(saved.queues[0].next_used, 1);
  EXPECT_TRUE(saved.queues[0].event_idx);  // setup_device accepts every offered feature
  VirtioDeviceState dev_state = a.dev->save_state();

  Slot b(mem);  // the clone: fresh objects over the same guest memory
  b.dev->restore_state(dev_state);
  b.t.restore(saved);
  EXPECT_TRUE(b.dev->is_active());
  EXPECT_EQ(reg_read(b.t, kStatus), saved.status);
  EXPECT_EQ(reg_read(b.t, kQueueReady), 1u);
  EXPECT_EQ(b.t.save(), saved);

  // The activation kick picks up the pending chain; the used index goes on from 1.
  EXPECT_TRUE(b.run_kick());
  EXPECT_EQ(b.dev->processed, 1);
  EXPECT_EQ(q.used_idx(), 2);
  EXPECT_EQ(q.used_elem(1), std::make_pair(uint32_t{pending}, 24u));
  uint16_t next = q.add_chain({writable(q.alloc(4), 4)});
  reg_write(b.t, kQueueNotify, 0);
  b.run_kick();
  EXPECT_EQ(q.used_idx(), 3);
  EXPECT_EQ(q.used_elem(2), std::make_pair(uint32_t{next}, 4u));
  EXPECT_EQ(b.t.protocol_violations(), 0u);
}

TEST_F(TransportSnapshotTest, HalfwaySetupCanBeFinishedAfterRestore) {
  Slot a(mem);
  reg_write(a.t, kStatus, 1);
  reg_write(a.t, kStatus, 3);
  reg_write(a.t, kDriverFeaturesSel, 1);
  reg_write(a.t, kDriverFeatures, 1);  // VERSION_1
  reg_write(a.t, kStatus, 3 | kStatusFeaturesOk);
  reg_write(a.t, kQueueSel, 0);
  reg_write(a.t, kQueueNum, 16);
  reg_write(a.t, kQueueDescLow, static_cast<uint32_t>(q.desc_addr()));
  MmioTransportState saved = a.t.save();
  EXPECT_FALSE(saved.device_activated);

  Slot b(mem);
  b.t.restore(saved);
  EXPECT_FALSE(b.dev->is_active());
  reg_write(b.t, kQueueDriverLow, static_cast<uint32_t>(q.avail_addr()));
  reg_write(b.t, kQueueDeviceLow, static_cast<uint32_t>(q.used_addr()));
  reg_write(b.t, kQueueReady, 1);
  reg_write(b.t, kStatus, 3 | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_TRUE(b.dev->is_active());
  q.add_chain({writable(q.alloc(8), 8)});
  b.run_kick();
  EXPECT_EQ(q.used_idx(), 1);
  EXPECT_EQ(b.t.protocol_violations(), 0u);
}

TEST_F(TransportSnapshotTest, PendingInterruptIsRaisedAgain) {
  Slot a(mem);
  MmioTransportState saved = running_state(a);
  ASSERT_NE(saved.interrupt_status, 0u);  // the used-buffer interrupt was not acknowledged
  Slot b(mem);
  b.t.restore(saved);
  EXPECT_GE(b.irq.edges, 1);
  EXPECT_EQ(reg_read(b.t, kInterruptStatus), saved.interrupt_status);
}

TEST_F(TransportSnapshotTest, NeedsResetIsKeptAndTheDeviceStaysStopped) {
  Slot a(mem);
  MmioTransportState saved = running_state(a);
  saved.device_activated = false;
  saved.needs_reset = true;
  Slot b(mem);
  b.t.restore(saved);
  EXPECT_FALSE(b.dev->is_active());
  EXPECT_EQ(reg_read(b.t, kStatus) & kStatusNeedsReset, kStatusNeedsReset);
  // The driver's reset brings it back.
  EXPECT_EQ(setup_device(b.t, {&q}) & kStatusDriverOk, kStatusDriverOk);
  EXPECT_TRUE(b.dev->is_active());
}

TEST_F(TransportSnapshotTest, RefusesImpossibleStates) {
  Slot a(mem);
  const MmioTransportState good = running_state(a);
  struct Case {
    const char* expect;  // in the message
    std::function<void(MmioTransportState&)> spoil;
  };
  const Case cases[] = {
      {"2 queues", [](auto& s) { s.queues.push_back(s.queues[0]); }},
      {"0 queues", [](auto& s) { s.queues.clear(); }},
      {"queue 0: queue size 32", [](auto& s) { s.queues[0].size = 32; }},
      {"queue 0: used ring", [](auto& s) { s.queues[0].used_ring = 1ull << 40; }},
      {"queue 0: descriptor table", [](auto& s) { s.queues[0].desc_table = 8; }},
      {"queue 0: event_idx", [](auto& s) { s.queues[0].event_idx = false; }},
      {"driver_features", [](auto& s) { s.driver_features |= 1ull << 50; }},
      {"VERSION_1", [](auto& s) { s.driver_features &= ~virtio::kFeatureVersion1; }},
      {"status", [](auto& s) { s.status |= 0x20; }},
      {"status", [](auto& s) { s.status |= kStatusNeedsReset; }},
      {"without FEATURES_OK", [](auto& s) { s.status &= ~kStatusFeaturesOk; }},
      {"interrupt_status", [](auto& s) { s.interrupt_status = 4; }},
      {"device_activated", [](auto& s) { s.status = 3; }},
      {"neither running", [](auto& s) { s.device_activated = false; }},
  };
  for (const Case& c : cases) {
    MmioTransportState bad = good;
    c.spoil(bad);
    Slot b(mem);
    std::string why = restore_error(b, bad);
    EXPECT_NE(why.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "', got '" << why << "'";
    EXPECT_FALSE(b.dev->is_active()) << c.expect;
    EXPECT_EQ(reg_read(b.t, kStatus), 0u) << c.expect;
  }
  Slot b(mem);
  EXPECT_EQ(restore_error(b, good), "");
}

// What validate() refuses without a device: a register view no driver can leave behind.
TEST(TransportState, ValidateRefusesImpossibleRegisterViews) {
  MmioTransportState good;
  good.status = 0xf;
  good.driver_features = virtio::kFeatureVersion1 | virtio::kFeatureEventIdx;
  good.device_activated = true;
  good.queues.push_back({16, true, 0x1000, 0x2000, 0x3000, 0, 0, true});
  EXPECT_NO_THROW(good.validate());
  struct Case {
    const char* expect;
    std::function<void(MmioTransportState&)> spoil;
  };
  const Case cases[] = {
      {"status 0x2f has unknown bits", [](auto& s) { s.status |= 0x20; }},
      {"DRIVER_OK without FEATURES_OK", [](auto& s) { s.status &= ~kStatusFeaturesOk; }},
      {"lacking VERSION_1", [](auto& s) { s.driver_features &= ~virtio::kFeatureVersion1; }},
      {"interrupt_status 0x4", [](auto& s) { s.interrupt_status = 4; }},
      {"device_activated without DRIVER_OK", [](auto& s) { s.status = 3; }},
      {"neither running", [](auto& s) { s.device_activated = false; }},
      {"queue 0: event_idx", [](auto& s) { s.queues[0].event_idx = false; }},
      {"65 queues (limit 64)", [](auto& s) { s = {}, s.queues.resize(65); }},
  };
  for (const Case& c : cases) {
    MmioTransportState bad = good;
    c.spoil(bad);
    try {
      bad.validate();
      ADD_FAILURE() << "accepted: " << c.expect;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("transport state: ", 0), 0u) << e.what();
    }
  }
}

TEST_F(TransportSnapshotTest, RefusesATransportAlreadyInUse) {
  Slot a(mem);
  MmioTransportState saved = running_state(a);
  EXPECT_NE(restore_error(a, saved).find("already"), std::string::npos);
}

// ---- devices --------------------------------------------------------------------------------

using testing::MemoryDisk;

std::string device_error(VirtioDevice& d, const VirtioDeviceState& s) {
  try {
    d.restore_state(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceSnapshot, BlockChecksTheDiskIsTheSame) {
  VirtioBlock a(std::make_unique<MemoryDisk>(64 * 512, true));
  VirtioDeviceState saved = a.save_state();
  EXPECT_EQ(std::get<BlockState>(saved), (BlockState{64, true, VirtioBlock::kSegMax}));

  VirtioBlock same(std::make_unique<MemoryDisk>(64 * 512, true));
  EXPECT_EQ(device_error(same, saved), "");
  VirtioBlock bigger(std::make_unique<MemoryDisk>(65 * 512, true));
  EXPECT_NE(device_error(bigger, saved).find("capacity_sectors"), std::string::npos);
  VirtioBlock writable_disk(std::make_unique<MemoryDisk>(64 * 512, false));
  EXPECT_NE(device_error(writable_disk, saved).find("read_only"), std::string::npos);
  BlockState other_seg = std::get<BlockState>(saved);
  other_seg.seg_max = 1;
  EXPECT_NE(device_error(same, other_seg).find("seg_max"), std::string::npos);
  EXPECT_NE(device_error(same, RngState{}).find("virtio-rng"), std::string::npos);
  EXPECT_NE(device_error(same, VsockState{3}).find("virtio-vsock"), std::string::npos);
}

TEST(DeviceSnapshot, RngAcceptsOnlyItsOwnKind) {
  VirtioRng rng;
  EXPECT_TRUE(std::holds_alternative<RngState>(rng.save_state()));
  EXPECT_EQ(device_error(rng, RngState{}), "");
  EXPECT_NE(device_error(rng, BlockState{}).find("virtio-blk"), std::string::npos);
  EXPECT_NE(device_error(rng, VsockState{3}).find("virtio-vsock"), std::string::npos);
}

class VsockSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wisp-vsock-snap-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Each device gets its own socket, as each clone does.
  std::shared_ptr<VirtioVsock> make(uint64_t cid) {
    return std::make_shared<VirtioVsock>(
        VsockSpec{dir_ + "/v" + std::to_string(++sockets_) + ".sock", cid});
  }

  GuestMemory mem = GuestMemory::create(1 << 20);
  MockQueue rx{mem, 0x10000, 16, 0x80000};
  MockQueue tx{mem, 0x20000, 16, 0x90000};
  MockQueue ev{mem, 0x30000, 16, 0xa0000};
  std::string dir_;
  int sockets_ = 0;
};

TEST_F(VsockSnapshotTest, RestoreAdoptsTheSavedCid) {
  auto a = make(7);
  VirtioDeviceState saved = a->save_state();
  EXPECT_EQ(std::get<VsockState>(saved).guest_cid, 7u);
  auto b = make(3);
  b->restore_state(saved);
  EXPECT_EQ(b->guest_cid(), 7u);
  uint64_t config = 0;
  b->read_config(0, {reinterpret_cast<uint8_t*>(&config), 8});
  EXPECT_EQ(config, 7u);
  EXPECT_EQ(b->save_state(), saved);
}

TEST_F(VsockSnapshotTest, RefusesWrongKindsAndReservedCids) {
  auto b = make(3);
  EXPECT_NE(device_error(*b, RngState{}).find("virtio-rng"), std::string::npos);
  EXPECT_NE(device_error(*b, BlockState{}).find("virtio-blk"), std::string::npos);
  EXPECT_NE(device_error(*b, VsockState{2}).find("CID 2"), std::string::npos);
  EXPECT_NE(device_error(*b, VsockState{1ull << 32}).find("CID"), std::string::npos);
  EXPECT_EQ(b->guest_cid(), 3u);
}

uint32_t event_id(const MockQueue& q, uint64_t addr) {
  uint32_t id = 0xffffffff;
  auto raw = q.bytes(addr, 4);
  std::memcpy(&id, raw.data(), 4);
  return id;
}

TEST_F(VsockSnapshotTest, TransportResetGoesOutWhenTheRestoredDeviceActivates) {
  auto a = make(9);
  CountingIrq irq_a;
  MmioTransport ta(a, mem, irq_a, "vsock-a");
  ASSERT_EQ(setup_device(ta, {&rx, &tx, &ev}) & kStatusDriverOk, kStatusDriverOk);
  uint64_t buf = ev.alloc(4, 0xee);
  ev.add_chain({writable(buf, 4)});  // Linux keeps event buffers posted
  MmioTransportState saved = ta.save();
  VirtioDeviceState dev_state = a->save_state();
  EXPECT_EQ(ev.used_idx(), 0);

  auto b = make(3);
  CountingIrq irq_b;
  MmioTransport tb(b, mem, irq_b, "vsock-b");
  b->restore_state(dev_state);
  tb.restore(saved);
  EXPECT_EQ(b->guest_cid(), 9u);
  ASSERT_EQ(ev.used_idx(), 1);  // delivered at activation, without waiting for a kick
  EXPECT_EQ(ev.used_elem(0).second, 4u);
  EXPECT_EQ(event_id(ev, buf), vsock::kEventTransportReset);
  EXPECT_GE(irq_b.edges, 1);
}

TEST_F(VsockSnapshotTest, TransportResetWaitsForAnEventBuffer) {
  auto a = make(9);
  CountingIrq irq_a;
  MmioTransport ta(a, mem, irq_a, "vsock-a");
  ASSERT_EQ(setup_device(ta, {&rx, &tx, &ev}) & kStatusDriverOk, kStatusDriverOk);
  MmioTransportState saved = ta.save();

  auto b = make(3);
  CountingIrq irq_b;
  MmioTransport tb(b, mem, irq_b, "vsock-b");
  b->restore_state(a->save_state());
  tb.restore(saved);
  EXPECT_EQ(ev.used_idx(), 0);
  uint64_t buf = ev.alloc(4, 0xee);
  ev.add_chain({writable(buf, 4)});
  tb.handle_queue_event(VirtioVsock::kEventQueue);
  ASSERT_EQ(ev.used_idx(), 1);
  EXPECT_EQ(event_id(ev, buf), vsock::kEventTransportReset);
  // Only once.
  ev.add_chain({writable(ev.alloc(4), 4)});
  tb.handle_queue_event(VirtioVsock::kEventQueue);
  EXPECT_EQ(ev.used_idx(), 1);
}

TEST_F(VsockSnapshotTest, ABootedDeviceSendsNoEvent) {
  auto a = make(9);
  CountingIrq irq;
  MmioTransport t(a, mem, irq, "vsock");
  ev.add_chain({writable(ev.alloc(4), 4)});
  ASSERT_EQ(setup_device(t, {&rx, &tx, &ev}) & kStatusDriverOk, kStatusDriverOk);
  t.handle_queue_event(VirtioVsock::kEventQueue);
  EXPECT_EQ(ev.used_idx(), 0);
}

}  // namespace
}  // namespace wisp
