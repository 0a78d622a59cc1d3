#include "vmm/memory/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/error.h"
#include "base/log.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older libc headers lack it
#endif

namespace wisp {

std::vector<MemoryRegion> GuestMemory::layout(uint64_t size) {
  std::vector<MemoryRegion> out;
  uint64_t low = std::min(size, kMmioHoleStart);
  out.push_back({GuestAddress(0), low, 0, nullptr});
  if (size > low) out.push_back({GuestAddress(kMmioHoleEnd), size - low, low, nullptr});
  return out;
}

namespace {

// preopen_pagemap()'s descriptor until a mapping takes it (moved: no syscall needed then).
UniqueFd& preopened_pagemap() {
  static UniqueFd fd;
  return fd;
}

}  // namespace

void GuestMemory::preopen_pagemap() {
  preopened_pagemap() = UniqueFd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
}

GuestMemory GuestMemory::map(UniqueFd fd, uint64_t size, int flags, const char* what) {
  if (size == 0 || size % 4096 != 0)
    throw Error("guest memory size must be a non-zero multiple of 4 KiB");
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd.get(), 0);
  if (p == MAP_FAILED) throw_errno(std::string("mapping ") + what);
  return adopt(static_cast<uint8_t*>(p), size, std::move(fd));
}

GuestMemory GuestMemory::adopt(uint8_t* mapping, uint64_t size, UniqueFd fd) {
  GuestMemory mem;
  mem.memfd_ = std::move(fd);
  mem.mapping_ = mapping;
  mem.mapping_size_ = size;
  mem.size_ = size;
  mem.regions_ = layout(size);
  for (auto& r : mem.regions_) r.host = mem.mapping_ + r.file_offset;
  // Opened now, while the VMM may still open files: a jailed VMM has no /proc by the time a
  // snapshot or a stats call reads it. A failure is reported when the pagemap is needed.
  if (preopened_pagemap())
    mem.pagemap_ = std::move(preopened_pagemap());
  else
    mem.pagemap_ = UniqueFd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  return mem;
}

uint64_t GuestMemory::align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

namespace {

// `size` bytes of private anonymous memory starting on an `align` boundary: mapped with room
// to spare, then the ends trimmed. KVM maps a huge page only where the host address and the
// guest address agree modulo 2 MiB; guest regions start at 0 and 4 GiB (file offsets 0 and
// 3 GiB), so the mapping must be 2 MiB-aligned (mmap alone gives 4 KiB).
uint8_t* map_aligned_anonymous(uint64_t size, uint64_t align) {
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  uint64_t reserve = size + align - 4096;
  void* p = mmap(nullptr, reserve, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) throw_errno("mapping " + std::to_string(size) + " bytes of guest RAM");
  uint64_t base = reinterpret_cast<uintptr_t>(p);
  uint64_t start = GuestMemory::align_up(base, align);
  if (start > base) munmap(p, start - base);
  uint64_t tail = base + reserve - (start + size);
  if (tail > 0) munmap(reinterpret_cast<void*>(start + size), tail);
  return reinterpret_cast<uint8_t*>(start);
}

}  // namespace

GuestMemory GuestMemory::create(uint64_t size, bool huge_pages) {
  if (size == 0 || size % 4096 != 0)
    throw Error("guest memory size must be a non-zero multiple of 4 KiB");
  // MAP_NORESERVE: guest RAM is committed page by page as the guest touches it.
  uint8_t* p = map_aligned_anonymous(size, huge_pages ? kHugePageSize : 4096);
  GuestMemory mem = adopt(p, size, UniqueFd());
  // Either advice is explicit: the host's THP default (`enabled`: always, madvise or never)
  // decides nothing. A kernel without THP refuses MADV_HUGEPAGE: the VM still runs, on 4 KiB
  // pages, and says so.
  if (madvise(p, size, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0)
    mem.huge_pages_ = huge_pages;
  else if (huge_pages)
    LOG_WARN("guest RAM stays on 4 KiB pages: madvise(MADV_HUGEPAGE) failed: %s",
             std::strerror(errno));
  return mem;
}

GuestMemory GuestMemory::map_file_private(UniqueFd fd, uint64_t size) {
  // No MAP_POPULATE: the point is that a clone faults in only the pages it uses.
  // Huge pages come from the file, not from advice: a MAP_PRIVATE mapping of a regular file
  // gets no THP on the host kernels wisp targets (Debian 12's 6.1: only read-only text, with
  // CONFIG_READ_ONLY_THP_FOR_FS), while a file on a tmpfs of huge pages (huge=within_size: a
  // store there, or serve's manager/huge_page_layer.h) is mapped 2 MiB at a time where the
  // mapping is aligned, which shmem's get_unmapped_area arranges. Either way the guest's
  // writes become 4 KiB anonymous copies. The other way to huge pages on restore copies the
  // memory into anonymous THP memory (copy_to_huge_pages, opt-in): the copy up front, each
  // clone its own copy instead of the page cache shared between clones (the density this
  // mapping buys), memory committed 2 MiB at a time, and no diff snapshot (no file below).
  // create() gives booted VMs 2 MiB.
  GuestMemory mem =
      map(std::move(fd), size, MAP_PRIVATE | MAP_NORESERVE, "the snapshot memory file");
  mem.private_file_ = true;
  return mem;
}

GuestMemory GuestMemory::copy_to_huge_pages() const {
  GuestMemory out = create(size_, true);
  std::vector<bool> data = data_pages();
  // Runs of data pages, one memcpy each: the holes stay untouched (zero, unallocated).
  for (uint64_t p = 0; p < data.size();) {
    if (!data[p]) {
      ++p;
      continue;
    }
    uint64_t end = p;
    while (end < data.size() && data[end]) ++end;
    std::memcpy(out.mapping_ + p * 4096, mapping_ + p * 4096, (end - p) * 4096);
    p = end;
  }
  return out;
}

void GuestMemory::populate_writable(uint64_t first_page, uint64_t count) const {
  if (madvise(mapping_ + first_page * 4096, count * 4096, MADV_POPULATE_WRITE) != 0)
    throw_errno("making guest pages writable (MADV_POPULATE_WRITE)");
}

void GuestMemory::overlay_file_pages(int fd, uint64_t first_page, uint64_t count) {
  if (!private_file_) throw Error("overlaying pages needs memory mapped from a snapshot file");
  if (count == 0 || first_page > page_count() || count > page_count() - first_page)
    throw Error("page range outside guest memory");
  uint64_t off = first_page * 4096;
  void* p = mmap(mapping_ + off, count * 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, fd, static_cast<off_t>(off));
  if (p == MAP_FAILED) throw_errno("mapping a diff snapshot's pages");
  overlays_.emplace_back(first_page, count);
}

namespace {

// /proc/self/pagemap: one u64 per virtual page. Bit 63: present; bit 62: swapped; bit 61:
// file-backed or shared anonymous page (clear for a private copy made by a write).
constexpr uint64_t kPagemapPresent = 1ull << 63;
constexpr uint64_t kPagemapSwapped = 1ull << 62;
constexpr uint64_t kPagemapFile = 1ull << 61;

std::vector<uint64_t> read_pagemap(const UniqueFd& fd, const uint8_t* start, uint64_t pages) {
  if (!fd) throw Error("/proc/self/pagemap could not be opened when guest memory was mapped");
  std::vector<uint64_t> out(pages);
  uint64_t vpage = reinterpret_cast<uintptr_t>(start) / 4096;
  size_t done = 0;
  while (done < pages) {
    size_t want = std::min<size_t>(pages - done, 65536);
    ssize_t n =
        pread(fd.get(), out.data() + done, want * 8, static_cast<off_t>((vpage + done) * 8));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || n % 8 != 0) throw_errno("reading /proc/self/pagemap");
    done += static_cast<size_t>(n) / 8;
  }
  return out;
}

}  // namespace

