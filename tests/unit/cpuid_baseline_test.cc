// The x86-64-v2 baseline (`--portable`) over synthetic CPUID tables of a recent Intel and a
// recent AMD host: what the guest must keep (the v1+v2 ISA, the system features Linux needs)
// and what it must not see (everything newer).
#include "vmm/arch/cpuid_baseline.h"

#include <gtest/gtest.h>

#include "vmm/arch/cpuid.h"

namespace wisp {
namespace {

constexpr uint32_t bit(int n) { return 1u << n; }
constexpr uint32_t kIndexed = 1;

// Leaf 1 of a recent Intel CPU (Sapphire Rapids as KVM reports it): ECX with SSE3, PCLMULQDQ,
// SSSE3, FMA, CX16, PCID, SSE4.1/4.2, x2APIC, MOVBE, POPCNT, TSC-deadline, AES, XSAVE,
// OSXSAVE, AVX, F16C, RDRAND, hypervisor; EDX with every base feature.
constexpr uint32_t kIntelLeaf1Ecx = 0xfffa3203;
constexpr uint32_t kIntelLeaf1Edx = 0x1f8bfbff;

CpuidEntries intel_host() {
  return {
      {0x0, 0, 0, 0x20, 0x756e6547, 0x6c65746e, 0x49656e69},  // "GenuineIntel"
      {0x1, 0, 0, 0x000806f8, 0x00000800, kIntelLeaf1Ecx, kIntelLeaf1Edx},
      {0x6, 0, 0, 0x4, 0, 0, 0},  // ARAT
      // AVX2 BMI1 BMI2 ERMS INVPCID SMEP SMAP AVX512F/DQ/BW/VL RDSEED ADX SHA FSGSBASE ...
      {0x7, 0, kIndexed, 0x2, 0xf1bf27ab, 0x1bc05f6e, 0xbfc1c410},
      {0x7, 1, kIndexed, 0x00001c30, 0, 0, 0},  // AVX-VNNI, AVX512_BF16, fast REP
      {0x7, 2, kIndexed, 0, 0, 0, 0x17},        // PSFD, IPRED/RRSBA/BHI_CTRL
      {0xb, 0, kIndexed, 0, 0, 0, 0},
      {0xd, 0, kIndexed, 0x602e7, 0x2b00, 0x2b00, 0},  // x87 SSE AVX MPX AVX-512 PKRU
      {0xd, 1, kIndexed, 0xf, 0, 0, 0},                // XSAVEOPT XSAVEC XGETBV1 XSAVES
      {0xd, 2, kIndexed, 0x100, 0x240, 0, 0},          // the AVX component
      {0x14, 0, kIndexed, 1, 0xf, 7, 0},               // Intel PT
      {0x1d, 0, kIndexed, 1, 0, 0, 0},                 // AMX palettes
      {0x1f, 0, kIndexed, 0, 0, 0, 0},
      {0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d},  // "KVMKVMKVM"
      {0x40000001, 0, 0, 0x01007afb, 0, 0, 0},
      {0x80000000, 0, 0, 0x80000008, 0, 0, 0},
      // ECX: LAHF, LZCNT, PREFETCHW. EDX: SYSCALL, NX, 1 GiB pages, RDTSCP, LM.
      {0x80000001, 0, 0, 0, 0, 0x121, 0x2c100800},
      {0x80000007, 0, 0, 0, 0, 0, 0x100},       // invariant TSC
      {0x80000008, 0, 0, 0x3030, 0x200, 0, 0},  // address sizes; WBNOINVD
  };
}

CpuidEntries amd_host() {
  return {
      {0x0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65},  // "AuthenticAMD"
      {0x1, 0, 0, 0x00a00f11, 0x00000800, 0xfed83203, 0x178bfbff},
      {0x7, 0, kIndexed, 0, 0x219c97a9, 0x0040068c, 0x10},
      {0x80000000, 0, 0, 0x80000021, 0, 0, 0},
      // ECX: LAHF, CMP_LEGACY, SVM, ABM, SSE4a, MisAlignSse, PREFETCHW, OSVW, TOPOEXT.
      // EDX: the base copies, SYSCALL, NX, MMXEXT, FFXSR, 1 GiB pages, RDTSCP, LM.
      {0x80000001, 0, 0, 0, 0, 0x004003e7, 0x2fd3fbff},
      // EBX: CLZERO, IRPERF, XSAVEERPTR, RDPRU, WBNOINVD, IBPB, IBRS, STIBP, SSBD, VIRT_SSBD.
      {0x80000008, 0, 0, 0x3030, 0x0300d217, 0x7007, 0x10007},
      {0x8000000a, 0, 0, 1, 0x8000, 0, 0x1fff},  // SVM
      {0x8000001e, 0, 0, 0, 0x100, 0, 0},
      {0x8000001f, 0, 0, 0x1, 0, 0, 0},  // SEV
      // NoNestedDataBp, LFENCE serializing, null selector clears base, AutoIBRS, and bit 13.
      {0x80000021, 0, 0, 0x2145, 0, 0, 0},
  };
}

TEST(CpuidBaseline, Leaf1KeepsTheV2InstructionSetAndSystemFeatures) {
  CpuidEntries c = x86_64_v2_cpuid(intel_host());
  const CpuidEntry* l1 = find_cpuid(c, 1);
  ASSERT_TRUE(l1);
  // SSE3 SSSE3 CX16 PCID SSE4.1 SSE4.2 x2APIC POPCNT TSC-deadline hypervisor.
  for (int b : {0, 9, 13, 17, 19, 20, 21, 23, 24, 31}) EXPECT_TRUE(l1->ecx & bit(b)) << b;
  // PCLMULQDQ FMA MOVBE AES XSAVE OSXSAVE AVX F16C RDRAND.
  for (int b : {1, 12, 22, 25, 26, 27, 28, 29, 30}) EXPECT_FALSE(l1->ecx & bit(b)) << b;
  // FPU TSC MSR PAE CX8 APIC SEP PGE CMOV PAT CLFSH MMX FXSR SSE SSE2 HTT.
  for (int b : {0, 4, 5, 6, 8, 9, 11, 13, 15, 16, 19, 23, 24, 25, 26, 28})
    EXPECT_TRUE(l1->edx & bit(b)) << b;
  EXPECT_EQ(l1->eax, 0x000806f8u);  // family, model, stepping: the host's
  EXPECT_EQ(l1->ebx, 0x00000800u);
}

TEST(CpuidBaseline, Leaf7KeepsOnlyKernelProtectionsAndSpeculationControls) {
  CpuidEntries c = x86_64_v2_cpuid(intel_host());
  const CpuidEntry* l7 = find_cpuid(c, 7, 0);
  ASSERT_TRUE(l7);
  EXPECT_EQ(l7->eax, 0x2u);                        // the highest subleaf stays
  EXPECT_EQ(l7->ebx, bit(7) | bit(10) | bit(20));  // SMEP INVPCID SMAP
  EXPECT_FALSE(l7->ebx & bit(5));                  // AVX2
  EXPECT_EQ(l7->ecx, bit(2));                      // UMIP (PKU, LA57, VAES... gone)
  EXPECT_EQ(l7->edx, bit(10) | bit(26) | bit(27) | bit(28) | bit(29) | bit(31));
  const CpuidEntry* l7s1 = find_cpuid(c, 7, 1);
  ASSERT_TRUE(l7s1);
  EXPECT_EQ(l7s1->eax, 0u);  // AVX-VNNI, AVX512_BF16
  EXPECT_EQ(find_cpuid(c, 7, 2)->edx, 0x17u);
}

TEST(CpuidBaseline, TheXsaveLeafAndNewerFeatureLeavesAreZeroed) {
  CpuidEntries c = x86_64_v2_cpuid(intel_host());
  for (auto [function, index] :
       {std::pair{0xdu, 0u}, {0xdu, 1u}, {0xdu, 2u}, {0x14u, 0u}, {0x1du, 0u}}) {
    const CpuidEntry* e = find_cpuid(c, function, index);
    ASSERT_TRUE(e) << std::hex << function;  // the entry stays, empty
    EXPECT_EQ(e->eax | e->ebx | e->ecx | e->edx, 0u) << std::hex << function << "." << index;
  }
  // The vendor, the paravirtual leaves and the invariant TSC are the guest kernel's.
  EXPECT_EQ(*find_cpuid(c, 0), intel_host()[0]);
  EXPECT_EQ(find_cpuid(c, 0x40000001)->eax, 0x01007afbu);
  EXPECT_EQ(find_cpuid(c, 0x80000007)->edx, 0x100u);
  EXPECT_EQ(find_cpuid(c, 0x6)->eax, 0x4u);
}

TEST(CpuidBaseline, ExtendedLeavesKeepLongModeAndHideNewerInstructions) {
  CpuidEntries c = x86_64_v2_cpuid(intel_host());
  const CpuidEntry* e1 = find_cpuid(c, 0x80000001);
  EXPECT_EQ(e1->ecx, bit(0));                                 // LAHF; LZCNT, PREFETCHW gone
  EXPECT_EQ(e1->edx, bit(11) | bit(20) | bit(26) | bit(29));  // SYSCALL NX 1G LM; no RDTSCP
  EXPECT_EQ(find_cpuid(c, 0x80000008)->eax, 0x3030u);         // address sizes
  EXPECT_EQ(find_cpuid(c, 0x80000008)->ebx, 0u);              // WBNOINVD

  CpuidEntries a = x86_64_v2_cpuid(amd_host());
  const CpuidEntry* a1 = find_cpuid(a, 0x80000001);
  EXPECT_EQ(a1->ecx, bit(0) | bit(1) | bit(22));  // LAHF CMP_LEGACY TOPOEXT; SVM, ABM, SSE4a gone
  EXPECT_FALSE(a1->edx & (bit(22) | bit(25) | bit(27)));  // MMXEXT FFXSR RDTSCP
  for (int b : {0, 4, 8, 9, 11, 15, 20, 23, 24, 29}) EXPECT_TRUE(a1->edx & bit(b)) << b;
  // IBPB IBRS STIBP SSBD VIRT_SSBD stay; CLZERO IRPERF XSAVEERPTR RDPRU WBNOINVD go.
  EXPECT_EQ(find_cpuid(a, 0x80000008)->ebx, bit(12) | bit(14) | bit(15) | bit(24) | bit(25));
  EXPECT_EQ(find_cpuid(a, 0x80000008)->edx, 0u);
  EXPECT_EQ(find_cpuid(a, 0x80000008)->ecx, 0x7007u);  // topology: vcpu_cpuid's to set
  EXPECT_EQ(find_cpuid(a, 0x8000000a)->edx, 0u);       // SVM features
  EXPECT_EQ(find_cpuid(a, 0x8000001f)->eax, 0u);       // SEV
  EXPECT_EQ(find_cpuid(a, 0x80000021)->eax, bit(0) | bit(2) | bit(6) | bit(8));
  EXPECT_EQ(find_cpuid(a, 0x7)->ebx, bit(7) | bit(10) | bit(20));  // AMD: SMEP INVPCID SMAP
}

TEST(CpuidBaseline, MasksNeverAdds) {
  CpuidEntries old_host = intel_host();
  old_host[1].ecx &= ~(bit(20) | bit(23));  // no SSE4.2, no POPCNT: the guest sees none
  CpuidEntries c = x86_64_v2_cpuid(old_host);
  EXPECT_FALSE(find_cpuid(c, 1)->ecx & (bit(20) | bit(23)));
  ASSERT_EQ(c.size(), old_host.size());  // every entry kept, in order
  for (size_t i = 0; i < c.size(); ++i) {
    EXPECT_EQ(c[i].function, old_host[i].function);
    EXPECT_EQ(c[i].index, old_host[i].index);
    EXPECT_EQ(c[i].flags, old_host[i].flags);
    EXPECT_EQ(c[i].eax & ~old_host[i].eax, 0u);
    EXPECT_EQ(c[i].ebx & ~old_host[i].ebx, 0u);
    EXPECT_EQ(c[i].ecx & ~old_host[i].ecx, 0u);
    EXPECT_EQ(c[i].edx & ~old_host[i].edx, 0u);
  }
  EXPECT_EQ(x86_64_v2_cpuid(c), c);  // the baseline of the baseline is itself
}

TEST(CpuidBaseline, TwoHostsWithTheV2SetGiveTheSameFeatureFlags) {
  // A host without any of the hidden features sees the same leaf 1 ECX as a recent one.
  CpuidEntries recent = x86_64_v2_cpuid(intel_host());
  CpuidEntries older = intel_host();
  older[1].ecx = bit(0) | bit(9) | bit(13) | bit(19) | bit(20) | bit(21) | bit(23) | bit(17) |
                 bit(24) | bit(31) | bit(26) | bit(27);  // Nehalem-like plus XSAVE
  EXPECT_EQ(find_cpuid(x86_64_v2_cpuid(older), 1)->ecx, find_cpuid(recent, 1)->ecx);
}

TEST(CpuidBaseline, VcpuCpuidAppliesTheModelThenItsOwnEdits) {
  CpuidOptions o;
  o.model = CpuModel::kX86_64_v2;
  o.tsc_deadline_timer = true;
  CpuidEntries c = vcpu_cpuid(intel_host(), 1, 2, o);
  const CpuidEntry* l1 = find_cpuid(c, 1);
  EXPECT_TRUE(l1->ecx & bit(31));   // hypervisor
  EXPECT_TRUE(l1->ecx & bit(24));   // TSC-deadline
  EXPECT_FALSE(l1->ecx & bit(28));  // AVX
  EXPECT_EQ(l1->ebx >> 24, 1u);     // APIC id
  EXPECT_TRUE(l1->edx & bit(28));   // HTT for 2 vCPUs
  EXPECT_EQ(find_cpuid(c, 0xb, 0)->edx, 1u);
  // The host model keeps what the baseline hides.
  EXPECT_TRUE(find_cpuid(vcpu_cpuid(intel_host(), 0, 1), 1)->ecx & bit(28));
  EXPECT_TRUE(find_cpuid(vcpu_cpuid(intel_host(), 0, 1), 7)->ebx & bit(5));
}

}  // namespace
}  // namespace wisp
