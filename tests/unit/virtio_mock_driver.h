// A mock virtio driver for unit tests: lays out a split virtqueue (descriptor table, available
// and used rings) in a GuestMemory the way a guest driver would, posts chains (good ones and
// deliberately broken ones) and reads back what the device returned. Also register helpers for
// driving an MmioTransport and a harness that activates a device without a transport.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/mmio_transport.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/virtio_spec.h"

namespace wisp::testing {

struct RawDesc {
  uint64_t addr = 0;
  uint32_t len = 0;
  uint16_t flags = 0;
  uint16_t next = 0;
};

// One buffer of a chain to post: device-readable unless `writable`.
struct Buf {
  uint64_t addr;
  uint32_t len;
  bool writable = false;
};

inline Buf readable(uint64_t addr, uint32_t len) { return {addr, len, false}; }
inline Buf writable(uint64_t addr, uint32_t len) { return {addr, len, true}; }

// The driver's half of one split queue at `base` (desc table, then avail ring, then the used
// ring on its own page), plus a bump allocator for buffers starting at `data`.
class MockQueue {
 public:
  MockQueue(const GuestMemory& mem, uint64_t base, uint16_t size, uint64_t data)
      : mem_(mem), size_(size), desc_(base), next_data_(data) {
    avail_ = desc_ + 16ull * size;
    used_ = (avail_ + 6 + 2ull * size + 4095) & ~4095ull;
    auto zero = [&](uint64_t a, uint64_t n) {
      std::memset(mem.slice(GuestAddress(a), n).data(), 0, n);
    };
    zero(desc_, 16ull * size);
    zero(avail_, 6 + 2ull * size);
    zero(used_, 6 + 8ull * size);
  }

  uint16_t size() const { return size_; }
  uint64_t desc_addr() const { return desc_; }
  uint64_t avail_addr() const { return avail_; }
  uint64_t used_addr() const { return used_; }

  // State a transport would hand the device for this queue.
  QueueState state(bool event_idx = false) const {
    QueueState s;
    s.size = size_;
    s.ready = true;
    s.desc_table = desc_;
    s.avail_ring = avail_;
    s.used_ring = used_;
    s.event_idx = event_idx;
    s.next_avail = avail_idx_;
    s.next_used = avail_idx_;
    return s;
  }
  Queue make_queue(bool event_idx = false, uint16_t max_size = Queue::kMaxSize) const {
    std::string why;
    auto q = Queue::restore(state(event_idx), max_size, mem_, &why);
    EXPECT_TRUE(q.has_value()) << why;
    return std::move(*q);
  }

  // Allocates guest bytes for buffers (16-byte aligned), optionally filled with `fill`.
  uint64_t alloc(uint64_t len, uint8_t fill = 0) {
    uint64_t a = next_data_;
    next_data_ = (next_data_ + len + 15) & ~15ull;
    if (len) std::memset(mem_.slice(GuestAddress(a), len).data(), fill, len);
    return a;
  }

  void set_desc(uint16_t index, const RawDesc& d) { write_desc(desc_ + 16ull * index, d); }
  void write_desc(uint64_t addr, const RawDesc& d) {
    ASSERT_TRUE(mem_.write_obj(GuestAddress(addr), d));
  }
  // Writes an indirect table of `descs` at a fresh allocation; returns its address.
  uint64_t write_table(const std::vector<RawDesc>& descs) {
    uint64_t a = alloc(16 * descs.size());
    for (size_t i = 0; i < descs.size(); ++i) write_desc(a + 16 * i, descs[i]);
    return a;
  }

  // Writes `bufs` as a chain into free descriptors (round robin) and publishes it. Returns the
  // head index.
  uint16_t add_chain(const std::vector<Buf>& bufs) {
    uint16_t head = next_desc_;
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t idx = next_desc_;
      next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
      RawDesc d{bufs[i].addr, bufs[i].len, 0, 0};
      if (bufs[i].writable) d.flags |= virtio::kDescFlagWrite;
      if (i + 1 < bufs.size()) {
        d.flags |= virtio::kDescFlagNext;
        d.next = next_desc_;
      }
      set_desc(idx, d);
    }
    publish(head);
    return head;
  }

  // Puts `head` in the next available-ring slot and bumps the index.
  void publish(uint16_t head) {
    write16(avail_ + 4 + 2ull * (avail_idx_ % size_), head);
    avail_idx_ = static_cast<uint16_t>(avail_idx_ + 1);
    write16(avail_ + 2, avail_idx_);
  }

  // Starts both free-running indexes at `idx` (for wrap-around tests).
  void start_at(uint16_t idx) {
    avail_idx_ = idx;
    write16(avail_ + 2, idx);
    write16(used_ + 2, idx);
  }
  void set_avail_idx(uint16_t idx) { write16(avail_ + 2, idx); }
  void set_avail_flags(uint16_t f) { write16(avail_, f); }
  void set_used_event(uint16_t v) { write16(avail_ + 4 + 2ull * size_, v); }

  uint16_t used_idx() const { return read16(used_ + 2); }
  uint16_t used_flags() const { return read16(used_); }
  uint16_t avail_event() const { return read16(used_ + 4 + 8ull * size_); }
  // The used element written for the n-th returned chain (free-running n).
  std::pair<uint32_t, uint32_t> used_elem(uint16_t n) const {
    uint32_t e[2];
    mem_.read(GuestAddress(used_ + 4 + 8ull * (n % size_)), {reinterpret_cast<uint8_t*>(e), 8});
    return {e[0], e[1]};
  }

