#include "vmm/machine/machine_state.h"

#include <string>

#include "base/error.h"
#include "vmm/boot/mptable.h"
#include "vmm/virtio/mmio_layout.h"

namespace wisp {
namespace {

constexpr uint64_t kPageSize = 4096;

// Runs `check`, putting `where` in front of the message of the Error it throws.
template <typename Check>
void within(const std::string& where, Check&& check) {
  try {
    check();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}

}  // namespace

void VirtioSlotState::validate() const {
  if (spec.index() != device.index())
    throw Error(std::string("a ") + kind_name(spec) + " holds a " + kind_name(device) + "'s state");
  wisp::validate(spec);
  wisp::validate(device);
  transport.validate();
}

void MachineState::validate() const {
  auto fail = [](const std::string& why) { return Error("machine state: " + why); };
  if (mem_bytes == 0 || mem_bytes % kPageSize != 0)
    throw fail("memory size " + std::to_string(mem_bytes) + " is not a whole number of pages");
  if (cpu_model != CpuModel::kHost && cpu_model != CpuModel::kX86_64_v2)
    throw fail("CPU model " + std::to_string(static_cast<int>(cpu_model)) + " is unknown");
  if (cpuid.size() > kMaxCpuidEntries)
    throw fail(std::to_string(cpuid.size()) + " CPUID entries (limit " +
               std::to_string(kMaxCpuidEntries) + ")");
  if (vcpus.empty() || vcpus.size() > kMpTableMaxCpus)
    throw fail(std::to_string(vcpus.size()) + " vCPUs (expected 1.." +
               std::to_string(kMpTableMaxCpus) + ")");
  for (size_t i = 0; i < vcpus.size(); ++i) {
    if (vcpus[i].id != i)
      throw fail("vCPU " + std::to_string(i) + " has id " + std::to_string(vcpus[i].id));
    within("machine state: vCPU " + std::to_string(i), [&] { vcpus[i].validate(); });
  }
  within("machine state", [&] { vm.validate(); });
  within("machine state", [&] { serial.validate(); });
  if (virtio.size() > kMaxVirtioMmioDevices)
    throw fail(std::to_string(virtio.size()) + " virtio devices (" +
               std::to_string(kMaxVirtioMmioDevices) + " slots)");
  for (size_t i = 0; i < virtio.size(); ++i) {
    within("machine state: virtio slot " + std::to_string(i), [&] { virtio[i].validate(); });
  }
}

}  // namespace wisp
