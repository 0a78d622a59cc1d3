#include "vmm/virtio/queue.h"

#include <atomic>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "vmm/virtio/virtio_spec.h"

namespace wisp {
namespace {

static_assert(std::endian::native == std::endian::little,
              "virtio 1.x rings are little-endian; a big-endian host would need byte swaps");

// Layout of the split rings (spec 2.7.5, 2.7.6, 2.7.8).
struct Descriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct UsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElem) == 8);

constexpr uint64_t kRingFlagsOffset = 0;
constexpr uint64_t kRingIdxOffset = 2;
constexpr uint64_t kRingEntriesOffset = 4;

// The ring index and flag fields are written by the guest while we read them (and the other
// way round), so they are accessed as atomics: the compiler may neither tear nor cache them,
// and acquire/release orders them against the descriptors and used elements around them.
// validate() guarantees 2-byte alignment in the guest, and guest RAM is page-aligned in the
// host, so the host address is aligned too; the check below is for safety, not expected to fail.
uint16_t* ring_u16(const GuestMemory& mem, GuestAddress addr) {
  auto s = mem.slice(addr, sizeof(uint16_t));
  if (s.size() != sizeof(uint16_t)) return nullptr;
  if (reinterpret_cast<uintptr_t>(s.data()) % alignof(uint16_t) != 0) return nullptr;
  return reinterpret_cast<uint16_t*>(s.data());
}

std::optional<uint16_t> load_u16(const GuestMemory& mem, GuestAddress addr, std::memory_order o) {
  uint16_t* p = ring_u16(mem, addr);
  if (!p) return std::nullopt;
  return std::atomic_ref<uint16_t>(*p).load(o);
}

bool store_u16(const GuestMemory& mem, GuestAddress addr, uint16_t value, std::memory_order o) {
  uint16_t* p = ring_u16(mem, addr);
  if (!p) return false;
  std::atomic_ref<uint16_t>(*p).store(value, o);
  return true;
}

bool in_ram(const GuestMemory& mem, uint64_t addr, uint64_t len) {
  return mem.slice(GuestAddress(addr), len).size() == len;
}

std::string range_message(const char* what, uint64_t addr, uint64_t len) {
  char buf[160];
  snprintf(buf, sizeof(buf), "%s [0x%" PRIx64 ", +0x%" PRIx64 ") is not inside guest RAM", what,
           addr, len);
  return buf;
}

// Walks `ranges` as one byte stream, calling fn(range address, byte count) for the part
// [offset, offset + len). Returns the number of bytes visited (stops early if fn says false).
template <typename Fn>
uint64_t for_each_piece(const std::vector<GuestRange>& ranges, uint64_t offset, uint64_t len,
                        Fn&& fn) {
  uint64_t done = 0;
  for (const auto& r : ranges) {
    if (done == len) break;
    if (offset >= r.len) {
      offset -= r.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(r.len - offset, len - done);
    // r.addr + r.len was checked to lie in guest RAM, so this addition cannot wrap.
    if (!fn(GuestAddress(r.addr.value() + offset), n)) break;
    done += n;
    offset = 0;
  }
  return done;
}

}  // namespace

const char* chain_error_name(ChainError e) {
  switch (e) {
    case ChainError::kNone:
      return "ok";
    case ChainError::kHeadOutOfRange:
      return "head index out of range";
    case ChainError::kNextOutOfRange:
      return "next index out of range";
    case ChainError::kLoop:
      return "descriptor loop";
    case ChainError::kBufferOutOfRange:
      return "buffer outside guest RAM";
    case ChainError::kWrongDirection:
      return "device-readable buffer after a device-writable one";
    case ChainError::kIndirectNested:
      return "nested indirect table";
    case ChainError::kIndirectWithNext:
      return "indirect descriptor with NEXT set";
    case ChainError::kIndirectBadLength:
      return "indirect table length not a non-zero multiple of 16";
    case ChainError::kIndirectTooLong:
      return "indirect table too long";
    case ChainError::kIndirectOutOfRange:
      return "indirect table outside guest RAM";
  }
  return "?";
}

// ---- DescriptorChain ----------------------------------------------------------------------