  std::vector<uint8_t> bytes(uint64_t addr, uint64_t len) const {
    std::vector<uint8_t> out(len);
    mem_.read(GuestAddress(addr), out);
    return out;
  }
  void put(uint64_t addr, const void* p, uint64_t len) {
    mem_.write(GuestAddress(addr), {static_cast<const uint8_t*>(p), len});
  }

 private:
  void write16(uint64_t a, uint16_t v) { mem_.write_obj(GuestAddress(a), v); }
  uint16_t read16(uint64_t a) const {
    uint16_t v = 0;
    mem_.read_obj(GuestAddress(a), &v);
    return v;
  }

  const GuestMemory& mem_;
  uint16_t size_;
  uint64_t desc_, avail_ = 0, used_ = 0;
  uint64_t next_data_;
  uint16_t next_desc_ = 0;
  uint16_t avail_idx_ = 0;
};

// Records what a device signals (used in place of a transport).
struct RecordingSignals : VirtioSignals {
  std::vector<uint16_t> used;
  int config_changes = 0;
  int needs_reset = 0;
  std::vector<uint16_t> requeued;
  void signal_used_queue(uint16_t q) override { used.push_back(q); }
  void requeue(uint16_t q) override { requeued.push_back(q); }
  void signal_config_change() override { ++config_changes; }
  void set_needs_reset() override { ++needs_reset; }
};

// Counts interrupt edges.
struct CountingIrq : IrqLine {
  int edges = 0;
  void trigger() override { ++edges; }
};

// 32-bit register access to a transport, as the guest's readl/writel.
inline uint32_t reg_read(MmioTransport& t, uint64_t off) {
  uint32_t v = 0;
  t.read(off, {reinterpret_cast<uint8_t*>(&v), 4});
  return v;
}
inline void reg_write(MmioTransport& t, uint64_t off, uint32_t v) {
  t.write(off, {reinterpret_cast<const uint8_t*>(&v), 4});
}

// The driver's probe sequence (as Linux's virtio_mmio does it): reset, ACKNOWLEDGE, DRIVER,
// features (all offered ones, masked by `feature_mask`), FEATURES_OK, queue setup for every
// queue in `queues`, DRIVER_OK. Returns the final status register.
inline uint32_t setup_device(MmioTransport& t, std::vector<MockQueue*> queues,
                             uint64_t feature_mask = ~0ull) {
  using namespace virtio_mmio;
  reg_write(t, kStatus, 0);
  reg_write(t, kStatus, virtio::kStatusAcknowledge);
  reg_write(t, kStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
  reg_write(t, kDeviceFeaturesSel, 1);
  uint64_t f = static_cast<uint64_t>(reg_read(t, kDeviceFeatures)) << 32;
  reg_write(t, kDeviceFeaturesSel, 0);
  f |= reg_read(t, kDeviceFeatures);
  f &= feature_mask;
  reg_write(t, kDriverFeaturesSel, 1);
  reg_write(t, kDriverFeatures, static_cast<uint32_t>(f >> 32));
  reg_write(t, kDriverFeaturesSel, 0);
  reg_write(t, kDriverFeatures, static_cast<uint32_t>(f));
  uint32_t s = virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk;
  reg_write(t, kStatus, s);
  for (size_t i = 0; i < queues.size(); ++i) {
    MockQueue* q = queues[i];
    reg_write(t, kQueueSel, static_cast<uint32_t>(i));
    reg_write(t, kQueueNum, q->size());
    reg_write(t, kQueueDescLow, static_cast<uint32_t>(q->desc_addr()));
    reg_write(t, kQueueDescHigh, static_cast<uint32_t>(q->desc_addr() >> 32));
    reg_write(t, kQueueDriverLow, static_cast<uint32_t>(q->avail_addr()));
    reg_write(t, kQueueDriverHigh, static_cast<uint32_t>(q->avail_addr() >> 32));
    reg_write(t, kQueueDeviceLow, static_cast<uint32_t>(q->used_addr()));
    reg_write(t, kQueueDeviceHigh, static_cast<uint32_t>(q->used_addr() >> 32));
    reg_write(t, kQueueReady, 1);
  }
  reg_write(t, kStatus, s | virtio::kStatusDriverOk);
  return reg_read(t, kStatus);
}

// Activates a device directly on mock queues, without a transport: for device tests.
class DeviceHarness {
 public:
  static constexpr uint64_t kMemBytes = 4 << 20;

  explicit DeviceHarness(VirtioDevice& dev, bool event_idx = false)
      : dev_(dev), mem_(GuestMemory::create(kMemBytes)) {
    for (uint16_t i = 0; i < dev.num_queues(); ++i)
      queues_.push_back(std::make_unique<MockQueue>(
          mem_, 0x10000 + 0x10000ull * i, dev.queue_max_size(i), 0x100000 + 0x80000ull * i));
    std::vector<Queue> live;
    for (uint16_t i = 0; i < dev.num_queues(); ++i)
      live.push_back(queues_[i]->make_queue(event_idx, dev.queue_max_size(i)));
    uint64_t features = dev.device_features() | MmioTransport::kTransportFeatures;
    if (!event_idx) features &= ~virtio::kFeatureEventIdx;
    activated_ = dev.activate(ActivateArgs{mem_, std::move(live), features, signals_});
  }
  ~DeviceHarness() { dev_.reset(); }

  bool activated() const { return activated_; }
  const GuestMemory& mem() const { return mem_; }
  MockQueue& q(uint16_t i = 0) { return *queues_[i]; }
  RecordingSignals& signals() { return signals_; }
  void kick(uint16_t i = 0) { dev_.queue_notify(i); }

 private:
  VirtioDevice& dev_;
  GuestMemory mem_;
  std::vector<std::unique_ptr<MockQueue>> queues_;
  RecordingSignals signals_;
  bool activated_ = false;
};

}  // namespace wisp::testing
