// Parsing of the two kernel formats wisp boots: an ELF `vmlinux` (entered at its 64-bit entry)
// and a `bzImage` (Linux x86 boot protocol, 64-bit entry). Parsers take the file's first bytes
// and its size and either return a load plan or throw Error naming the field that is wrong, so
// they can be fed malformed input in tests and fuzzers. Loading then copies file ranges into
// guest memory at the planned addresses.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace wisp {

// A byte range of the file to copy to guest-physical `guest_addr`; [filesz, memsz) is zeroed.
struct LoadSegment {
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  uint64_t guest_addr = 0;
  uint64_t mem_size = 0;
};

struct KernelImage {
  enum class Format { kElf, kBzImage };
  Format format = Format::kElf;
  std::vector<LoadSegment> segments;
  uint64_t entry = 0;       // guest-physical 64-bit entry point
  uint64_t kernel_end = 0;  // first byte after everything the kernel may use at boot
  // bzImage only: the setup header bytes (from offset 0x1f1) to copy into boot_params.
  std::vector<uint8_t> setup_header;
  uint32_t cmdline_max = 2048;  // bytes, including the terminating NUL
  uint64_t initrd_addr_max = 0x37ffffff;
};

// How many leading bytes of the file the parsers want to see (they accept fewer: a short file
// is rejected by the parser with a message).
constexpr size_t kKernelHeadBytes = 64 * 1024;

KernelImage parse_elf_kernel(std::span<const uint8_t> head, uint64_t file_size);
KernelImage parse_bzimage(std::span<const uint8_t> head, uint64_t file_size);

// Picks the parser by magic ("\x7fELF" or the boot sector's 0xAA55 + "HdrS").
KernelImage parse_kernel(std::span<const uint8_t> head, uint64_t file_size);

}  // namespace wisp
