// Validation of saved KVM state (vmm/kvm/vcpu_state.h): pure, no /dev/kvm.
#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "vmm/kvm/vcpu_state.h"

namespace wisp {
namespace {

VcpuState good_vcpu() {
  VcpuState s;
  s.regs.resize(KvmImageSize::kRegs);
  s.sregs.resize(KvmImageSize::kSregs);
  s.fpu.resize(KvmImageSize::kFpu);
  s.xsave.resize(KvmImageSize::kXsaveMin);
  s.xcrs.resize(KvmImageSize::kXcrs);
  s.lapic.resize(KvmImageSize::kLapic);
  s.vcpu_events.resize(KvmImageSize::kVcpuEvents);
  s.debug_regs.resize(KvmImageSize::kDebugRegs);
  s.msrs = {{0x10, 1}, {0x6e0, 2}, {0x4b564d01, 3}};
  return s;
}

VmState good_vm() {
  VmState s;
  s.pic_master.resize(KvmImageSize::kIrqchip);
  s.pic_slave.resize(KvmImageSize::kIrqchip);
  s.ioapic.resize(KvmImageSize::kIrqchip);
  s.pit.resize(KvmImageSize::kPit);
  return s;
}

// The message of the Error `f` throws, or "" if it does not throw.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(KvmStateTest, AcceptsWellFormedState) {
  EXPECT_NO_THROW(good_vcpu().validate());
  EXPECT_NO_THROW(good_vcpu().check_xsave_fits(KvmImageSize::kXsaveMin));
  EXPECT_NO_THROW(good_vm().validate());
}

TEST(KvmStateTest, NamesTheWrongVcpuField) {
  struct Case {
    const char* field;
    std::vector<uint8_t> VcpuState::*member;
  };
  const Case cases[] = {
      {"regs", &VcpuState::regs},
      {"sregs", &VcpuState::sregs},
      {"fpu", &VcpuState::fpu},
      {"xcrs", &VcpuState::xcrs},
      {"lapic", &VcpuState::lapic},
      {"vcpu_events", &VcpuState::vcpu_events},
      {"debug_regs", &VcpuState::debug_regs},
  };
  for (const auto& c : cases) {
    for (size_t delta : {size_t{1}, size_t{0}}) {
      VcpuState s = good_vcpu();
      auto& image = s.*c.member;
      image.resize(delta ? image.size() + delta : 0);
      std::string msg = error_of([&] { s.validate(); });
      EXPECT_NE(msg.find(std::string(c.field) + " image"), std::string::npos) << msg;
    }
  }
}

TEST(KvmStateTest, ChecksXsaveSizeAndAgainstHost) {
  VcpuState s = good_vcpu();
  s.xsave.resize(100);
  EXPECT_NE(error_of([&] { s.validate(); }).find("xsave"), std::string::npos);
  s.xsave.resize(4097);
  EXPECT_NE(error_of([&] { s.validate(); }).find("xsave"), std::string::npos);
  s.xsave.resize(8192);
  EXPECT_NO_THROW(s.validate());
  EXPECT_NO_THROW(s.check_xsave_fits(8192));
  // Saved with AMX state, restored where KVM has only the 4 KiB area: refused.
  EXPECT_NE(error_of([&] { s.check_xsave_fits(4096); }).find("features this host lacks"),
            std::string::npos);
  s.xsave.resize(2 << 20);
  EXPECT_NE(error_of([&] { s.validate(); }).find("xsave"), std::string::npos);
}

TEST(KvmStateTest, ChecksMpStateAndMsrs) {
  VcpuState s = good_vcpu();
  s.mp_state = 77;
  EXPECT_NE(error_of([&] { s.validate(); }).find("mp_state"), std::string::npos);
  s = good_vcpu();
  s.msrs.push_back({0x10, 5});
  EXPECT_NE(error_of([&] { s.validate(); }).find("MSR 0x10 twice"), std::string::npos);
  s = good_vcpu();
  s.msrs.clear();
  for (uint32_t i = 0; i <= KvmImageSize::kMaxMsrs; ++i) s.msrs.push_back({i, 0});
  EXPECT_NE(error_of([&] { s.validate(); }).find("msrs has"), std::string::npos);
}

TEST(KvmStateTest, NamesTheWrongVmField) {
  VmState s = good_vm();
  s.ioapic.resize(511);
  EXPECT_NE(error_of([&] { s.validate(); }).find("ioapic image is 511 bytes"), std::string::npos);
  s = good_vm();
  s.pit.clear();
  EXPECT_NE(error_of([&] { s.validate(); }).find("pit image"), std::string::npos);
  s = good_vm();
  s.pic_slave.resize(4096);
  EXPECT_NE(error_of([&] { s.validate(); }).find("pic_slave"), std::string::npos);
}

TEST(KvmStateTest, SavesGuestMsrsNotHostProperties) {
  for (uint32_t msr :
       {0x10u, 0x3bu, 0x6e0u, 0x277u, 0x1a0u, 0xc0000081u, 0xc0000082u, 0xc0000084u, 0xc0000102u,
        0x4b564d00u, 0x4b564d01u, 0x4b564d02u, 0x4b564d03u, 0x4b564d04u, 0x174u})
    EXPECT_TRUE(should_save_msr(msr)) << std::hex << msr;
  // EFER and APIC base travel in sregs; MCG_CAP, ARCH_CAPABILITIES and PMU MSRs are not saved.
  for (uint32_t msr : {0xc0000080u, 0x1bu, 0x179u, 0x10au, 0x38fu})
    EXPECT_FALSE(should_save_msr(msr)) << std::hex << msr;
}

}  // namespace
}  // namespace wisp
