// virtio-rng in the persist shape (see vmm/virtio/kind_list.h): nothing to configure, nothing to
// keep besides its queue, which the transport's state holds.
#pragma once

#include <memory>

namespace wisp {

class VirtioDevice;

struct RngSpec {
  bool operator==(const RngSpec&) const = default;
  void validate() const {}
  template <typename Self, typename F>
  static void fields(Self&, F&&) {}
};

struct RngState {
  bool operator==(const RngState&) const = default;
  void validate() const {}
  template <typename Self, typename F>
  static void fields(Self&, F&&) {}
};

struct RngKind {
  static constexpr const char* kName = "virtio-rng";
  using Spec = RngSpec;
  using State = RngState;
  static std::shared_ptr<VirtioDevice> create(const RngSpec& spec);
};

}  // namespace wisp
