#include "vmm/main/working_set_prefetch.h"

#include <cinttypes>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "snapshot/working_set.h"

namespace wisp {

PrefetchResult prefetch_working_set(int fd, const std::string& name, const GuestMemory& memory,
                                    PageRanges* guest_pages, bool populate, int written_fd,
                                    const std::string& written_name) {
  snapshot::WorkingSet ws = snapshot::read_working_set_fd(fd, name, memory.page_count());
  PageRanges ranges;
  ranges.reserve(ws.ranges.size());
  for (const snapshot::PageRange& r : ws.ranges) ranges.emplace_back(r.first, r.count);
  PrefetchResult p = prefetch_pages(memory, ranges, populate, [&] {
    if (written_fd >= 0) populate_written_set(written_fd, written_name, memory);
  });
  if (guest_pages) {
    guest_pages->clear();
    for (const snapshot::PageRange& r : snapshot::guest_physical_ranges(ws))
      guest_pages->emplace_back(r.first, r.count);
  }
  LOG_INFO("prefetched %" PRIu64 " pages in %" PRIu64
           " ranges: readahead %.3f ms, populate %.3f ms",
           p.pages, p.ranges, p.readahead_ms, p.populate_ms);
  return p;
}

PreFaultResult pre_fault_working_set(Machine& machine, const PageRanges& guest_pages) {
  PreFaultResult r = machine.pre_fault(guest_pages);
  if (!r.error.empty())
    LOG_WARN("working set: %" PRIu64
             " pages mapped in KVM before it stopped (%s); the rest "
             "load on the guest's first touch",
             r.pages, r.error.c_str());
  else
    LOG_INFO("mapped %" PRIu64 " working-set pages in KVM in %.3f ms", r.pages, r.ms);
  return r;
}

uint64_t populate_written_set(int fd, const std::string& name, const GuestMemory& memory) {
  uint64_t t0 = now_ns();
  snapshot::WorkingSet ws = snapshot::read_working_set_fd(fd, name, memory.page_count());
  for (const snapshot::PageRange& r : ws.ranges) memory.populate_writable(r.first, r.count);
  LOG_INFO("made %" PRIu64 " written-set pages private copies in %.3f ms", ws.pages(),
           static_cast<double>(now_ns() - t0) / 1e6);
  return ws.pages();
}

}  // namespace wisp
