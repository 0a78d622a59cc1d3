#include "vmm/boot/kernel_image.h"

#include <elf.h>

#include <cstring>

#include "base/error.h"
#include "base/hex.h"
#include "vmm/arch/layout.h"

namespace wisp {
namespace {

template <typename T>
T load_le(std::span<const uint8_t> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

bool add_overflows(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r);
}

// Guest RAM addresses any kernel image may target: well below 4 GiB, above the legacy area.
constexpr uint64_t kMaxKernelAddr = 0xC000'0000;

}  // namespace

KernelImage parse_elf_kernel(std::span<const uint8_t> head, uint64_t file_size) {
  if (head.size() < sizeof(Elf64_Ehdr)) throw Error("ELF kernel: file too short for an ELF header");
  auto eh = load_le<Elf64_Ehdr>(head, 0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) throw Error("ELF kernel: bad ELF magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) throw Error("ELF kernel: not a 64-bit ELF (EI_CLASS)");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) throw Error("ELF kernel: not little-endian (EI_DATA)");
  if (eh.e_machine != EM_X86_64) throw Error("ELF kernel: e_machine is not x86-64");
  if (eh.e_type != ET_EXEC) throw Error("ELF kernel: e_type is not ET_EXEC");
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    throw Error("ELF kernel: e_phentsize " + std::to_string(eh.e_phentsize) + " != 56");
  if (eh.e_phnum == 0 || eh.e_phnum > 64)
    throw Error("ELF kernel: e_phnum " + std::to_string(eh.e_phnum) + " out of range (1..64)");
  uint64_t ph_end = eh.e_phoff + uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (add_overflows(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr)) || ph_end > head.size())
    throw Error("ELF kernel: program headers at e_phoff " + hex(eh.e_phoff) +
                " lie outside the first " + std::to_string(head.size()) + " bytes of the file");

  KernelImage img;
  img.format = KernelImage::Format::kElf;
  img.entry = eh.e_entry;
  bool entry_loaded = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    auto ph = load_le<Elf64_Phdr>(head, eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD) continue;
    std::string where = "ELF kernel: segment " + std::to_string(i);
    if (ph.p_filesz > ph.p_memsz) throw Error(where + ": p_filesz > p_memsz");
    if (add_overflows(ph.p_offset, ph.p_filesz) || ph.p_offset + ph.p_filesz > file_size)
      throw Error(where + ": file range [" + hex(ph.p_offset) + ", +" + hex(ph.p_filesz) +
                  ") runs past the end of the file (" + std::to_string(file_size) + " bytes)");
    if (ph.p_paddr < layout::kHighMemStart || add_overflows(ph.p_paddr, ph.p_memsz) ||
        ph.p_paddr + ph.p_memsz > kMaxKernelAddr)
      throw Error(where + ": physical range [" + hex(ph.p_paddr) + ", +" + hex(ph.p_memsz) +
                  ") is outside [1 MiB, 3 GiB)");
    img.segments.push_back({ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz});
    img.kernel_end = std::max(img.kernel_end, ph.p_paddr + ph.p_memsz);
    if (eh.e_entry >= ph.p_paddr && eh.e_entry < ph.p_paddr + ph.p_memsz) entry_loaded = true;
  }
  if (img.segments.empty()) throw Error("ELF kernel: no PT_LOAD segment");
  if (!entry_loaded)
    throw Error("ELF kernel: entry point " + hex(eh.e_entry) +
                " is not inside a loaded segment (is this a vmlinux with physical addresses?)");
  return img;
}

