// The x86-64-v2 baseline CPU model (`--portable`, CpuModel::kX86_64_v2): the CPUID a vCPU sees
// when the code it runs, and the process images it checkpoints (CRIU, issue 17), must not depend
// on instruction-set features newer than x86-64-v2, so that they run on any host CPU at least
// that new. The baseline is a mask over what this host's KVM supports, never an addition: on an
// older host the guest sees less still, and KVM never advertises what it cannot run.
//
// Kept: the x86-64-v1 and v2 instruction sets (FPU CX8 CMOV MMX FXSR SSE SSE2 SYSCALL NX LM,
// CMPXCHG16B LAHF-SAHF POPCNT SSE3 SSSE3 SSE4.1 SSE4.2) and the system features that only the
// guest kernel uses (APIC, x2APIC, TSC, TSC-deadline, MSR, PAE, PGE, PAT, PCID, SMEP, SMAP,
// speculation-control bits, the hypervisor leaves, topology and cache leaves). Hidden: every
// other user-visible instruction-set extension (AVX family, AVX-512, FMA, F16C, BMI1/2, MOVBE,
// LZCNT, ADX, SHA, AES, PCLMULQDQ, RDRAND/RDSEED, RDTSCP, FSGSBASE, TSX, PKU, AMX), the XSAVE
// family and its leaf 0xD (x86-64-v2 machines such as Nehalem have no XSAVE, and without it
// the guest's FPU state is the legacy FXSAVE image every x86-64 CPU restores), nested
// virtualization, and vendor extras (SSE4a, XOP, FMA4, 3DNow!, PadLock, SGX, PT, SEV).
// Each decision is written beside its bit in cpuid_baseline.cc.
#pragma once

#include "vmm/kvm/cpu_types.h"

namespace wisp {

// `supported` (KVM_GET_SUPPORTED_CPUID's list, before the VMM's per-vCPU edits) masked down to
// the x86-64-v2 baseline: entries of feature leaves wisp does not know are zeroed, not kept,
// so that a newer host's new leaves stay hidden too. The list keeps its entries and order.
CpuidEntries x86_64_v2_cpuid(const CpuidEntries& supported);

}  // namespace wisp
