// libFuzzer target for the split-virtqueue chain walker. The input is a queue configuration
// followed by the contents of a small guest RAM: descriptor tables, rings, indirect tables and
// indexes are whatever the fuzzer writes. The target pops every available chain, walks its
// buffers through the copy and view helpers, returns it, and runs the notification logic,
// checking that nothing it was handed lies outside guest RAM.
//
// Build and run: scripts/fuzz.sh (clang++, -fsanitize=fuzzer,address,undefined).
#include <cstdint>
#include <cstring>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"

namespace {

using wisp::GuestAddress;
using wisp::GuestMemory;

// Small enough that fuzzer-made addresses land in it often; masks below reach twice as far so
// half of them fall outside.
constexpr uint64_t kMemBytes = 8192;
constexpr uint64_t kAddrMask = 2 * kMemBytes - 1;

struct Config {
  uint16_t size;
  uint16_t max_size;
  uint16_t next_avail;
  uint16_t next_used;
  uint8_t flags;  // bit 0: EVENT_IDX, bit 1: raw 64-bit addresses, bit 2: ready
  uint8_t pad[3];
  uint64_t desc;
  uint64_t avail;
  uint64_t used;
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_ranges(const GuestMemory& mem, const std::vector<wisp::GuestRange>& ranges,
                  uint64_t total) {
  uint64_t sum = 0;
  for (const auto& r : ranges) {
    check(r.len > 0);
    check(mem.slice(r.addr, r.len).size() == r.len);  // the walker promised it is RAM
    sum += r.len;
  }
  check(sum == total);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory mem = GuestMemory::create(kMemBytes);
  if (size < sizeof(Config)) return 0;
  Config c;
  std::memcpy(&c, data, sizeof(c));
  auto ram = mem.slice(GuestAddress(0), kMemBytes);
  std::memset(ram.data(), 0, ram.size());
  std::memcpy(ram.data(), data + sizeof(c), std::min<size_t>(size - sizeof(c), kMemBytes));

  wisp::QueueState s;
  s.size = c.size & 0x3ff;
  s.ready = (c.flags & 4) == 0;
  bool raw = c.flags & 2;
  s.desc_table = raw ? c.desc : c.desc & kAddrMask;
  s.avail_ring = raw ? c.avail : c.avail & kAddrMask;
  s.used_ring = raw ? c.used : c.used & kAddrMask;
  s.next_avail = c.next_avail;
  s.next_used = c.next_used;
  s.event_idx = c.flags & 1;
  uint16_t max_size = c.max_size & 0x7ff;

  auto q = wisp::Queue::restore(s, max_size, mem);
  if (!q) return 0;
  check(!s.ready || (q->size() && q->size() <= max_size));

  std::vector<uint8_t> scratch(512);
  // pop() consumes at most `size` entries before the ring is empty. Past a few dozen chains
  // the walk only repeats itself, so stop there: more executions per second find more.
  for (int i = 0; i < 64; ++i) {
    q->disable_notification(mem);
    auto chain = q->pop(mem);
    if (!chain) break;
    if (!chain->ok()) {
      check(chain->readable().empty() && chain->writable().empty());
      q->add_used(mem, chain->head(), 0);
      continue;
    }
    check(chain->head() < q->size());
    check_ranges(mem, chain->readable(), chain->readable_bytes());
    check_ranges(mem, chain->writable(), chain->writable_bytes());
    size_t got = chain->read(mem, 0, scratch);
    check(got == std::min<uint64_t>(scratch.size(), chain->readable_bytes()));
    auto rv = chain->readable_views(mem, 1,
                                    chain->readable_bytes() > 1 ? chain->readable_bytes() - 1 : 0);
    (void)rv;
    size_t put = chain->write(mem, 0, scratch);
    check(put == std::min<uint64_t>(scratch.size(), chain->writable_bytes()));
    auto wv = chain->writable_views(mem, 0, chain->writable_bytes());
    for (auto& v : wv) check(!v.empty());
    check(q->add_used(mem, chain->head(), static_cast<uint32_t>(put)));
    q->needs_notification(mem);
    q->enable_notification(mem);
  }
  q->needs_notification(mem);
  wisp::QueueState out = q->save();
  check(wisp::Queue::restore(out, max_size, mem).has_value() || !out.ready);
  return 0;
}