KernelImage parse_bzimage(std::span<const uint8_t> head, uint64_t file_size) {
  // Offsets are those of the x86 boot protocol (Documentation/x86/boot.rst).
  constexpr size_t kHdrStart = 0x1f1, kBootFlag = 0x1fe, kHeaderMagic = 0x202, kVersion = 0x206;
  constexpr size_t kSetupSects = 0x1f1, kLoadFlags = 0x211, kInitrdAddrMax = 0x22c;
  constexpr size_t kKernelAlign = 0x230, kRelocatable = 0x234, kXloadflags = 0x236;
  constexpr size_t kCmdlineSize = 0x238, kPrefAddress = 0x258, kInitSize = 0x260;
  constexpr size_t kMinHead = 0x268;
  if (head.size() < kMinHead) throw Error("bzImage: file too short for a setup header");
  if (load_le<uint16_t>(head, kBootFlag) != 0xAA55) throw Error("bzImage: boot_flag is not 0xAA55");
  if (load_le<uint32_t>(head, kHeaderMagic) != 0x53726448)
    throw Error("bzImage: header magic is not \"HdrS\"");
  uint16_t version = load_le<uint16_t>(head, kVersion);
  if (version < 0x020c)
    throw Error("bzImage: boot protocol " + hex(version) + " too old; need 2.12+ (64-bit entry)");
  uint16_t xload = load_le<uint16_t>(head, kXloadflags);
  if (!(xload & 0x1)) throw Error("bzImage: XLF_KERNEL_64 not set: no 64-bit entry point");
  if (!(head[kLoadFlags] & 0x1)) throw Error("bzImage: LOADED_HIGH not set (zImage not supported)");

  uint64_t setup_sects = head[kSetupSects] ? head[kSetupSects] : 4;
  uint64_t setup_bytes = (setup_sects + 1) * 512;
  if (setup_bytes >= file_size)
    throw Error("bzImage: setup_sects " + std::to_string(setup_sects) +
                " leaves no protected-mode kernel in a " + std::to_string(file_size) +
                "-byte file");
  uint64_t pm_size = file_size - setup_bytes;

  uint64_t load = load_le<uint64_t>(head, kPrefAddress);
  uint32_t align = load_le<uint32_t>(head, kKernelAlign);
  bool relocatable = head[kRelocatable] != 0;
  if (load < layout::kHighMemStart || load >= kMaxKernelAddr) {
    if (!relocatable) throw Error("bzImage: pref_address " + hex(load) + " outside [1 MiB, 3 GiB)");
    load = layout::kDefaultKernelLoad;  // a relocatable kernel runs wherever we put it
  }
  // Both below 2^32 here, so the rounding cannot wrap.
  if (relocatable && align != 0 && (align & (align - 1)) == 0 && load % align != 0)
    load = (load + align - 1) & ~uint64_t{align - 1};
  uint64_t init_size = load_le<uint32_t>(head, kInitSize);
  uint64_t need = std::max(init_size, pm_size);
  if (load >= kMaxKernelAddr || need > kMaxKernelAddr - load)
    throw Error("bzImage: kernel needs [" + hex(load) + ", +" + hex(need) + ") beyond 3 GiB");

  KernelImage img;
  img.format = KernelImage::Format::kBzImage;
  img.segments.push_back({setup_bytes, pm_size, load, pm_size});
  img.entry = load + 0x200;  // 64-bit entry: startup_64 is 0x200 into the protected-mode code
  img.kernel_end = load + need;
  // The header runs from 0x1f1 to 0x202 + the byte at 0x201 (its own length field).
  size_t hdr_end = std::min<size_t>(0x202 + head[0x201], head.size());
  img.setup_header.assign(head.begin() + kHdrStart, head.begin() + static_cast<long>(hdr_end));
  uint32_t cmdline_size = load_le<uint32_t>(head, kCmdlineSize);
  img.cmdline_max = cmdline_size ? std::min<uint32_t>(cmdline_size + 1, 65536) : 256;
  img.initrd_addr_max = load_le<uint32_t>(head, kInitrdAddrMax);
  return img;
}

KernelImage parse_kernel(std::span<const uint8_t> head, uint64_t file_size) {
  if (head.size() >= 4 && std::memcmp(head.data(), ELFMAG, SELFMAG) == 0)
    return parse_elf_kernel(head, file_size);
  if (head.size() >= 0x206 && load_le<uint16_t>(head, 0x1fe) == 0xAA55 &&
      load_le<uint32_t>(head, 0x202) == 0x53726448)
    return parse_bzimage(head, file_size);
  throw Error("not a kernel image: neither an ELF vmlinux nor a bzImage (no ELF magic, no HdrS)");
}

}  // namespace wisp
