// Plain descriptions of x86 CPU state that the boot code computes and the KVM layer applies.
// They mirror KVM's structures without including <linux/kvm.h> (only vmm/kvm/ may do that).
#pragma once

#include <cstdint>
#include <vector>

namespace wisp {

struct CpuidEntry {
  uint32_t function = 0;
  uint32_t index = 0;
  uint32_t flags = 0;  // KVM_CPUID_FLAG_* (bit 0: the entry depends on `index`)
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  bool operator==(const CpuidEntry&) const = default;
};
using CpuidEntries = std::vector<CpuidEntry>;

// Which CPU a vCPU is shown: the host's (what KVM supports, wisp's default), or a baseline that
// hides every instruction-set feature beyond x86-64-v2 (`--portable`, vmm/arch/cpuid_baseline.h)
// so that code the guest runs, and images it checkpoints, do not depend on a newer CPU.
enum class CpuModel : uint8_t { kHost = 0, kX86_64_v2 = 1 };

struct MsrEntry {
  uint32_t index = 0;
  uint64_t value = 0;
  bool operator==(const MsrEntry&) const = default;
};

struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type = 0, present = 0, dpl = 0, db = 0, s = 0, l = 0, g = 0, avl = 0;
};

// Register state for entering a 64-bit kernel (Linux 64-bit boot protocol).
struct LongModeEntry {
  uint64_t rip = 0;  // kernel entry point
  uint64_t rsp = 0;
  uint64_t rsi = 0;  // boot_params (zero page)
  Segment code, data, tss;
  uint64_t gdt_base = 0;
  uint16_t gdt_limit = 0;
  uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
};

}  // namespace wisp
