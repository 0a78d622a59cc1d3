// Fuzzes the kernel image parsers (ELF vmlinux, bzImage setup header): a kernel file is host
// input, but a user may point wisp at anything. Every input must parse or throw wisp::Error,
// and a parsed plan must only name ranges inside the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "base/error.h"
#include "vmm/boot/kernel_image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first 8 bytes pick the claimed file size (the parser sees only the head, like the
  // loader does); the rest is the head.
  if (size < 8) return 0;
  uint64_t file_size;
  __builtin_memcpy(&file_size, data, 8);
  std::span<const uint8_t> head(data + 8, size - 8);
  file_size = head.size() + (file_size % (64ull << 20));
  try {
    wisp::KernelImage img = wisp::parse_kernel(head, file_size);
    for (const auto& s : img.segments) {
      if (s.file_offset + s.file_size > file_size || s.file_size > s.mem_size) abort();
      if (s.guest_addr + s.mem_size > img.kernel_end) abort();
    }
  } catch (const wisp::Error&) {
  }
  return 0;
}
