#include "vmm/kvm/vcpu_stats.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/error.h"

namespace wisp {
namespace {

// struct kvm_stats_header: six u32 (flags, name_size, num_desc, id_offset, desc_offset,
// data_offset). struct kvm_stats_desc: flags u32, exponent s16, size u16, offset u32,
// bucket_size u32, then name_size bytes of name. Read by offset: the UAPI struct ends in a
// flexible array, whose C++ layout differs (see kvm_abi.h).
constexpr size_t kHeaderBytes = 24;
constexpr size_t kDescFixedBytes = 16;
constexpr uint32_t kMaxNameSize = 256;
constexpr uint32_t kMaxDescriptors = 4096;

uint32_t u32_at(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void full_pread(int fd, void* buf, size_t size, uint64_t offset, const char* what) {
  ssize_t n = ::pread(fd, buf, size, static_cast<off_t>(offset));
  if (n < 0) throw_errno(std::string("KVM vCPU statistics: reading ") + what);
  if (static_cast<size_t>(n) != size)
    throw Error(std::string("KVM vCPU statistics: short read of ") + what);
}

// The file's header and descriptor block, read and parsed (parse_vcpu_stats_layout).
VcpuStatsLayout read_layout(int fd) {
  uint8_t header[kHeaderBytes];
  full_pread(fd, header, sizeof header, 0, "the header");
  const uint32_t name_size = u32_at(header + 4);
  const uint32_t num_desc = u32_at(header + 8);
  const uint32_t desc_offset = u32_at(header + 16);
  if (name_size == 0 || name_size > kMaxNameSize || num_desc > kMaxDescriptors)
    throw Error("KVM vCPU statistics: header out of range");
  std::vector<uint8_t> descriptors(static_cast<size_t>(num_desc) * (kDescFixedBytes + name_size));
  full_pread(fd, descriptors.data(), descriptors.size(), desc_offset, "the descriptors");
  return parse_vcpu_stats_layout(header, sizeof header, descriptors.data(), descriptors.size());
}

}  // namespace

VcpuCounts& VcpuCounts::operator+=(const VcpuCounts& o) {
  available = available || o.available;
  exits += o.exits;
  nested_page_faults += o.nested_page_faults;
  pages_mapped += o.pages_mapped;
  halt_exits += o.halt_exits;
  mmio_exits += o.mmio_exits;
  io_exits += o.io_exits;
  return *this;
}

VcpuStatsLayout parse_vcpu_stats_layout(const uint8_t* header, size_t header_size,
                                        const uint8_t* descriptors, size_t descriptors_size) {
  if (header_size < kHeaderBytes) throw Error("KVM vCPU statistics: header too short");
  const uint32_t name_size = u32_at(header + 4);
  const uint32_t num_desc = u32_at(header + 8);
  const uint32_t data_offset = u32_at(header + 20);
  if (name_size == 0 || name_size > kMaxNameSize)
    throw Error("KVM vCPU statistics: name size " + std::to_string(name_size) + " out of range");
  if (num_desc > kMaxDescriptors)
    throw Error("KVM vCPU statistics: " + std::to_string(num_desc) + " descriptors");
  const size_t stride = kDescFixedBytes + name_size;
  if (descriptors_size < static_cast<size_t>(num_desc) * stride)
    throw Error("KVM vCPU statistics: descriptor block shorter than its count");

  VcpuStatsLayout layout;
  struct Wanted {
    const char* name;
    int64_t* slot;
  };
  const Wanted wanted[] = {
      {"exits", &layout.exits},           {"pf_taken", &layout.nested_page_faults},
      {"pf_fixed", &layout.pages_mapped}, {"halt_exits", &layout.halt_exits},
      {"mmio_exits", &layout.mmio_exits}, {"io_exits", &layout.io_exits},
  };
  for (uint32_t i = 0; i < num_desc; ++i) {
    const uint8_t* d = descriptors + i * stride;
    const uint32_t flags = u32_at(d);
    const uint16_t count = u16_at(d + 6);
    const uint32_t offset = u32_at(d + 8);
    // Only plain cumulative counters of one value (not histograms, not peaks).
    if ((flags & 0xF) != 0 || count != 1) continue;
    const char* name = reinterpret_cast<const char*>(d + kDescFixedBytes);
    const size_t len = strnlen(name, name_size);
    if (len == name_size) continue;  // not terminated within its field: not one we know
    for (const Wanted& w : wanted)
      if (std::strcmp(name, w.name) == 0) *w.slot = static_cast<int64_t>(data_offset) + offset;
  }
  return layout;
}

VcpuCounts VcpuStats::read() const {
  VcpuCounts c;
  if (unreadable_) return c;
  if (!layout_) {
    try {
      layout_ = read_layout(fd_.get());
    } catch (const Error&) {
      unreadable_ = true;
      return c;
    }
  }
  c.available = true;
  const VcpuStatsLayout& l = *layout_;
  const std::pair<int64_t, uint64_t*> fields[] = {
      {l.exits, &c.exits},
      {l.nested_page_faults, &c.nested_page_faults},
      {l.pages_mapped, &c.pages_mapped},
      {l.halt_exits, &c.halt_exits},
      {l.mmio_exits, &c.mmio_exits},
      {l.io_exits, &c.io_exits},
  };
  // One pread of the span that holds every counter KVM reports, not one per counter.
  int64_t first = -1, end = -1;
  for (const auto& [at, out] : fields) {
    if (at < 0) continue;
    first = first < 0 ? at : std::min(first, at);
    end = std::max(end, at + static_cast<int64_t>(sizeof(uint64_t)));
  }
  if (first < 0) return c;
  std::vector<uint8_t> span(static_cast<size_t>(end - first));
  full_pread(fd_.get(), span.data(), span.size(), static_cast<uint64_t>(first), "the counters");
  for (const auto& [at, out] : fields)
    if (at >= 0) std::memcpy(out, span.data() + (at - first), sizeof *out);
  return c;
}

}  // namespace wisp
