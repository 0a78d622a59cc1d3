// KVM's own counters for one vCPU, read from its binary statistics file (KVM_GET_STATS_FD,
// Linux 5.14+). They show what the VMM's exit loop cannot: every exit KVM handled in the
// kernel, and the nested-paging faults (EPT violations on Intel, NPF on AMD) that the guest's
// first touch of each page costs after a restore: the figure a working-set prefetch is judged
// by (issue 13).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace wisp {

// Sums over vCPUs; all zero (available false) where KVM has no statistics file.
struct VcpuCounts {
  bool available = false;
  uint64_t exits = 0;               // "exits": every exit from guest mode, in-kernel or not
  uint64_t nested_page_faults = 0;  // "pf_taken": faults KVM's MMU handled (EPT/NPT misses)
  uint64_t pages_mapped = 0;        // "pf_fixed": of those, the ones that installed a mapping
  uint64_t halt_exits = 0;          // "halt_exits"
  uint64_t mmio_exits = 0;          // "mmio_exits": those that went to the VMM as MMIO
  uint64_t io_exits = 0;            // "io_exits": those that went to the VMM as port I/O

  VcpuCounts& operator+=(const VcpuCounts& o);
};

// Where each counter of VcpuCounts lives in the statistics file's data block (byte offsets
// from the file's start; -1: KVM does not report it). Parsed from the header and descriptor
// block, which the kernel writes; still bounds-checked, since a layout this code does not
// know must not make it read outside what it was given.
struct VcpuStatsLayout {
  int64_t exits = -1, nested_page_faults = -1, pages_mapped = -1, halt_exits = -1, mmio_exits = -1,
          io_exits = -1;
};

// `header` is the file's first 24 bytes (struct kvm_stats_header); `descriptors` the
// descriptor block read from its desc_offset (num_desc entries of 16 bytes plus name_size).
// Throws Error naming what does not fit.
VcpuStatsLayout parse_vcpu_stats_layout(const uint8_t* header, size_t header_size,
                                        const uint8_t* descriptors, size_t descriptors_size);

// The statistics file of one vCPU, opened while the VMM may still make ioctls (before its
// seccomp filter) and read afterwards with pread only. Its layout is read at the first read(),
// not when the vCPU is made: nothing of this is on a boot's or a restore's path. One thread
// at a time (the VMM reads it from its event loop).
class VcpuStats {
 public:
  // Takes the descriptor KVM_GET_STATS_FD returned.
  explicit VcpuStats(UniqueFd fd) : fd_(std::move(fd)) {}
  // Counts unavailable (all zero) when the file's layout is one this code cannot read: the
  // counters are figures for benchmarks, never worth failing the caller.
  VcpuCounts read() const;

 private:
  UniqueFd fd_;
  mutable std::optional<VcpuStatsLayout> layout_;  // parsed on the first read()
  mutable bool unreadable_ = false;
};

}  // namespace wisp
