#include "vmm/virtio/device_kinds.h"

#include "vmm/virtio/device.h"

namespace wisp {

template <typename T>
using KindOf = VirtioKinds::KindOf<T>;

const char* kind_name(const DeviceSpec& spec) {
  return std::visit([](const auto& s) { return KindOf<decltype(s)>::kName; }, spec);
}

const char* kind_name(const VirtioDeviceState& state) {
  return std::visit([](const auto& s) { return KindOf<decltype(s)>::kName; }, state);
}

void validate(const DeviceSpec& spec) {
  std::visit([](const auto& s) { s.validate(); }, spec);
}

void validate(const VirtioDeviceState& state) {
  std::visit([](const auto& s) { s.validate(); }, state);
}

std::shared_ptr<VirtioDevice> create_virtio_device(const DeviceSpec& spec) {
  return std::visit([](const auto& s) { return KindOf<decltype(s)>::create(s); }, spec);
}

DeviceSpec record_identity(const DeviceSpec& spec) {
  return std::visit(
      [](const auto& s) -> DeviceSpec {
        using Kind = KindOf<decltype(s)>;
        if constexpr (requires { Kind::record_identity(s); })
          return Kind::record_identity(s);
        else
          return s;
      },
      spec);
}

void check_identity(const DeviceSpec& spec) {
  std::visit(
      [](const auto& s) {
        using Kind = KindOf<decltype(s)>;
        if constexpr (requires { Kind::check_identity(s); }) Kind::check_identity(s);
      },
      spec);
}

}  // namespace wisp
