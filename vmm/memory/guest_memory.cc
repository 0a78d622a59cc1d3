#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "vmm/base/error.h"

namespace wisp {

std::vector<MemoryRegion> GuestMemory::layout(uint64_t size) {
  std::vector<MemoryRegion> out;
  uint64_t low = std::min(size, kMmioHoleStart);
  out.push_back({GuestAddress(0), low, 0, nullptr});
  if (size > low) out.push_back({GuestAddress(kMmioHoleEnd), size - low, low, nullptr});
  return out;
}

GuestMemory GuestMemory::create(uint64_t size) {
  if (size == 0 || size % 4096 != 0)
    throw Error("guest memory size must be a non-zero multiple of 4 KiB");
  GuestMemory mem;
  mem.memfd_ = UniqueFd(memfd_create("wisp-guest-ram", MFD_CLOEXEC));
  if (!mem.memfd_) throw_errno("memfd_create for guest RAM");
  if (ftruncate(mem.memfd_.get(), static_cast<off_t>(size)) != 0)
    throw_errno("sizing guest RAM memfd to " + std::to_string(size) + " bytes");
  // MAP_NORESERVE: guest RAM is committed page by page as the guest touches it.
  void* p =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mem.memfd_.get(), 0);
  if (p == MAP_FAILED) throw_errno("mapping guest RAM");
  mem.mapping_ = static_cast<uint8_t*>(p);
  mem.mapping_size_ = size;
  mem.size_ = size;
  mem.regions_ = layout(size);
  for (auto& r : mem.regions_) r.host = mem.mapping_ + r.file_offset;
  return mem;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : size_(std::exchange(o.size_, 0)),
      memfd_(std::move(o.memfd_)),
      mapping_(std::exchange(o.mapping_, nullptr)),
      mapping_size_(std::exchange(o.mapping_size_, 0)),
      regions_(std::move(o.regions_)) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
  if (this != &o) {
    if (mapping_) munmap(mapping_, mapping_size_);
    size_ = std::exchange(o.size_, 0);
    memfd_ = std::move(o.memfd_);
    mapping_ = std::exchange(o.mapping_, nullptr);
    mapping_size_ = std::exchange(o.mapping_size_, 0);
    regions_ = std::move(o.regions_);
  }
  return *this;
}

GuestMemory::~GuestMemory() {
  if (mapping_) munmap(mapping_, mapping_size_);
}

std::span<uint8_t> GuestMemory::slice(GuestAddress addr, uint64_t len) const {
  for (const auto& r : regions_) {
    uint64_t start = r.guest_base.value();
    if (addr.value() < start) continue;
    uint64_t off = addr.value() - start;
    if (off >= r.size) continue;
    if (len > r.size - off) return {};
    return {r.host + off, static_cast<size_t>(len)};
  }
  return {};
}

bool GuestMemory::read(GuestAddress addr, std::span<uint8_t> out) const {
  auto s = slice(addr, out.size());
  if (s.size() != out.size() || (out.empty() && !slice(addr, 1).data())) return false;
  if (!out.empty()) std::memcpy(out.data(), s.data(), out.size());
  return true;
}

bool GuestMemory::write(GuestAddress addr, std::span<const uint8_t> in) const {
  auto s = slice(addr, in.size());
  if (s.size() != in.size() || (in.empty() && !slice(addr, 1).data())) return false;
  if (!in.empty()) std::memcpy(s.data(), in.data(), in.size());
  return true;
}

std::span<uint8_t> GuestMemory::slice_or_throw(GuestAddress addr, uint64_t len,
                                               const std::string& what) const {
  auto s = slice(addr, len);
  if (s.size() != len || len == 0) {
    char buf[160];
    snprintf(buf, sizeof(buf),
             " does not fit in guest RAM (needs [0x%llx, 0x%llx), RAM is %llu MiB)",
             static_cast<unsigned long long>(addr.value()),
             static_cast<unsigned long long>(addr.value() + len),
             static_cast<unsigned long long>(size_ >> 20));
    throw Error(what + buf);
  }
  return s;
}

}  // namespace wisp
