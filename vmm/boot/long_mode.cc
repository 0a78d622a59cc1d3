#include "vmm/boot/long_mode.h"

#include <array>
#include <cstring>

#include "vmm/arch/layout.h"

namespace wisp {
namespace {

constexpr uint64_t kCr0Pe = 1u << 0, kCr0Mp = 1u << 1, kCr0Et = 1u << 4, kCr0Ne = 1u << 5;
constexpr uint64_t kCr0Wp = 1u << 16, kCr0Pg = 1u << 31;
constexpr uint64_t kCr4Pae = 1u << 5;
constexpr uint64_t kEferLme = 1u << 8, kEferLma = 1u << 10;
constexpr uint64_t kPtePresent = 1, kPteWrite = 2, kPtePageSize = 1u << 7;

Segment flat(uint16_t selector, uint8_t type, bool code) {
  Segment s;
  s.base = 0;
  s.limit = 0xfffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.s = 1;  // code/data, not system
  s.l = code ? 1 : 0;
  s.db = code ? 0 : 1;  // L and D must not both be set for a 64-bit code segment
  s.g = 1;
  return s;
}

}  // namespace

uint64_t gdt_descriptor(const Segment& s) {
  uint64_t limit = s.limit & 0xfffff;
  uint64_t base = s.base & 0xffffffff;
  uint64_t access =
      uint64_t{s.type} | uint64_t{s.s} << 4 | uint64_t{s.dpl} << 5 | uint64_t{s.present} << 7;
  uint64_t flags = uint64_t{s.avl} | uint64_t{s.l} << 1 | uint64_t{s.db} << 2 | uint64_t{s.g} << 3;
  return (limit & 0xffff) | (base & 0xffffff) << 16 | access << 40 | (limit >> 16) << 48 |
         flags << 52 | (base >> 24) << 56;
}

LongModeEntry setup_long_mode(const GuestMemory& mem, uint64_t entry, uint64_t boot_params) {
  LongModeEntry e;
  e.code = flat(0x10, 0xb, true);   // execute/read, accessed
  e.data = flat(0x18, 0x3, false);  // read/write, accessed
  // A TSS descriptor so TR is valid until the kernel loads its own.
  e.tss.base = 0;
  e.tss.limit = 0x67;
  e.tss.selector = 0x20;
  e.tss.type = 0xb;  // 64-bit busy TSS
  e.tss.present = 1;

  std::array<uint64_t, 5> gdt = {0, 0, gdt_descriptor(e.code), gdt_descriptor(e.data),
                                 gdt_descriptor(e.tss)};
  auto gdt_mem = mem.slice_or_throw(GuestAddress(layout::kGdtAddr), sizeof(gdt), "boot GDT");
  std::memcpy(gdt_mem.data(), gdt.data(), sizeof(gdt));
  e.gdt_base = layout::kGdtAddr;
  e.gdt_limit = sizeof(gdt) - 1;

  // PML4[0] -> PDPT[0] -> PD: 512 x 2 MiB identity mappings (the first GiB).
  auto put = [&](uint64_t table, int index, uint64_t value) {
    auto s = mem.slice_or_throw(GuestAddress(table + index * 8u), 8, "boot page tables");
    std::memcpy(s.data(), &value, 8);
  };
  put(layout::kPml4Addr, 0, layout::kPdptAddr | kPtePresent | kPteWrite);
  put(layout::kPdptAddr, 0, layout::kPdAddr | kPtePresent | kPteWrite);
  for (int i = 0; i < 512; ++i)
    put(layout::kPdAddr, i,
        (uint64_t{static_cast<unsigned>(i)} << 21) | kPtePresent | kPteWrite | kPtePageSize);

  e.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
  e.cr3 = layout::kPml4Addr;
  e.cr4 = kCr4Pae;
  e.efer = kEferLme | kEferLma;
  e.rip = entry;
  e.rsp = layout::kBootStackTop;
  e.rsi = boot_params;
  return e;
}

}  // namespace wisp
