#include "agent/huge_text.h"

#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "base/error.h"
#include "base/file_io.h"
#include "base/split.h"
#include "base/unique_fd.h"

namespace wisp::agent {
namespace {

constexpr uint64_t kSmallPage = 4096;
constexpr char kNrHugePages[] = "/proc/sys/vm/nr_hugepages";

uint64_t round_down(uint64_t v, uint64_t to) { return v / to * to; }
uint64_t round_up(uint64_t v, uint64_t to) { return round_down(v + to - 1, to); }

int collect_main_program(dl_phdr_info* info, size_t, void* out) {
  auto* segments = static_cast<std::vector<ImageSegment>*>(out);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& p = info->dlpi_phdr[i];
    if (p.p_type != PT_LOAD || p.p_memsz == 0) continue;
    segments->push_back({info->dlpi_addr + p.p_vaddr, p.p_memsz, (p.p_flags & PF_W) != 0});
  }
  return 1;  // the first object is the program itself
}

// The default-size (2 MiB) hugetlb pool, from /proc/meminfo; nothing without hugetlb.
struct Pool {
  uint64_t total = 0, free = 0;
};
std::optional<Pool> read_pool() {
  std::string meminfo;
  try {
    meminfo = read_file("/proc/meminfo");
  } catch (const Error&) {
    return std::nullopt;
  }
  std::optional<uint64_t> total = find_keyed_value(meminfo, "HugePages_Total:");
  if (!total) return std::nullopt;
  return Pool{*total, keyed_value(meminfo, "HugePages_Free:")};
}

bool write_pool_size(uint64_t pages) {
  UniqueFd fd(open(kNrHugePages, O_WRONLY | O_CLOEXEC));
  return fd && write_all(fd.get(), std::to_string(pages));
}

// Makes `pages` huge pages free in the pool, growing it as needed. `*was`: the pool's size
// before, to give back what a failure leaves unused.
bool reserve_huge_pages(uint64_t pages, uint64_t* was, std::string* why) {
  std::optional<Pool> pool = read_pool();
  if (!pool) {
    *why = "no hugetlb pool (HugePages_Total in /proc/meminfo)";
    return false;
  }
  *was = pool->total;
  if (pool->free >= pages) return true;
  if (!write_pool_size(pool->total + pages - pool->free) || !(pool = read_pool()) ||
      pool->free < pages) {
    write_pool_size(*was);  // what it did find goes back to the page allocator
    *why = "the guest kernel found no " + std::to_string(pages) +
           " free 2 MiB blocks for the hugetlb pool";
    return false;
  }
  return true;
}

}  // namespace

HugeTextRange huge_text_range(std::span<const ImageSegment> segments, uint64_t page_bytes) {
  std::vector<ImageSegment> sorted(segments.begin(), segments.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const ImageSegment& a, const ImageSegment& b) { return a.start < b.start; });
  if (sorted.empty() || sorted.front().writable) return {};
  uint64_t start = round_down(sorted.front().start, kSmallPage);
  uint64_t end = start;
  for (const ImageSegment& s : sorted) {
    if (s.writable || round_down(s.start, kSmallPage) != end) break;
    end = round_up(s.start + s.size, kSmallPage);
  }
  uint64_t first = round_up(start, page_bytes), last = round_down(end, page_bytes);
  if (last <= first) return {};
  return {first, last - first};
}

namespace {

// Copies `range` onto hugetlb pages (reserved by the caller) and puts them in its place.
bool copy_onto_huge_pages(const HugeTextRange& range, std::string* why) {
  void* copy = mmap(nullptr, range.size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  if (copy == MAP_FAILED) {
    *why = std::string("mmap(MAP_HUGETLB): ") + strerror(errno);
    return false;
  }
  auto* at = reinterpret_cast<void*>(range.start);
  memcpy(copy, at, range.size);
  // The copy lands on the same addresses with the same bytes: whatever runs there (this
  // function too) goes on through the new pages once the syscall returns.
  if (mprotect(copy, range.size, PROT_READ | PROT_EXEC) != 0 ||
      mremap(copy, range.size, range.size, MREMAP_MAYMOVE | MREMAP_FIXED, at) == MAP_FAILED) {
    *why = std::string("moving the code onto the hugetlb pages: ") + strerror(errno);
    munmap(copy, range.size);
    return false;
  }
  return true;
}

}  // namespace

bool move_text_to_huge_pages(std::string* why) {
  static bool moved = false;
  if (moved) return true;
  std::vector<ImageSegment> segments;
  dl_iterate_phdr(collect_main_program, &segments);
  HugeTextRange range = huge_text_range(segments, kHugeTextPageBytes);
  if (range.size == 0) {
    *why = "no 2 MiB-aligned read-only part in the program's image";
    return false;
  }
  uint64_t pool_was = 0;
  if (!reserve_huge_pages(range.size / kHugeTextPageBytes, &pool_was, why)) return false;
  if (!copy_onto_huge_pages(range, why)) {
    write_pool_size(pool_was);  // what the move did not use goes back to the page allocator
    return false;
  }
  moved = true;
  return true;
}

}  // namespace wisp::agent