size_t DescriptorChain::read(const GuestMemory& mem, uint64_t offset,
                             std::span<uint8_t> out) const {
  return static_cast<size_t>(for_each_piece(
      readable_, offset, out.size(), [&, done = size_t{0}](GuestAddress a, uint64_t n) mutable {
        bool ok = mem.read(a, out.subspan(done, static_cast<size_t>(n)));
        done += static_cast<size_t>(n);
        return ok;
      }));
}

size_t DescriptorChain::write(const GuestMemory& mem, uint64_t offset,
                              std::span<const uint8_t> in) const {
  return static_cast<size_t>(for_each_piece(
      writable_, offset, in.size(), [&, done = size_t{0}](GuestAddress a, uint64_t n) mutable {
        bool ok = mem.write(a, in.subspan(done, static_cast<size_t>(n)));
        done += static_cast<size_t>(n);
        return ok;
      }));
}

namespace {

// Host views of [offset, offset + len) of a chain's buffers; empty unless all of it is RAM.
std::vector<std::span<uint8_t>> guest_views(const std::vector<GuestRange>& ranges,
                                            const GuestMemory& mem, uint64_t offset, uint64_t len) {
  std::vector<std::span<uint8_t>> out;
  uint64_t got = for_each_piece(ranges, offset, len, [&](GuestAddress a, uint64_t n) {
    auto s = mem.slice(a, n);
    if (s.size() != n) return false;
    out.push_back(s);
    return true;
  });
  if (got != len) out.clear();
  return out;
}

}  // namespace

std::vector<std::span<const uint8_t>> DescriptorChain::readable_views(const GuestMemory& mem,
                                                                      uint64_t offset,
                                                                      uint64_t len) const {
  auto views = guest_views(readable_, mem, offset, len);
  return {views.begin(), views.end()};
}

std::vector<std::span<uint8_t>> DescriptorChain::writable_views(const GuestMemory& mem,
                                                                uint64_t offset,
                                                                uint64_t len) const {
  return guest_views(writable_, mem, offset, len);
}

// ---- Queue: validation and state ------------------------------------------------------------

std::string Queue::validate(const QueueState& s, uint16_t max_size, const GuestMemory& mem) {
  if (!s.ready) return "";
  if (max_size == 0 || max_size > kMaxSize || !std::has_single_bit(max_size))
    return "device queue limit " + std::to_string(max_size) + " is not a power of two <= 32768";
  if (s.size == 0) return "queue size is 0";
  if (!std::has_single_bit(s.size))
    return "queue size " + std::to_string(s.size) + " is not a power of two";
  if (s.size > max_size)
    return "queue size " + std::to_string(s.size) + " exceeds the device's maximum " +
           std::to_string(max_size);
  if (s.desc_table % 16 != 0) return "descriptor table address is not 16-byte aligned";
  if (s.avail_ring % 2 != 0) return "available ring address is not 2-byte aligned";
  if (s.used_ring % 4 != 0) return "used ring address is not 4-byte aligned";
  if (!in_ram(mem, s.desc_table, desc_table_bytes(s.size)))
    return range_message("descriptor table", s.desc_table, desc_table_bytes(s.size));
  if (!in_ram(mem, s.avail_ring, avail_ring_bytes(s.size)))
    return range_message("available ring", s.avail_ring, avail_ring_bytes(s.size));
  if (!in_ram(mem, s.used_ring, used_ring_bytes(s.size)))
    return range_message("used ring", s.used_ring, used_ring_bytes(s.size));
  // The used ring is the one area the device writes. Aliasing the available ring or the
  // descriptors with it would let the device's own writes post "new" requests to itself:
  // serving them writes again, and the device never finishes (a guest-made hang).
  auto overlaps = [](uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
    return a < b + blen && b < a + alen;  // all in RAM (checked above): no wrap-around
  };
  if (overlaps(s.used_ring, used_ring_bytes(s.size), s.avail_ring, avail_ring_bytes(s.size)))
    return "used ring overlaps the available ring";
  if (overlaps(s.used_ring, used_ring_bytes(s.size), s.desc_table, desc_table_bytes(s.size)))
    return "used ring overlaps the descriptor table";
  return "";
}

