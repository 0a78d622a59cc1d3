// virtio-vsock in the persist shape (see vmm/virtio/kind_list.h): the guest's CID and the Unix
// socket its host side listens on (VsockSpec), and what a snapshot keeps of a running device
// (VsockState). Connections are not saved: restore tells the guest TRANSPORT_RESET.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace wisp {

class VirtioDevice;

// `--vsock-uds PATH --vsock-cid N`.
struct VsockSpec {
  std::string uds_path;
  uint64_t guest_cid = 3;
  bool operator==(const VsockSpec&) const = default;

  // Throws Error for a reserved or out-of-range CID, or a path too long for a Unix socket. An
  // empty path passes: a snapshot does not record it (see fields()), the restore's caller
  // gives each clone its own; validate_vsock_config (vsock_muxer.h) also wants one.
  void validate() const;

  // Only the CID: the socket path belongs to one VMM process, not to the machine.
  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("guest_cid", self.guest_cid);
  }
};

// The guest kernel knows its CID; the restored device takes it over whatever its configuration
// said.
struct VsockState {
  uint64_t guest_cid = 0;
  bool operator==(const VsockState&) const = default;

  // Throws Error for a reserved or out-of-range CID.
  void validate() const;

  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("guest_cid", self.guest_cid);
  }
};

struct VsockKind {
  static constexpr const char* kName = "virtio-vsock";
  using Spec = VsockSpec;
  using State = VsockState;
  // Binds and listens on spec.uds_path. Throws Error (bad spec, path in use).
  static std::shared_ptr<VirtioDevice> create(const VsockSpec& spec);
};

}  // namespace wisp
