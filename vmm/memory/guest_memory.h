// Guest RAM: one mapping in the VMM (private anonymous memory for a booted VM, a snapshot's memory
// file mapped MAP_PRIVATE for a restored one), split into KVM memory slots around the 32-bit MMIO
// hole. All guest-physical access goes through checked calls here; nothing else in
// the VMM turns a guest address into a host pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/memory/guest_address.h"

namespace wisp {

struct MemoryRegion {
  GuestAddress guest_base;
  uint64_t size = 0;
  uint64_t file_offset = 0;  // offset of this region in the mapping (and its backing file)
  uint8_t* host = nullptr;   // mapping of this region in the VMM (non-owning view)
};

class GuestMemory {
 public:
  // Start of the 32-bit MMIO hole (devices live here); RAM above it continues at 4 GiB.
  static constexpr uint64_t kMmioHoleStart = 0xC000'0000;
  static constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000;

  // Transparent huge pages: x86_64's 2 MiB pages, the size KVM maps at once when the host
  // mapping of guest RAM is backed by them.
  static constexpr uint64_t kHugePageSize = 2ull << 20;

  // Creates `size` bytes of zeroed guest RAM: private anonymous memory, committed page by page
  // as the guest touches it. With `huge_pages` (wisp's default) the mapping starts on a 2 MiB
  // boundary and is advised MADV_HUGEPAGE, so the kernel backs it with transparent huge pages
  // and KVM maps 2 MiB at a time (fewer EPT/NPT faults, fewer TLB misses); without it, it is
  // advised MADV_NOHUGEPAGE, 4 KiB pages whatever the host's THP default (--no-hugepages, to
  // measure against). Anonymous rather than a memfd: shmem gets THP only when the host's
  // /sys/kernel/mm/transparent_hugepage/shmem_enabled allows it (Debian: never), anonymous
  // memory when `enabled` is madvise or always (Debian: madvise); nothing needs a file behind
  // boot RAM (snapshots read it through the mapping, vhost through its address).
  static GuestMemory create(uint64_t size, bool huge_pages = true);
  // `value` rounded up to a multiple of `alignment` (a power of two). Pure; unit-tested.
  static uint64_t align_up(uint64_t value, uint64_t alignment);

  // Guest RAM of `size` bytes restored from a snapshot's memory file `fd` (laid out as
  // layout(size) says, file offset = region's file_offset): mapped MAP_PRIVATE, so pages load
  // lazily from the page cache, clones of one file share its clean pages, and the guest's
  // writes are private copies. Takes the fd. The caller checked the file's size.
  static GuestMemory map_file_private(UniqueFd fd, uint64_t size);
  // An opt-in restore mode (`wisp snapshot restore --hugepages`): a copy of this memory's data
  // pages in new anonymous RAM on huge pages (create(size(), true)), so KVM maps 2 MiB at a
  // time. The price: the restore reads and copies every data page up front, the clone no longer
  // shares the memory file's page cache with other clones (each holds its own copy), and it can
  // no longer take a diff snapshot (there is no file below it). Throws Error.
  GuestMemory copy_to_huge_pages() const;
  // Opens /proc/self/pagemap now for the next GuestMemory mapped in this process, which takes
  // it: a VMM that maps guest memory only after its jail has detached /proc (a standby VMM
  // restores on order) still reads its pagemap for stats and diff snapshots. Best effort: a
  // failure is reported when the pagemap is needed, as for any mapping.
  static void preopen_pagemap();
  // Region layout for a given RAM size (pure; unit-tested).
  static std::vector<MemoryRegion> layout(uint64_t size);

  GuestMemory(GuestMemory&&) noexcept;
  GuestMemory& operator=(GuestMemory&&) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  uint64_t size() const { return size_; }
  const std::vector<MemoryRegion>& regions() const { return regions_; }
  // The snapshot memory file behind memory from map_file_private; -1 for anonymous boot RAM.
  int memfd() const { return memfd_.get(); }
  // Whether create() advised the kernel to back this memory with huge pages (it did not fail).
  // Whether it got them is the kernel's call: AnonHugePages in /proc/PID/smaps_rollup.
  bool huge_pages() const { return huge_pages_; }

  // Host view of [addr, addr+len) if it lies entirely inside one region, else an empty span.
  // Guest-controlled addresses must go through this (or read/write) and handle failure.
  std::span<uint8_t> slice(GuestAddress addr, uint64_t len) const;

  // Checked copies; return false (touching nothing) when the range is not all RAM.
  bool read(GuestAddress addr, std::span<uint8_t> out) const;
  bool write(GuestAddress addr, std::span<const uint8_t> in) const;

  template <typename T>
  bool read_obj(GuestAddress addr, T* out) const {
    return read(addr, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out), sizeof(T)));
  }
  template <typename T>
  bool write_obj(GuestAddress addr, const T& in) const {
    return write(addr, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&in), sizeof(T)));
  }

  // Replaces pages [first_page, first_page + count) (page = 4 KiB of the backing file's offset
  // space) with the same offsets of `fd`, privately: a diff snapshot's layer over its parent.
  // Only for memory from map_file_private. Throws Error.
  void overlay_file_pages(int fd, uint64_t first_page, uint64_t count);

  // Pages of the backing file's offset space, 4 KiB each.
  uint64_t page_count() const { return mapping_size_ / 4096; }
  // Per page: whether this process has it mapped (the guest or the VMM touched it). From
  // /proc/self/pagemap (opened when the memory was mapped); throws Error if it cannot be read.
  std::vector<bool> resident_pages() const;
  // Per page: whether it holds a private copy, i.e. was written since the file was mapped
  // (by the guest through KVM or by a device in the VMM). All pages for anonymous boot RAM
  // (there is no file to differ from).
  std::vector<bool> written_pages() const;
  // Per page: whether it may hold non-zero bytes. Pages of anonymous boot RAM never touched
  // (not in the pagemap) and pages the snapshot memory file has no data for (and not written
  // since) are known to be zero; lets a snapshot skip them without reading. A touched huge page
  // counts as 512 touched pages (the snapshot writer skips the zero ones). Throws Error.
  std::vector<bool> data_pages() const;
  // Makes pages [first, first + count) private copies now (MADV_POPULATE_WRITE), as writes
  // would, for a guest whose writes to them should take no fault later. The caller checked the
  // range. Throws Error (a kernel before 5.14 lacks it).
  void populate_writable(uint64_t first_page, uint64_t count) const;
  // True for memory from map_file_private.
  bool is_file_private() const { return private_file_; }

  // For VMM-chosen addresses during setup: throws Error naming `what` if out of range.
  std::span<uint8_t> slice_or_throw(GuestAddress addr, uint64_t len, const std::string& what) const;

 private:
  GuestMemory() = default;
  // Maps `size` bytes of `fd` with mmap `flags` (`what` names it in errors). Throws Error.
  static GuestMemory map(UniqueFd fd, uint64_t size, int flags, const char* what);
  // Takes `size` bytes mapped at `mapping` (and `fd`, if any, behind them): regions, pagemap.
  static GuestMemory adopt(uint8_t* mapping, uint64_t size, UniqueFd fd);

  uint64_t size_ = 0;
  UniqueFd memfd_;
  uint8_t* mapping_ = nullptr;
  uint64_t mapping_size_ = 0;
  std::vector<MemoryRegion> regions_;
  bool private_file_ = false;
  bool huge_pages_ = false;
  std::vector<std::pair<uint64_t, uint64_t>> overlays_;  // (first page, count) from other files
  UniqueFd pagemap_;  // /proc/self/pagemap, opened with the mapping
};

}  // namespace wisp
