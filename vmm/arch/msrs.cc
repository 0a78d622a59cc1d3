#include "vmm/arch/msrs.h"

namespace wisp {
namespace {
constexpr uint32_t kSysenterCs = 0x174, kSysenterEsp = 0x175, kSysenterEip = 0x176;
constexpr uint32_t kStar = 0xc0000081, kLstar = 0xc0000082, kCstar = 0xc0000083;
constexpr uint32_t kSyscallMask = 0xc0000084, kKernelGsBase = 0xc0000102;
constexpr uint32_t kTsc = 0x10, kMiscEnable = 0x1a0, kMtrrDefType = 0x2ff;
constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1u << 11, kMtrrTypeWriteBack = 6;
}  // namespace

std::vector<MsrEntry> boot_msrs() {
  return {
      {kSysenterCs, 0},
      {kSysenterEsp, 0},
      {kSysenterEip, 0},
      {kStar, 0},
      {kCstar, 0},
      {kKernelGsBase, 0},
      {kSyscallMask, 0},
      {kLstar, 0},
      {kTsc, 0},
      {kMiscEnable, kMiscEnableFastString},
      // All memory write-back unless the guest says otherwise, as firmware leaves it.
      {kMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack},
  };
}

}  // namespace wisp
