// api/agent.capnp touchMemory: the agent reads one byte of each guest-physical page it is
// given through /dev/mem (the guest kernel's direct map), so the host's KVM maps those pages
// while a warm clone is made ahead of demand instead of one nested page fault at a time in a
// later call. Reading changes no guest state. The ranges come from the host: checked here
// (counts, overflow, the caps) before any page is read.
#pragma once

#include <cstdint>
#include <span>

namespace wisp::agent {

inline constexpr char kDevMemPath[] = "/dev/mem";
inline constexpr uint64_t kTouchPageBytes = 4096;

struct TouchRange {
  uint64_t first_page = 0;  // guest-physical address / 4096
  uint64_t page_count = 0;
};

// Throws kj::Exception naming the range at fault: an empty range, one whose end overflows
// the physical address space, more than `max_ranges` ranges or `max_pages` pages in all.
// Returns the pages in all.
uint64_t check_touch_ranges(std::span<const TouchRange> ranges, uint64_t max_ranges,
                            uint64_t max_pages);

// Reads one byte of each page of `ranges` (already checked) from `mem` (/dev/mem, or any file
// laid out the same way). Throws kj::Exception naming the page when a read fails or finds
// nothing there (outside guest RAM). Returns the pages read.
uint64_t touch_pages(int mem, std::span<const TouchRange> ranges);

}  // namespace wisp::agent
