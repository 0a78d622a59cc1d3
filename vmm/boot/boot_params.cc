#include "vmm/boot/boot_params.h"

#include <asm/bootparam.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "vmm/arch/layout.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

static_assert(sizeof(boot_params) == 4096);

std::vector<E820Entry> build_e820(uint64_t mem_size) {
  std::vector<E820Entry> map;
  uint64_t low_end = std::min(mem_size, GuestMemory::kMmioHoleStart);
  map.push_back({0, layout::kEbdaStart, kE820Ram});
  // EBDA (MP table) through the BIOS area: reserved so the kernel keeps the MP table intact.
  map.push_back({layout::kEbdaStart, layout::kHighMemStart - layout::kEbdaStart, kE820Reserved});
  if (low_end > layout::kHighMemStart)
    map.push_back({layout::kHighMemStart, low_end - layout::kHighMemStart, kE820Ram});
  if (mem_size > low_end) map.push_back({GuestMemory::kMmioHoleEnd, mem_size - low_end, kE820Ram});
  return map;
}

uint64_t place_initrd(const KernelImage& kernel, uint64_t mem_size, uint64_t initrd_size) {
  uint64_t ceiling = std::min({mem_size, GuestMemory::kMmioHoleStart, kernel.initrd_addr_max + 1});
  uint64_t floor = (kernel.kernel_end + 0xfff) & ~uint64_t{0xfff};
  uint64_t need_mib = (floor + initrd_size + (1 << 20) - 1) >> 20;
  if (initrd_size > ceiling || ((ceiling - initrd_size) & ~uint64_t{0xfff}) < floor)
    throw Error("memory too small for the kernel and initrd: they need at least " +
                std::to_string(need_mib) + " MiB of guest RAM, the VM has " +
                std::to_string(mem_size >> 20) + " MiB (raise --mem)");
  return (ceiling - initrd_size) & ~uint64_t{0xfff};
}

std::vector<uint8_t> build_boot_params(const BootParamsInput& in) {
  boot_params bp;
  std::memset(&bp, 0, sizeof(bp));
  const KernelImage& k = *in.kernel;
  if (k.format == KernelImage::Format::kBzImage) {
    size_t n = std::min(k.setup_header.size(), sizeof(bp.hdr));
    std::memcpy(&bp.hdr, k.setup_header.data(), n);
  } else {
    bp.hdr.boot_flag = 0xAA55;
    bp.hdr.header = 0x53726448;  // "HdrS"
    bp.hdr.version = 0x020f;
    bp.hdr.kernel_alignment = 0x1000000;
  }
  bp.hdr.type_of_loader = 0xff;  // "undefined" boot loader
  bp.hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
  bp.hdr.heap_end_ptr = 0xfe00;
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(in.cmdline_addr);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(in.cmdline_addr >> 32);
  bp.hdr.cmdline_size = in.cmdline_size;
  bp.hdr.ramdisk_image = static_cast<uint32_t>(in.initrd_addr);
  bp.ext_ramdisk_image = static_cast<uint32_t>(in.initrd_addr >> 32);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(in.initrd_size);
  bp.ext_ramdisk_size = static_cast<uint32_t>(in.initrd_size >> 32);

  bp.acpi_rsdp_addr = in.acpi_rsdp_addr;

  auto map = build_e820(in.mem_size);
  bp.e820_entries = static_cast<uint8_t>(map.size());
  for (size_t i = 0; i < map.size(); ++i) {
    bp.e820_table[i].addr = map[i].addr;
    bp.e820_table[i].size = map[i].size;
    bp.e820_table[i].type = map[i].type;
  }
  std::vector<uint8_t> out(sizeof(bp));
  std::memcpy(out.data(), &bp, sizeof(bp));
  return out;
}

}  // namespace wisp
