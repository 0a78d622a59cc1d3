#include "vmm/main/working_set_prefetch.h"

#include <cinttypes>
#include <utility>
#include <vector>

#include "base/log.h"
#include "snapshot/working_set.h"

namespace wisp {

PrefetchResult prefetch_working_set(int fd, const std::string& name, const GuestMemory& memory) {
  snapshot::WorkingSet ws = snapshot::read_working_set_fd(fd, name, memory.page_count());
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  ranges.reserve(ws.ranges.size());
  for (const snapshot::PageRange& r : ws.ranges) ranges.emplace_back(r.first, r.count);
  PrefetchResult p = prefetch_pages(memory, ranges);
  LOG_INFO("prefetched %" PRIu64 " pages in %" PRIu64
           " ranges: readahead %.3f ms, populate %.3f ms",
           p.pages, p.ranges, p.readahead_ms, p.populate_ms);
  return p;
}

}  // namespace wisp
