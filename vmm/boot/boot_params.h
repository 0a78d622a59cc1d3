// The zero page (struct boot_params) and its e820 map, built as plain bytes so they can be
// checked in unit tests before they are written to guest memory.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/boot/kernel_image.h"

namespace wisp {

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // 1 = RAM, 2 = reserved
};
constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kE820Reserved = 2;

// RAM map for `mem_size` bytes of guest RAM laid out as GuestMemory::layout does.
std::vector<E820Entry> build_e820(uint64_t mem_size);

struct BootParamsInput {
  const KernelImage* kernel = nullptr;
  uint64_t mem_size = 0;
  uint64_t cmdline_addr = 0;
  uint32_t cmdline_size = 0;  // without the NUL
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;
  uint64_t acpi_rsdp_addr = 0;  // 0: none (the kernel then scans the BIOS area)
};

// Returns the 4096-byte zero page.
std::vector<uint8_t> build_boot_params(const BootParamsInput& in);

// Where the initrd goes: as high as allowed, page-aligned, above the kernel. Throws Error when
// it does not fit in RAM (the message says how much memory is needed).
uint64_t place_initrd(const KernelImage& kernel, uint64_t mem_size, uint64_t initrd_size);

}  // namespace wisp