std::optional<Queue> Queue::restore(const QueueState& state, uint16_t max_size,
                                    const GuestMemory& mem, std::string* why) {
  std::string error = validate(state, max_size, mem);
  if (!error.empty()) {
    if (why) *why = std::move(error);
    return std::nullopt;
  }
  return Queue(state);
}

QueueState Queue::save() const { return state_; }

// ---- Queue: the available side --------------------------------------------------------------

std::optional<uint16_t> Queue::avail_idx(const GuestMemory& mem) const {
  // Acquire: the driver writes descriptors and ring entries before it publishes the index
  // (with a write barrier); we must not read them before the index.
  return load_u16(mem, GuestAddress(state_.avail_ring + kRingIdxOffset), std::memory_order_acquire);
}

std::optional<DescriptorChain> Queue::pop(const GuestMemory& mem) {
  if (!state_.ready || broken_) return std::nullopt;
  std::optional<uint16_t> idx = avail_idx(mem);
  if (!idx) {
    broken_ = true;
    return std::nullopt;
  }
  // Free-running 16-bit indexes: the difference is the number pending, across wrap-around.
  uint16_t pending = static_cast<uint16_t>(*idx - state_.next_avail);
  if (pending == 0) return std::nullopt;
  if (pending > state_.size) {
    broken_ = true;  // the driver claims more entries than the ring holds
    return std::nullopt;
  }
  uint64_t slot = state_.next_avail & (state_.size - 1u);  // size is a power of two
  std::optional<uint16_t> head =
      load_u16(mem, GuestAddress(state_.avail_ring + kRingEntriesOffset + 2 * slot),
               std::memory_order_relaxed);
  if (!head) {
    broken_ = true;
    return std::nullopt;
  }
  state_.next_avail = static_cast<uint16_t>(state_.next_avail + 1);
  DescriptorChain chain = walk(mem, *head);
  if (!chain.ok()) ++malformed_chains_;
  return chain;
}

DescriptorChain Queue::walk(const GuestMemory& mem, uint16_t head) const {
  DescriptorChain c;
  c.head_ = head;
  auto fail = [&c](ChainError e) {
    c.error_ = e;
    c.readable_.clear();
    c.writable_.clear();
    c.readable_bytes_ = c.writable_bytes_ = 0;
    return c;
  };
  if (head >= state_.size) return fail(ChainError::kHeadOutOfRange);

  uint64_t table = state_.desc_table;  // validated at restore
  uint32_t count = state_.size;        // descriptors in the current table
  bool indirect = false;
  uint32_t index = head;
  uint32_t hops = 0;
  bool seen_writable = false;
  while (true) {
    // A chain cannot visit more descriptors than its table holds without revisiting one.
    if (++hops > count) return fail(ChainError::kLoop);
    Descriptor d;
    if (!mem.read_obj(GuestAddress(table + 16ull * index), &d))
      return fail(ChainError::kBufferOutOfRange);  // unreachable: tables are checked
    if (d.flags & virtio::kDescFlagIndirect) {
      if (indirect) return fail(ChainError::kIndirectNested);
      if (d.flags & virtio::kDescFlagNext) return fail(ChainError::kIndirectWithNext);
      if (d.len == 0 || d.len % sizeof(Descriptor) != 0)
        return fail(ChainError::kIndirectBadLength);
      if (d.len / sizeof(Descriptor) > kMaxIndirectEntries)
        return fail(ChainError::kIndirectTooLong);
      if (!in_ram(mem, d.addr, d.len)) return fail(ChainError::kIndirectOutOfRange);
      // The chain continues at entry 0 of the table; the WRITE flag of the descriptor that
      // points at the table means nothing (spec 2.7.5.3.2) and is ignored.
      table = d.addr;
      count = d.len / static_cast<uint32_t>(sizeof(Descriptor));
      indirect = true;
      index = 0;
      hops = 0;
      continue;
    }
    if (!in_ram(mem, d.addr, d.len)) return fail(ChainError::kBufferOutOfRange);
    if (d.flags & virtio::kDescFlagWrite) {
      seen_writable = true;
      if (d.len) {
        c.writable_.push_back({GuestAddress(d.addr), d.len});
        c.writable_bytes_ += d.len;
      }
    } else {
      if (seen_writable) return fail(ChainError::kWrongDirection);
      if (d.len) {
        c.readable_.push_back({GuestAddress(d.addr), d.len});
        c.readable_bytes_ += d.len;
      }
    }
    if (!(d.flags & virtio::kDescFlagNext)) return c;
    index = d.next;
    if (index >= count) return fail(ChainError::kNextOutOfRange);
  }
}

