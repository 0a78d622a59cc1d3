// The split virtqueue (virtio 1.2 section 2.7) from the device's side. The driver in the guest is
// treated as hostile: every address it hands us is checked against guest RAM, every index against
// the table it indexes, every walk is bounded. A malformed chain is counted and handed back as an
// error value; nothing here throws for guest input or touches host memory outside the guest.
//
// A Queue holds guest addresses only, never host pointers, and is given the GuestMemory on each
// call. It is not thread-safe: one thread (the device's event-loop thread, under the device lock)
// owns it after activation.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/memory/guest_address.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

// A guest buffer [addr, addr + len) that was inside guest RAM (one region) when its chain was
// popped. Guest RAM does not shrink while a VM runs, so it stays valid.
struct GuestRange {
  GuestAddress addr;
  uint32_t len = 0;
};

// Why a chain was refused. The chain's head is still returned so the device can give it back.
enum class ChainError : uint8_t {
  kNone,
  kHeadOutOfRange,      // the available ring names a descriptor index >= the queue size
  kNextOutOfRange,      // a `next` field points past the end of its table
  kLoop,                // more hops than the table has descriptors: the chain has a cycle
  kBufferOutOfRange,    // a buffer is not entirely inside guest RAM
  kWrongDirection,      // a device-readable buffer after a device-writable one
  kIndirectNested,      // an indirect descriptor inside an indirect table
  kIndirectWithNext,    // INDIRECT and NEXT both set on one descriptor
  kIndirectBadLength,   // an indirect table of 0 bytes or not a multiple of 16
  kIndirectTooLong,     // an indirect table above Queue::kMaxIndirectEntries descriptors
  kIndirectOutOfRange,  // an indirect table not entirely inside guest RAM
};
const char* chain_error_name(ChainError e);

// One request: the buffers of a descriptor chain, device-readable ones first (the order the
// driver gave them), then device-writable ones. Zero-length buffers are dropped.
class DescriptorChain {
 public:
  uint16_t head() const { return head_; }
  ChainError error() const { return error_; }
  bool ok() const { return error_ == ChainError::kNone; }

  const std::vector<GuestRange>& readable() const { return readable_; }
  const std::vector<GuestRange>& writable() const { return writable_; }
  uint64_t readable_bytes() const { return readable_bytes_; }
  uint64_t writable_bytes() const { return writable_bytes_; }

  // Copies bytes of the device-readable part, as one stream starting `offset` bytes in, into
  // `out`. Returns how many bytes were copied (less than out.size() at the end of the stream).
  size_t read(const GuestMemory& mem, uint64_t offset, std::span<uint8_t> out) const;
  // Copies `in` into the device-writable part, starting `offset` bytes in. Returns bytes copied.
  size_t write(const GuestMemory& mem, uint64_t offset, std::span<const uint8_t> in) const;

  // Host views of `len` bytes of the readable (or writable) stream starting `offset` bytes in,
  // for zero-copy I/O (e.g. pread straight into the guest's buffers). Returns an empty vector
  // when [offset, offset+len) is not all inside the stream.
  std::vector<std::span<const uint8_t>> readable_views(const GuestMemory& mem, uint64_t offset,
                                                       uint64_t len) const;
  std::vector<std::span<uint8_t>> writable_views(const GuestMemory& mem, uint64_t offset,
                                                 uint64_t len) const;

 private:
  friend class Queue;
  uint16_t head_ = 0;
  ChainError error_ = ChainError::kNone;
  std::vector<GuestRange> readable_;
  std::vector<GuestRange> writable_;
  uint64_t readable_bytes_ = 0;
  uint64_t writable_bytes_ = 0;
};

// A queue's saved state: plain data, untrusted (it may come from a snapshot file or from guest
// register writes). Only Queue::restore turns it into a live queue, after validating it.
struct QueueState {
  uint16_t size = 0;  // QueueNum: the number of descriptors the driver chose
  bool ready = false;
  uint64_t desc_table = 0;  // QueueDesc: descriptor table
  uint64_t avail_ring = 0;  // QueueDriver: available ("driver") ring
  uint64_t used_ring = 0;   // QueueDevice: used ("device") ring
  uint16_t next_avail = 0;  // next available-ring slot the device will read (free-running)
  uint16_t next_used = 0;   // next used-ring slot the device will write (free-running)
  bool event_idx = false;   // VIRTIO_RING_F_EVENT_IDX was negotiated
  bool operator==(const QueueState&) const = default;

  // Every field by name, for the snapshot codec (see vmm/virtio/kind_list.h).
  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("size", self.size);
    f("ready", self.ready);
    f("desc_table", self.desc_table);
    f("avail_ring", self.avail_ring);
    f("used_ring", self.used_ring);
    f("next_avail", self.next_avail);
    f("next_used", self.next_used);
    f("event_idx", self.event_idx);
  }
};

