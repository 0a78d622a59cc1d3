#include "vmm/bus/io_bus.h"

#include <cstdio>
#include <cstring>

#include "base/error.h"

namespace wisp {

void IoBus::insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device) {
  uint64_t end;
  if (len == 0 || __builtin_add_overflow(base, len, &end))
    throw Error(name_ + " bus: invalid range at 0x" + std::to_string(base));
  auto next = ranges_.lower_bound(base);
  bool overlaps_next = next != ranges_.end() && next->first < end;
  bool overlaps_prev = false;
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    overlaps_prev = prev->first + prev->second.len > base;
  }
  if (overlaps_next || overlaps_prev) {
    char buf[96];
    snprintf(buf, sizeof(buf), " bus: range [0x%llx, 0x%llx) overlaps a registered device",
             static_cast<unsigned long long>(base), static_cast<unsigned long long>(end));
    throw Error(name_ + buf);
  }
  ranges_.emplace(base, Range{len, std::move(device)});
}

const std::pair<const uint64_t, IoBus::Range>* IoBus::find(uint64_t addr, uint64_t size) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t off = addr - it->first;
  if (off >= it->second.len || size > it->second.len - off) return nullptr;
  return &*it;
}

bool IoBus::read(uint64_t addr, std::span<uint8_t> data) const {
  const auto* r = find(addr, data.size());
  if (!r) {
    std::memset(data.data(), 0xff, data.size());
    return false;
  }
  r->second.device->read(addr - r->first, data);
  return true;
}

bool IoBus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const auto* r = find(addr, data.size());
  if (!r) return false;
  r->second.device->write(addr - r->first, data);
  return true;
}

}  // namespace wisp
