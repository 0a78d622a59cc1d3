// Loading a restored clone's known working set before its vCPUs run (issue 13): the pages the
// template's probe clone touched are read ahead into the memory file's page cache in large
// requests, then mapped into the VMM's private mapping, so the guest's first touch of each
// finds it mapped: KVM resolves its EPT fault without a host page fault (a write still makes a
// private copy). The page cache stays shared between clones: no private copies are made here.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <utility>

#include "vmm/memory/guest_memory.h"

namespace wisp {

struct PrefetchResult {
  uint64_t pages = 0;  // pages asked for
  uint64_t ranges = 0;
  double readahead_ms = 0;  // posix_fadvise(WILLNEED) of the ranges
  double populate_ms = 0;   // madvise(MADV_POPULATE_READ) of the ranges
  bool populated = true;    // false: readahead only (not asked, or a kernel before 5.14)
};

// Prefetches the pages [first, first + count) of each range (4 KiB pages of the memory's file
// offset space) of memory from GuestMemory::map_file_private. Ranges past the memory throw
// Error (the caller validated them); a failing readahead or populate is logged, not thrown:
// the pages then load on demand as without prefetch.
// `populate` false: the readahead only (a KVM pre-fault of the same pages, Machine::pre_fault,
// maps them in the host as it maps them in the EPT/NPT: one pass over the pages, not two).
// `between` (if set) runs after the readahead and before the populate: a restore makes its
// written set's private copies there, so the reads are mapped after them (a write to a page of
// a 2 MiB-mapped block splits that block's mapping: reads populated before it would be
// unmapped again).
PrefetchResult prefetch_pages(const GuestMemory& memory,
                              std::span<const std::pair<uint64_t, uint64_t>> ranges,
                              bool populate = true, const std::function<void()>& between = {});

}  // namespace wisp