class Queue {
 public:
  // The spec's ceiling for a split queue's size.
  static constexpr uint16_t kMaxSize = 32768;
  // Bound on one indirect table (QEMU uses the same), so a chain's length is bounded by
  // size + kMaxIndirectEntries whatever the guest writes.
  static constexpr uint32_t kMaxIndirectEntries = 1024;

  // Ring sizes in bytes for a queue of `size` descriptors (spec 2.7: the avail ring carries
  // used_event and the used ring avail_event, whether or not EVENT_IDX is negotiated).
  static uint64_t desc_table_bytes(uint16_t size) { return 16ull * size; }
  static uint64_t avail_ring_bytes(uint16_t size) { return 6 + 2ull * size; }
  static uint64_t used_ring_bytes(uint16_t size) { return 6 + 8ull * size; }

  // Returns "" when `state` is acceptable for a queue whose device allows `max_size`
  // descriptors, else what is wrong. A ready queue needs a power-of-two size in [1, max_size]
  // and rings that are aligned (16/2/4) and lie entirely in guest RAM. A queue that is not
  // ready is acceptable whatever its other fields hold: they are not used.
  static std::string validate(const QueueState& state, uint16_t max_size, const GuestMemory& mem);

  // Builds a live queue from untrusted state; nullopt (with the reason in `*why`) when
  // validate() refuses it.
  static std::optional<Queue> restore(const QueueState& state, uint16_t max_size,
                                      const GuestMemory& mem, std::string* why = nullptr);
  QueueState save() const;

  bool ready() const { return state_.ready; }
  uint16_t size() const { return state_.size; }
  uint16_t next_avail() const { return state_.next_avail; }
  uint16_t next_used() const { return state_.next_used; }

  // Takes the next available chain. nullopt when there is none, when the queue is not ready,
  // or when the ring itself is broken (see broken()). A chain with ok() == false was consumed
  // from the ring and counted; the device should return it with add_used(head, 0).
  std::optional<DescriptorChain> pop(const GuestMemory& mem);

  // Puts the chain the last pop() took back on the ring, for a device that found it cannot
  // serve it yet (e.g. vsock with no data to deliver): the next pop() returns it again.
  void undo_pop() { state_.next_avail = static_cast<uint16_t>(state_.next_avail - 1); }

  // Returns `head` to the driver with `len` bytes written into its device-writable buffers.
  // Returns false (and counts it) when `head` is not a valid descriptor index.
  bool add_used(const GuestMemory& mem, uint16_t head, uint32_t len);

  // After add_used calls: whether the driver wants an interrupt now (used_event with
  // EVENT_IDX, else the avail ring's NO_INTERRUPT flag). Remembers what it signalled, so call it
  // once per batch and raise the interrupt when it says so.
  bool needs_notification(const GuestMemory& mem);

  // Suppression of driver notifications while the device is busy draining the ring, and
  // re-enabling when it goes idle. enable_notification() returns true when more chains arrived
  // meanwhile, in which case the device must keep draining (or it would miss a kick):
  //   do { q.disable_notification(mem); while (auto c = q.pop(mem)) {...} }
  //   while (q.enable_notification(mem));
  void disable_notification(const GuestMemory& mem);
  bool enable_notification(const GuestMemory& mem);

  // The avail index the driver last published (nullopt: the ring is unreadable). For a device
  // that waits for the driver to add a buffer, not to take one (vsock: the driver refills its
  // event queue once it has handled an event).
  std::optional<uint16_t> available_index(const GuestMemory& mem) const { return avail_idx(mem); }
  // Asks for a kick once the driver publishes an avail index past `idx` (EVENT_IDX: avail_event;
  // else the NO_NOTIFY flag cleared). enable_notification() asks at next_avail, which a driver
  // with buffers still posted beyond it has passed already, so it would not kick again.
  void notify_past(const GuestMemory& mem, uint16_t idx);

  // The driver published an impossible available index (more than `size` entries pending) or
  // the rings stopped being readable. The queue then stays empty; the device should ask for a
  // reset (NEEDS_RESET).
  bool broken() const { return broken_; }
  uint64_t malformed_chains() const { return malformed_chains_; }
  uint64_t bad_used_heads() const { return bad_used_heads_; }

 private:
  explicit Queue(const QueueState& state) : state_(state), signalled_used_(state.next_used) {}
  DescriptorChain walk(const GuestMemory& mem, uint16_t head) const;
  std::optional<uint16_t> avail_idx(const GuestMemory& mem) const;
  void set_used_flags(const GuestMemory& mem, uint16_t flags);
  void set_avail_event(const GuestMemory& mem, uint16_t value);

  QueueState state_;
  bool broken_ = false;
  // The used index at the last needs_notification(): what the driver has been told about, as
  // far as interrupts go. Starts at next_used, so a queue with nothing returned stays quiet.
  uint16_t signalled_used_;
  uint64_t malformed_chains_ = 0;
  uint64_t bad_used_heads_ = 0;
};

}  // namespace wisp
