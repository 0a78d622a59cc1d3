#include "vmm/memory/page_prefetch.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older libc headers lack it
#endif

namespace wisp {
namespace {
constexpr uint64_t kPage = 4096;
}  // namespace

PrefetchResult prefetch_pages(const GuestMemory& memory,
                              std::span<const std::pair<uint64_t, uint64_t>> ranges, bool populate,
                              const std::function<void()>& between) {
  if (!memory.is_file_private()) throw Error("prefetch needs memory mapped from a snapshot file");
  if (memory.regions().empty()) return {};
  // The mapping is one piece over the file's offset space (layout(): the first region at 0).
  uint8_t* base = memory.regions().front().host;
  PrefetchResult out;
  for (const auto& [first, count] : ranges) {
    if (count == 0 || first >= memory.page_count() || count > memory.page_count() - first)
      throw Error("prefetch: page range outside guest memory");
    out.pages += count;
    ++out.ranges;
  }
  // All reads are queued first so the disk (or the host's page cache) sees them together;
  // pages of a diff layer come from its own file and are left to the populate below.
  uint64_t t0 = now_ns();
  for (const auto& [first, count] : ranges) {
    int err = posix_fadvise(memory.memfd(), static_cast<off_t>(first * kPage),
                            static_cast<off_t>(count * kPage), POSIX_FADV_WILLNEED);
    if (err != 0) {
      LOG_WARN("prefetch: readahead of the memory file failed: %s", std::strerror(err));
      break;
    }
  }
  out.readahead_ms = ms_since(t0);
  if (between) between();
  out.populated = populate;
  if (!populate) return out;
  uint64_t t1 = now_ns();
  for (const auto& [first, count] : ranges) {
    if (madvise(base + first * kPage, count * kPage, MADV_POPULATE_READ) != 0) {
      // EINVAL: an older kernel. Anything else (EFAULT on a truncated file, ENOMEM): the
      // guest's own faults will report it; prefetch is only an optimisation.
      LOG_WARN("prefetch: MADV_POPULATE_READ failed: %s", std::strerror(errno));
      out.populated = false;
      break;
    }
  }
  out.populate_ms = ms_since(t1);
  return out;
}

}  // namespace wisp
