#include "agent/memory_touch.h"

#include <kj/debug.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

namespace wisp::agent {

uint64_t check_touch_ranges(std::span<const TouchRange> ranges, uint64_t max_ranges,
                            uint64_t max_pages) {
  KJ_REQUIRE(ranges.size() <= max_ranges, "touchMemory: too many ranges", ranges.size(),
             max_ranges);
  // The last page's byte offset must fit an off_t.
  constexpr uint64_t kMaxPage = std::numeric_limits<off_t>::max() / kTouchPageBytes;
  uint64_t pages = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const TouchRange& r = ranges[i];
    KJ_REQUIRE(r.page_count > 0, "touchMemory: an empty range", i);
    KJ_REQUIRE(r.first_page <= kMaxPage && r.page_count <= kMaxPage - r.first_page,
               "touchMemory: a range past the physical address space", i, r.first_page,
               r.page_count);
    KJ_REQUIRE(r.page_count <= max_pages - pages, "touchMemory: too many pages", max_pages);
    pages += r.page_count;
  }
  return pages;
}

uint64_t touch_pages(int mem, std::span<const TouchRange> ranges) {
  uint64_t pages = 0;
  for (const TouchRange& r : ranges) {
    for (uint64_t p = r.first_page; p < r.first_page + r.page_count; ++p) {
      char byte;
      ssize_t n;
      do {
        n = pread(mem, &byte, 1, static_cast<off_t>(p * kTouchPageBytes));
      } while (n < 0 && errno == EINTR);
      if (n < 0) KJ_FAIL_SYSCALL("touchMemory: reading guest memory", errno, p);
      KJ_REQUIRE(n == 1, "touchMemory: page outside guest RAM", p);
      ++pages;
    }
  }
  return pages;
}

}  // namespace wisp::agent
