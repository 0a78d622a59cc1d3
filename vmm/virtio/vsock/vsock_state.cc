#include "vmm/virtio/vsock/vsock_state.h"

#include <sys/un.h>

#include "base/error.h"
#include "vmm/virtio/vsock/vsock_packet.h"

namespace wisp {
namespace {

void check_guest_cid(uint64_t cid) {
  if (cid < vsock::kMinGuestCid || cid > vsock::kMaxGuestCid)
    throw Error("vsock: guest CID " + std::to_string(cid) + " is reserved or too big");
}

}  // namespace

void VsockSpec::validate() const {
  check_guest_cid(guest_cid);
  sockaddr_un addr;
  // PATH_<port> must fit too, for guest-initiated connections (up to 10 digits).
  if (uds_path.size() + 11 >= sizeof(addr.sun_path))
    throw Error("--vsock-uds: '" + uds_path + "' is too long for a Unix socket (at most " +
                std::to_string(sizeof(addr.sun_path) - 12) + " bytes, to leave room for _PORT)");
}

void VsockState::validate() const { check_guest_cid(guest_cid); }

}  // namespace wisp
