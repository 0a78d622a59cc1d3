#include "snapshot/working_set.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "snapshot/crc64.h"
#include "snapshot/file_fields.h"
#include "vmm/memory/guest_memory.h"

namespace wisp::snapshot {
namespace {

constexpr size_t kRangeBytes = 16;
constexpr size_t kTrailerBytes = 8;
constexpr uint64_t kMaxFileBytes =
    kWorkingSetHeaderBytes + uint64_t{kMaxWorkingSetRanges} * kRangeBytes + kTrailerBytes;

}  // namespace

uint64_t WorkingSet::pages() const {
  uint64_t n = 0;
  for (const PageRange& r : ranges) n += r.count;
  return n;
}

std::vector<PageRange> page_ranges(const std::vector<bool>& pages) {
  std::vector<PageRange> out;
  for (uint64_t p = 0; p < pages.size();) {
    if (!pages[p]) {
      ++p;
      continue;
    }
    uint64_t end = p;
    while (end < pages.size() && pages[end]) ++end;
    out.push_back({p, end - p});
    p = end;
  }
  return out;
}

void validate_working_set(const WorkingSet& ws, const std::string& file) {
  if (ws.ranges.size() > kMaxWorkingSetRanges)
    reject_file(file, std::to_string(ws.ranges.size()) + " ranges, more than the limit of " +
                          std::to_string(kMaxWorkingSetRanges));
  uint64_t next_free = 0;  // the first page a range may start at (after a gap)
  for (size_t i = 0; i < ws.ranges.size(); ++i) {
    const PageRange& r = ws.ranges[i];
    std::string name = "range " + std::to_string(i) + " (page " + std::to_string(r.first) + ", " +
                       std::to_string(r.count) + " pages)";
    if (r.count == 0) reject_file(file, name + ": empty");
    if (i > 0 && r.first < next_free)
      reject_file(file, name +
                            ": not after the previous range with a gap (unsorted, overlapping "
                            "or adjacent)");
    if (r.first >= ws.memory_pages || r.count > ws.memory_pages - r.first)
      reject_file(file, name + ": past the memory's " + std::to_string(ws.memory_pages) + " pages");
    next_free = r.first + r.count + 1;
  }
}

std::vector<uint8_t> encode_working_set(const WorkingSet& ws) {
  validate_working_set(ws, "working set");
  std::vector<uint8_t> out(kWorkingSetHeaderBytes + ws.ranges.size() * kRangeBytes + kTrailerBytes);
  std::memcpy(out.data(), kWorkingSetMagic, sizeof kWorkingSetMagic);
  store_le(&out[8], kWorkingSetMajor, 2);
  store_le(&out[10], kWorkingSetMinor, 2);
  store_le(&out[12], ws.ranges.size(), 4);
  store_le(&out[16], ws.memory_pages, 8);
  uint8_t* p = &out[kWorkingSetHeaderBytes];
  for (const PageRange& r : ws.ranges) {
    store_le(p, r.first, 8);
    store_le(p + 8, r.count, 8);
    p += kRangeBytes;
  }
  size_t body = out.size() - kTrailerBytes;
  store_le(&out[body], crc64(std::span(out.data(), body)), 8);
  return out;
}

WorkingSet parse_working_set(std::span<const uint8_t> bytes, const std::string& file) {
  if (bytes.size() < kWorkingSetHeaderBytes + kTrailerBytes)
    reject_file(file, "truncated working set: " + std::to_string(bytes.size()) + " bytes");
  if (std::memcmp(bytes.data(), kWorkingSetMagic, sizeof kWorkingSetMagic) != 0)
    reject_file(file, "not a wisp working-set file (bad magic)");
  uint64_t major = load_le(&bytes[8], 2);
  if (major != kWorkingSetMajor)
    reject_file(file, "working-set format " + std::to_string(major) + "." +
                          std::to_string(load_le(&bytes[10], 2)) + ", this wisp reads " +
                          std::to_string(kWorkingSetMajor) + ".x: re-create the template");
  uint64_t n = load_le(&bytes[12], 4);
  if (n > kMaxWorkingSetRanges)
    reject_file(file, std::to_string(n) + " ranges, more than the limit of " +
                          std::to_string(kMaxWorkingSetRanges));
  uint64_t body = kWorkingSetHeaderBytes + n * kRangeBytes;
  if (bytes.size() != body + kTrailerBytes)
    reject_file(file, "size " + std::to_string(bytes.size()) + " bytes, expected " +
                          std::to_string(body + kTrailerBytes) + " for " + std::to_string(n) +
                          " ranges");
  uint64_t stored = load_le(&bytes[body], 8);
  if (crc64(bytes.first(body)) != stored) reject_file(file, "checksum mismatch (corrupt file)");
  WorkingSet ws;
  ws.memory_pages = load_le(&bytes[16], 8);
  ws.ranges.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t* p = &bytes[kWorkingSetHeaderBytes + i * kRangeBytes];
    ws.ranges.push_back({load_le(p, 8), load_le(p + 8, 8)});
  }
  validate_working_set(ws, file);
  return ws;
}

WorkingSet read_working_set(const std::string& path, uint64_t memory_pages) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno(path);
  return read_working_set_fd(fd.get(), path, memory_pages);
}

WorkingSet read_working_set_fd(int fd, const std::string& path, uint64_t memory_pages) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno(path);
  if (!S_ISREG(st.st_mode)) reject_file(path, "not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes)
    reject_file(path, "working set of " + std::to_string(st.st_size) + " bytes, more than the cap");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  if (int err = pread_exact(fd, 0, bytes)) {
    errno = err;
    throw_errno(path);
  }
  WorkingSet ws = parse_working_set(bytes, path);
  if (memory_pages && ws.memory_pages != memory_pages)
    reject_file(path, "recorded for " + std::to_string(ws.memory_pages) +
                          " memory pages, the snapshot has " + std::to_string(memory_pages));
  return ws;
}

void write_working_set(const std::string& dir, const WorkingSet& ws, const char* name) {
  std::vector<uint8_t> bytes = encode_working_set(ws);
  write_file_atomic(dir + "/" + name, std::string(bytes.begin(), bytes.end()), 0600);
}

std::vector<PageRange> guest_physical_ranges(const WorkingSet& ws) {
  std::vector<PageRange> out;
  for (const MemoryRegion& region : GuestMemory::layout(ws.memory_pages * kPageSize)) {
    const uint64_t lo = region.file_offset / kPageSize;
    const uint64_t hi = lo + region.size / kPageSize;
    const uint64_t base = region.guest_base.value() / kPageSize;
    for (const PageRange& r : ws.ranges) {
      const uint64_t first = std::max(r.first, lo), end = std::min(r.first + r.count, hi);
      if (first < end) out.push_back({base + (first - lo), end - first});
    }
  }
  return out;
}

}  // namespace wisp::snapshot
