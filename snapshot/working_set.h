// The working set of a snapshot: the guest pages a clone touched from its restore to its first
// result (recorded once, by the template's probe clone), so a restore can load them in one go
// before its vCPUs run instead of one page fault at a time. A small file, `working-set`, in the
// snapshot's directory:
//
//   offset  size  field
//        0     8  magic "WISPWSET"
//        8     2  format major (little-endian); readers reject any major but kWorkingSetMajor
//       10     2  format minor; newer minors only append, so they are accepted
//       12     4  number of ranges n (<= kMaxWorkingSetRanges)
//       16     8  pages of the memory file it was recorded against
//       24  16*n  ranges: first page, page count (each u64 little-endian), sorted, disjoint,
//                 not adjacent (merged), each count > 0, all inside the memory's pages
//     24+16n   8  CRC-64/XZ of bytes [0, 24+16n)
//
// Host input, so untrusted: parse_working_set checks all of the above and that the page count
// matches the memory the snapshot restores; every rejection names the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "snapshot/snapshot_state.h"

namespace wisp::snapshot {

constexpr const char* kWorkingSetFileName = "working-set";
// The same format for the pages the probe clone wrote (a subset of its working set): a warm
// clone makes them private copies before its calls (api/vmm.capnp populateWritable).
constexpr const char* kWrittenSetFileName = "written-set";
constexpr char kWorkingSetMagic[8] = {'W', 'I', 'S', 'P', 'W', 'S', 'E', 'T'};
constexpr uint16_t kWorkingSetMajor = 1;
constexpr uint16_t kWorkingSetMinor = 0;
// Far above any real working set (a 4 GiB guest fully fragmented would be 512Ki ranges) and
// small enough to read whole: 16 MiB.
constexpr uint32_t kMaxWorkingSetRanges = 1u << 20;
constexpr size_t kWorkingSetHeaderBytes = 24;

struct PageRange {
  uint64_t first = 0;  // page index in the memory file (4 KiB pages)
  uint64_t count = 0;
  bool operator==(const PageRange&) const = default;
};

struct WorkingSet {
  uint64_t memory_pages = 0;  // pages of the memory file it belongs to
  std::vector<PageRange> ranges;
  uint64_t pages() const;  // sum of the ranges' counts
};

// The runs of true in `pages` (index = page), merged, in order.
std::vector<PageRange> page_ranges(const std::vector<bool>& pages);

// Frames `ws` (it must be valid: validate_working_set). Throws Error if it is not.
Bytes encode_working_set(const WorkingSet& ws);
// Checks the frame, version, checksum and every range. Throws Error naming `file`.
WorkingSet parse_working_set(std::span<const uint8_t> bytes, const std::string& file);
// Throws Error naming `file` if a range is empty, unsorted, overlapping or adjacent to the
// previous one, or past memory_pages, or there are too many.
void validate_working_set(const WorkingSet& ws, const std::string& file);

// Reads `path` (size checked before reading) and parses it; if `memory_pages` is non-zero, it
// must equal the file's. Throws Error naming the file.
WorkingSet read_working_set(const std::string& path, uint64_t memory_pages);
// The same for the open file `fd` (read from offset 0; a standby VMM is handed it); `path`
// names it in messages.
WorkingSet read_working_set_fd(int fd, const std::string& path, uint64_t memory_pages);
// The working set's pages as guest-physical page ranges (address / 4096): the memory file
// holds guest RAM as GuestMemory::layout places it (the part past the 32-bit MMIO hole
// continues at 4 GiB), so a range crossing the hole's start is split in two. For a guest that
// reads its own working set (agent.touchMemory).
std::vector<PageRange> guest_physical_ranges(const WorkingSet& ws);

// Writes `ws` to `dir`/`name` (working-set, or written-set) atomically (temp file, fsync,
// rename), mode 0600.
void write_working_set(const std::string& dir, const WorkingSet& ws,
                       const char* name = kWorkingSetFileName);

}  // namespace wisp::snapshot