std::vector<bool> GuestMemory::resident_pages() const {
  std::vector<uint64_t> map = read_pagemap(pagemap_, mapping_, page_count());
  std::vector<bool> out(map.size());
  for (size_t i = 0; i < map.size(); ++i)
    out[i] = (map[i] & (kPagemapPresent | kPagemapSwapped)) != 0;
  return out;
}

std::vector<bool> GuestMemory::written_pages() const {
  if (!private_file_) return std::vector<bool>(page_count(), true);
  std::vector<uint64_t> map = read_pagemap(pagemap_, mapping_, page_count());
  std::vector<bool> out(map.size());
  // A swapped-out page of a private file mapping is always a private copy (clean file pages
  // are dropped, not swapped).
  for (size_t i = 0; i < map.size(); ++i)
    out[i] = (map[i] & kPagemapSwapped) != 0 ||
             ((map[i] & kPagemapPresent) != 0 && (map[i] & kPagemapFile) == 0);
  return out;
}

std::vector<bool> GuestMemory::data_pages() const {
  // Anonymous boot RAM: data where touched (a page never touched is not in the pagemap).
  if (!memfd_) return resident_pages();
  // A private mapping's written pages are data wherever the file has holes; a diff layer
  // mapped over the base (overlay_file_pages) is another file, so count those as written too.
  std::vector<bool> out = written_pages();
  const off_t end = static_cast<off_t>(mapping_size_);
  off_t pos = 0;
  while (pos < end) {
    off_t data = lseek(memfd_.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after pos
      throw_errno("finding data in guest memory's backing file");
    }
    if (data >= end) break;
    off_t hole = lseek(memfd_.get(), data, SEEK_HOLE);
    if (hole < 0) throw_errno("finding holes in guest memory's backing file");
    hole = std::min(hole, end);
    for (uint64_t p = static_cast<uint64_t>(data) / 4096;
         p < (static_cast<uint64_t>(hole) + 4095) / 4096; ++p)
      out[p] = true;
    pos = hole;
  }
  for (const auto& [first, count] : overlays_)
    for (uint64_t p = first; p < first + count; ++p) out[p] = true;
  return out;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : size_(std::exchange(o.size_, 0)),
      memfd_(std::move(o.memfd_)),
      mapping_(std::exchange(o.mapping_, nullptr)),
      mapping_size_(std::exchange(o.mapping_size_, 0)),
      regions_(std::move(o.regions_)),
      private_file_(std::exchange(o.private_file_, false)),
      huge_pages_(std::exchange(o.huge_pages_, false)),
      overlays_(std::move(o.overlays_)),
      pagemap_(std::move(o.pagemap_)) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
  if (this != &o) {
    if (mapping_) munmap(mapping_, mapping_size_);
    size_ = std::exchange(o.size_, 0);
    memfd_ = std::move(o.memfd_);
    mapping_ = std::exchange(o.mapping_, nullptr);
    mapping_size_ = std::exchange(o.mapping_size_, 0);
    regions_ = std::move(o.regions_);
    private_file_ = std::exchange(o.private_file_, false);
    huge_pages_ = std::exchange(o.huge_pages_, false);
    overlays_ = std::move(o.overlays_);
    pagemap_ = std::move(o.pagemap_);
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
