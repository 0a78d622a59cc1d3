#include "snapshot/memory_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"

namespace wisp::snapshot {
namespace {

bool is_zero_page(const uint8_t* p, size_t n) {
  return p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0;
}

void pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t offset, const std::string& path) {
  if (int err = pwrite_exact(fd, offset, {p, n})) {
    errno = err;
    throw_errno("write memory file " + path);
  }
}

}  // namespace

MemoryWriteStats write_memory_file(int fd, const std::string& path,
                                   std::span<const RegionContents> regions,
                                   const std::vector<bool>* pages_wanted) {
  MemoryWriteStats stats;
  for (const RegionContents& rc : regions) {
    if (rc.bytes.size() != rc.region.size || rc.region.size % kPageSize != 0) {
      throw Error(path + ": region at guest " + std::to_string(rc.region.guest_base) + " has " +
                  std::to_string(rc.bytes.size()) + " bytes for a layout size of " +
                  std::to_string(rc.region.size));
    }
    stats.file_bytes = std::max(stats.file_bytes, rc.region.file_offset + rc.region.size);
  }
  // Size first so never-written ranges are holes; then one write per run of non-zero pages.
  if (::ftruncate(fd, static_cast<off_t>(stats.file_bytes)) != 0) {
    throw_errno("size memory file " + path);
  }
  for (const RegionContents& rc : regions) {
    const uint8_t* base = rc.bytes.data();
    uint64_t page = 0, pages = rc.region.size / kPageSize;
    const uint64_t first_file_page = rc.region.file_offset / kPageSize;
    auto wanted = [&](uint64_t p) {
      if (!pages_wanted) return true;
      uint64_t i = first_file_page + p;
      return i < pages_wanted->size() && (*pages_wanted)[i];
    };
    auto data_page = [&](uint64_t p) {
      return wanted(p) && !is_zero_page(base + p * kPageSize, kPageSize);
    };
    while (page < pages) {
      if (!data_page(page)) {
        ++page;
        continue;
      }
      uint64_t run = page;
      while (run < pages && data_page(run)) ++run;
      uint64_t len = (run - page) * kPageSize;
      pwrite_all(fd, base + page * kPageSize, len, rc.region.file_offset + page * kPageSize, path);
      stats.data_bytes += len;
      page = run;
    }
  }
  if (::fsync(fd) != 0) throw_errno("fsync memory file " + path);
  return stats;
}

MappedMemoryFile::~MappedMemoryFile() {
  if (data_) ::munmap(data_, size_);
}

MappedMemoryFile::MappedMemoryFile(MappedMemoryFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedMemoryFile& MappedMemoryFile::operator=(MappedMemoryFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedMemoryFile map_memory_file(const std::string& path,
                                 const std::vector<MemoryFileRegion>& regions) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open memory file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("stat memory file " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": memory file is not a regular file");
  check_memory_file_size(regions, static_cast<uint64_t>(st.st_size), path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  // Guest writes land in private copies; the file and other clones never see them.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd.get(), 0);
  if (p == MAP_FAILED) throw_errno("mmap memory file " + path);
  return MappedMemoryFile(static_cast<uint8_t*>(p), size);
}

}  // namespace wisp::snapshot
