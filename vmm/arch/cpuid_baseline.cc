#include "vmm/arch/cpuid_baseline.h"

#include <cstddef>

namespace wisp {
namespace {

constexpr uint32_t bit(int n) { return 1u << n; }

// ---- Leaf 0x1: the base feature flags ------------------------------------------------------
// ECX, kept: the x86-64-v2 instructions SSE3 (0), SSSE3 (9), CMPXCHG16B (13), SSE4.1 (19),
// SSE4.2 (20), POPCNT (23); and, used by the guest kernel alone: PCID (17, TLB tagging, no
// instruction user code can run), x2APIC (21, the VMM's interrupt controller model),
// TSC-deadline (24, Linux's LAPIC timer; vcpu_cpuid sets it when KVM emulates it) and the
// hypervisor bit (31, set by vcpu_cpuid: guests trust the paravirtual leaves by it).
constexpr uint32_t kLeaf1Ecx =
    bit(0) | bit(9) | bit(13) | bit(17) | bit(19) | bit(20) | bit(21) | bit(23) | bit(24) | bit(31);
// Hidden in ECX: PCLMULQDQ (1) and AES (25), not in any x86-64 level; DTES64, MONITOR, DS-CPL,
// VMX, SMX, EIST, TM2, CNXT-ID, SDBG, xTPR, PDCM, DCA (2-8, 10-11, 14-15, 18): host hardware
// or nested virtualization a function guest does not use; FMA (12), MOVBE (22), F16C (29),
// AVX (28): x86-64-v3; XSAVE (26), OSXSAVE (27): see leaf 0xD; RDRAND (30): Ivy Bridge, and
// the guest's entropy comes from virtio-rng and the agent's reseed.

// EDX, kept: every base feature of the first x86-64 CPUs (all of x86-64-v1 and the system
// features Linux needs: FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36
// CLFSH MMX FXSR SSE SSE2 SS HTT).
constexpr uint32_t kLeaf1Edx = bit(0) | bit(1) | bit(2) | bit(3) | bit(4) | bit(5) | bit(6) |
                               bit(7) | bit(8) | bit(9) | bit(11) | bit(12) | bit(13) | bit(14) |
                               bit(15) | bit(16) | bit(17) | bit(19) | bit(23) | bit(24) | bit(25) |
                               bit(26) | bit(27) | bit(28);
// Hidden in EDX: PSN (18), DS (21), ACPI (22), TM (29), IA64 (30), PBE (31): host hardware
// KVM does not emulate anyway.

// ---- Leaf 0x7 subleaf 0: the structured extended features ----------------------------------
// EBX, kept: SMEP (7), INVPCID (10), SMAP (20): kernel-only protections and TLB control.
// Hidden: FSGSBASE (0, user-visible instructions since Linux 5.9), TSC_ADJUST (1), BMI1 (3),
// HLE (4), AVX2 (5), BMI2 (8), ERMS (9, a memcpy strategy hint beyond v2), RTM (11), MPX (14),
// AVX-512* (16, 17, 21, 26-28, 30, 31), RDSEED (18), ADX (19), CLFLUSHOPT (23), CLWB (24),
// SHA (29) and the rest: x86-64-v3/v4 or newer.
constexpr uint32_t kLeaf7Ebx = bit(7) | bit(10) | bit(20);
// ECX, kept: UMIP (2), a kernel-only protection. Hidden: PREFETCHWT1, AVX512_VBMI, PKU/OSPKE
// (user-visible, and XSAVE state), WAITPKG, AVX512_VBMI2, CET, GFNI, VAES, VPCLMULQDQ,
// AVX512_VNNI/BITALG/VPOPCNTDQ, LA57 (a paging mode), RDPID, KL, MOVDIRI, MOVDIR64B, ENQCMD...
constexpr uint32_t kLeaf7Ecx = bit(2);
// EDX, kept: the speculation controls and their enumeration, which the guest kernel uses for
// its own mitigations and no user code runs: MD_CLEAR (10), IBRS/IBPB (26), STIBP (27),
// L1D_FLUSH (28), ARCH_CAPABILITIES (29), SSBD (31). Hidden: AVX512_4VNNIW/4FMAPS, FSRM,
// VP2INTERSECT, SERIALIZE, HYBRID, TSXLDTRK, AMX, AVX512_FP16 and the rest.
constexpr uint32_t kLeaf7Edx = bit(10) | bit(26) | bit(27) | bit(28) | bit(29) | bit(31);
// Subleaf 1 (AVX-VNNI, AVX512_BF16, fast short REP MOV/STOS, LAM...) is all beyond v2: zeroed.
// Subleaf 2's EDX enumerates further speculation controls (PSFD, IPRED/RRSBA/BHI_CTRL): kept.

// ---- Leaf 0x80000001: the extended features (AMD's, and Intel's few) -----------------------
// ECX, kept: LAHF-SAHF in 64-bit mode (0): x86-64-v2; CMP_LEGACY (1): vcpu_cpuid's topology;
// TOPOEXT (22): the AMD topology leaves 0x8000001D/E vcpu_cpuid describes. Hidden: SVM (2,
// nested virtualization), ExtApicSpace, AltMovCr8, ABM/LZCNT (5, x86-64-v3), SSE4a (6),
// MisAlignSse, PREFETCHW (8, beyond v2), OSVW, IBS, XOP (11), SKINIT, WDT, LWP, FMA4 (16),
// TCE, NodeId, TBM (21), the performance counter extensions and the rest.
constexpr uint32_t kExt1Ecx = bit(0) | bit(1) | bit(22);
// EDX, kept: AMD's copies of leaf 1's kept base features (0-9, 12-17, 23, 24), SYSCALL (11),
// NX (20) and LM (29): x86-64-v1; 1 GiB pages (26): kernel-only paging. Hidden: MMXEXT (22),
// FFXSR (25), RDTSCP (27, a user-visible instruction outside the levels), 3DNow!Ext (30) and
// 3DNow! (31).
constexpr uint32_t kExt1Edx = (kLeaf1Edx & (0x3ffu | (0x3fu << 12) | bit(23) | bit(24))) | bit(11) |
                              bit(20) | bit(26) | bit(29);

// ---- Leaf 0x80000008 EBX: AMD's extended feature identifiers -------------------------------
// Kept: the speculation controls (IBPB 12, IBRS 14, STIBP 15, IBRS/STIBP always on 16/17,
// IBRS preferred 18, IBRS same mode 19, SSBD 24, VIRT_SSBD 25, SSB_NO 26, PSFD 28, BTC_NO 29,
// IBPB_RET 30), kernel-only like leaf 7's. Hidden: CLZERO (0), IRPERF (1), XSAVEERPTR (2),
// INVLPGB (3), RDPRU (4), MCOMMIT (8), WBNOINVD (9), PPIN (23) and the rest. EAX (address
// sizes) and ECX (topology, vcpu_cpuid) are kept; EDX (INVLPGB and RDPRU limits) zeroed.
constexpr uint32_t kExt8Ebx = bit(12) | bit(14) | bit(15) | bit(16) | bit(17) | bit(18) | bit(19) |
                              bit(24) | bit(25) | bit(26) | bit(28) | bit(29) | bit(30);

// ---- Leaf 0x80000021 EAX: AMD's extended features 2 ----------------------------------------
// Kept, kernel-only behaviour and mitigations: NoNestedDataBp (0), LFENCE serializing (2),
// null selector clears base (6), AutoIBRS (8), SBPB (27), IBPB_BRTYPE (28), SRSO_NO (29).
// Hidden: the rest (fast short REP, prefetch controls, ...). EBX..EDX zeroed.
constexpr uint32_t kExt21Eax = bit(0) | bit(2) | bit(6) | bit(8) | bit(27) | bit(28) | bit(29);

struct Keep {
  uint32_t eax, ebx, ecx, edx;
};
constexpr uint32_t kAll = ~0u;
constexpr Keep kWhole{kAll, kAll, kAll, kAll};

// What of leaf `function`.`index` the baseline keeps, register by register. A leaf that is not
// named here is zeroed: among them leaf 0xD (the XSAVE state components: with XSAVE hidden the
// guest sets XCR0 to x87 alone and saves its FPU state with FXSAVE), 0x12 (SGX), 0x14 (Intel
// PT), 0x19 (Key Locker), 0x1D/0x1E (AMX tiles), 0x24 (AVX10), 0x8000000A (SVM),
// 0x8000001F/0x80000020 (SEV, QoS), 0x80000022 (AMD's PMU v2) and Centaur's 0xC000000x
// (PadLock), and whatever a newer KVM adds.
Keep keep_of(uint32_t function, uint32_t index) {
  switch (function) {
    case 0x0:         // the highest basic leaf and the vendor: the guest is told the truth
    case 0x2:         // cache and TLB descriptors
    case 0x4:         // deterministic cache parameters (vcpu_cpuid sets the core count)
    case 0x5:         // MONITOR/MWAIT sizes: unused with MONITOR hidden
    case 0x6:         // thermal and power: KVM gives only ARAT (the LAPIC timer keeps running)
    case 0xa:         // the architectural PMU: kernel-only (perf), as much as KVM emulates
    case 0xb:         // extended topology (vcpu_cpuid)
    case 0x15:        // TSC and crystal clock ratio: the guest's clocksource calibration
    case 0x16:        // processor frequency
    case 0x1f:        // V2 extended topology (vcpu_cpuid)
    case 0x80000000:  // the highest extended leaf and the vendor
    case 0x80000002:  // the brand string
    case 0x80000003:
    case 0x80000004:
    case 0x80000005:  // AMD's L1 cache and TLB
    case 0x80000006:  // L2/L3 cache
    case 0x80000007:  // invariant TSC: the guest's clocksource
    case 0x8000001d:  // AMD's cache topology
    case 0x8000001e:  // AMD's core and node ids (vcpu_cpuid)
      return kWhole;
    case 0x1:
      return {kAll, kAll, kLeaf1Ecx, kLeaf1Edx};
    case 0x7:
      if (index == 0) return {kAll, kLeaf7Ebx, kLeaf7Ecx, kLeaf7Edx};  // EAX: highest subleaf
      if (index == 2) return {0, 0, 0, kAll};
      return {0, 0, 0, 0};
    case 0x80000001:
      return {kAll, kAll, kExt1Ecx, kExt1Edx};
    case 0x80000008:
      return {kAll, kExt8Ebx, kAll, 0};
    case 0x80000021:
      return {kExt21Eax, 0, 0, 0};
    default:
      // KVM's paravirtual leaves (0x40000000..0x400000FF: its signature and the kvmclock, PV
      // EOI, steal time features): the guest kernel's alone.
      if (function >= 0x40000000 && function <= 0x400000ff) return kWhole;
      return {0, 0, 0, 0};
  }
}

}  // namespace

CpuidEntries x86_64_v2_cpuid(const CpuidEntries& supported) {
  CpuidEntries out = supported;
  for (CpuidEntry& e : out) {
    Keep k = keep_of(e.function, e.index);
    e.eax &= k.eax;
    e.ebx &= k.ebx;
    e.ecx &= k.ecx;
    e.edx &= k.edx;
  }
  return out;
}

}  // namespace wisp