// ---- Queue: the used side and notifications -------------------------------------------------

bool Queue::add_used(const GuestMemory& mem, uint16_t head, uint32_t len) {
  if (!state_.ready) return false;
  if (head >= state_.size) {
    ++bad_used_heads_;
    return false;
  }
  uint64_t slot = state_.next_used & (state_.size - 1u);
  UsedElem e{head, len};
  if (!mem.write_obj(GuestAddress(state_.used_ring + kRingEntriesOffset + 8 * slot), e)) {
    broken_ = true;
    return false;
  }
  state_.next_used = static_cast<uint16_t>(state_.next_used + 1);
  // Release: the element (and the data written into the buffers) must be visible before the
  // driver can see the new index.
  store_u16(mem, GuestAddress(state_.used_ring + kRingIdxOffset), state_.next_used,
            std::memory_order_release);
  return true;
}

bool Queue::needs_notification(const GuestMemory& mem) {
  if (!state_.ready) return false;
  // Full fence: our used-index store must be globally visible before we read the driver's
  // used_event/flags, and the driver does the mirror image (store used_event, then read the
  // used index). Without it both sides can miss each other and the guest waits forever.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t new_used = state_.next_used;
  uint16_t old = std::exchange(signalled_used_, new_used);
  if (old == new_used) return false;  // nothing returned since the last decision
  if (!state_.event_idx) {
    auto flags = load_u16(mem, GuestAddress(state_.avail_ring + kRingFlagsOffset),
                          std::memory_order_relaxed);
    return !flags || !(*flags & virtio::kAvailFlagNoInterrupt);
  }
  auto used_event =
      load_u16(mem, GuestAddress(state_.avail_ring + kRingEntriesOffset + 2ull * state_.size),
               std::memory_order_relaxed);
  if (!used_event) return true;
  // vring_need_event(): interrupt when used_event lies in [old, new), on the wrapping axis.
  return static_cast<uint16_t>(new_used - *used_event - 1) < static_cast<uint16_t>(new_used - old);
}

void Queue::set_used_flags(const GuestMemory& mem, uint16_t flags) {
  store_u16(mem, GuestAddress(state_.used_ring + kRingFlagsOffset), flags,
            std::memory_order_relaxed);
}

void Queue::set_avail_event(const GuestMemory& mem, uint16_t value) {
  store_u16(mem, GuestAddress(state_.used_ring + kRingEntriesOffset + 8ull * state_.size), value,
            std::memory_order_relaxed);
}

void Queue::disable_notification(const GuestMemory& mem) {
  if (!state_.ready) return;
  // With EVENT_IDX the driver kicks only when its index passes avail_event, which we leave
  // where it is while busy; without it, the NO_NOTIFY flag asks the same.
  if (!state_.event_idx) set_used_flags(mem, virtio::kUsedFlagNoNotify);
}

void Queue::notify_past(const GuestMemory& mem, uint16_t idx) {
  if (!state_.ready || broken_) return;
  if (state_.event_idx) {
    set_avail_event(mem, idx);
  } else {
    set_used_flags(mem, 0);
  }
  // Publish before the caller re-reads the index (see enable_notification).
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool Queue::enable_notification(const GuestMemory& mem) {
  if (!state_.ready || broken_) return false;
  if (state_.event_idx) {
    set_avail_event(mem, state_.next_avail);
  } else {
    set_used_flags(mem, 0);
  }
  // Full fence: publish the request for kicks before re-reading the index, or a chain added
  // between our last pop and the store above would get neither a kick nor a look.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::optional<uint16_t> idx = avail_idx(mem);
  return idx && *idx != state_.next_avail;
}

}  // namespace wisp
