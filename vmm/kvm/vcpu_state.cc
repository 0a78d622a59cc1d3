#include "vmm/kvm/vcpu_state.h"

#include <string>
#include <unordered_set>

#include "base/error.h"
#include "base/hex.h"

namespace wisp {
namespace {

void check_size(const char* what, const char* field, const std::vector<uint8_t>& image,
                size_t want) {
  if (image.size() != want)
    throw Error(std::string(what) + ": " + field + " image is " + std::to_string(image.size()) +
                " bytes, expected " + std::to_string(want));
}

}  // namespace

bool should_save_msr(uint32_t index) {
  struct Range {
    uint32_t first, last;
  };
  static constexpr Range kSaved[] = {
      {0x10, 0x10},              // IA32_TSC
      {0x11, 0x12},              // MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME (legacy)
      {0x3b, 0x3b},              // IA32_TSC_ADJUST
      {0x48, 0x48},              // IA32_SPEC_CTRL
      {0x174, 0x176},            // IA32_SYSENTER_CS/ESP/EIP
      {0x1a0, 0x1a0},            // IA32_MISC_ENABLE
      {0x200, 0x2ff},            // MTRRs, IA32_PAT (0x277), MTRR_DEF_TYPE
      {0x6e0, 0x6e0},            // IA32_TSC_DEADLINE
      {0xda0, 0xda0},            // IA32_XSS
      {0x4b564d00, 0x4b564d08},  // KVM: wall clock, system time, async PF, steal time,
                                 // PV EOI, poll control, async PF int/ack, migration
      {0xc0000081, 0xc0000084},  // STAR, LSTAR, CSTAR, SYSCALL_MASK
      {0xc0000102, 0xc0000103},  // KERNEL_GS_BASE, TSC_AUX
  };
  for (const auto& r : kSaved)
    if (index >= r.first && index <= r.last) return true;
  return false;
}

void VcpuState::validate() const {
  constexpr const char* kWhat = "vCPU state";
  check_size(kWhat, "regs", regs, KvmImageSize::kRegs);
  check_size(kWhat, "sregs", sregs, KvmImageSize::kSregs);
  check_size(kWhat, "fpu", fpu, KvmImageSize::kFpu);
  if (xsave.size() < KvmImageSize::kXsaveMin || xsave.size() > KvmImageSize::kXsaveMax ||
      xsave.size() % 4 != 0)
    throw Error(std::string(kWhat) + ": xsave image is " + std::to_string(xsave.size()) +
                " bytes, expected a multiple of 4 from " + std::to_string(KvmImageSize::kXsaveMin));
  check_size(kWhat, "xcrs", xcrs, KvmImageSize::kXcrs);
  check_size(kWhat, "lapic", lapic, KvmImageSize::kLapic);
  check_size(kWhat, "vcpu_events", vcpu_events, KvmImageSize::kVcpuEvents);
  check_size(kWhat, "debug_regs", debug_regs, KvmImageSize::kDebugRegs);
  if (mp_state > kMaxX86MpState)
    throw Error(std::string(kWhat) + ": mp_state " + std::to_string(mp_state) +
                " is not a valid x86 KVM_MP_STATE");
  if (msrs.size() > KvmImageSize::kMaxMsrs)
    throw Error(std::string(kWhat) + ": msrs has " + std::to_string(msrs.size()) +
                " entries, at most " + std::to_string(KvmImageSize::kMaxMsrs) + " allowed");
  std::unordered_set<uint32_t> seen;
  for (const auto& m : msrs) {
    if (!seen.insert(m.index).second)
      throw Error(std::string(kWhat) + ": msrs lists MSR " + hex(m.index) + " twice");
  }
}

void VcpuState::check_xsave_fits(size_t host_xsave_size) const {
  if (xsave.size() > host_xsave_size)
    throw Error("vCPU state: xsave image is " + std::to_string(xsave.size()) +
                " bytes but this host's KVM takes " + std::to_string(host_xsave_size) +
                " (saved on a CPU with XSAVE features this host lacks)");
}

void VmState::validate() const {
  constexpr const char* kWhat = "VM state";
  check_size(kWhat, "pic_master", pic_master, KvmImageSize::kIrqchip);
  check_size(kWhat, "pic_slave", pic_slave, KvmImageSize::kIrqchip);
  check_size(kWhat, "ioapic", ioapic, KvmImageSize::kIrqchip);
  check_size(kWhat, "pit", pit, KvmImageSize::kPit);
}

}  // namespace wisp
