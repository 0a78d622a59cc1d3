// The MSR values a vCPU starts with, as firmware would leave them for a 64-bit kernel.
#pragma once

#include <vector>

#include "vmm/kvm/cpu_types.h"

namespace wisp {

std::vector<MsrEntry> boot_msrs();

}  // namespace wisp
