// The memory file of a snapshot: guest RAM regions back to back as the state's memory layout
// says, sparse (all-zero 4 KiB pages are holes), so restore can mmap it MAP_PRIVATE and clones
// share its clean pages through the page cache.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "snapshot/snapshot_state.h"

namespace wisp::snapshot {

// One region's layout and the guest bytes it holds now (bytes.size() == region.size).
struct RegionContents {
  MemoryFileRegion region;
  std::span<const uint8_t> bytes;
};

struct MemoryWriteStats {
  uint64_t file_bytes = 0;  // logical size
  uint64_t data_bytes = 0;  // bytes actually written (non-zero pages)
};

// Writes every non-zero page at its region's file offset into the empty file `fd` (open for
// writing), sizes it to the layout's end and fsyncs it. Throws wisp::Error naming `path` (the
// file's name, for messages). `pages` (optional, indexed by memory file page) limits the pages
// considered: the others are left as holes without being read.
MemoryWriteStats write_memory_file(int fd, const std::string& path,
                                   std::span<const RegionContents> regions,
                                   const std::vector<bool>* pages = nullptr);

// A private (copy-on-write) read-write mapping of a memory file; unmapped on destruction.
class MappedMemoryFile {
 public:
  MappedMemoryFile() = default;
  MappedMemoryFile(uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  ~MappedMemoryFile();
  MappedMemoryFile(MappedMemoryFile&& other) noexcept;
  MappedMemoryFile& operator=(MappedMemoryFile&& other) noexcept;
  MappedMemoryFile(const MappedMemoryFile&) = delete;
  MappedMemoryFile& operator=(const MappedMemoryFile&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  // The host bytes of one region of the layout the file was checked against.
  std::span<uint8_t> region(const MemoryFileRegion& r) const {
    return {data_ + r.file_offset, r.size};
  }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Maps `path` MAP_PRIVATE after checking its size matches `regions` (which must already be
// validated, e.g. from read_state_file). Throws wisp::Error naming the file.
MappedMemoryFile map_memory_file(const std::string& path,
                                 const std::vector<MemoryFileRegion>& regions);

}  // namespace wisp::snapshot
