// The order a standby VMM (wisp-vmm standby) waits for, and what it says back, over its order
// socket: one end of a SOCK_SEQPACKET socketpair the manager (manager/vmm_pool.h) keeps the
// other end of. One message each way per step, text, at most kMaxOrderBytes:
//
//   VMM -> manager  "standby\n"                   jailed (namespaces, root, cgroup, uid, no
//                                                 capabilities), /dev/kvm open, waiting
//   manager -> VMM  "wisp-order/1 restore L MODES DIR\n" with 2*L + D descriptors
//                   (SCM_RIGHTS): each layer's state file then memory file, top layer first,
//                   then the D drive images in slot order. MODES is "-" (no drive) or the D
//                   drives' modes joined by commas ("ro,rw"), which must be the snapshot's. DIR
//                   (the rest of the line, absolute) is the snapshot's directory: a label the
//                   VMM opens nothing by, recorded as the parent of a diff snapshot of the clone.
//   VMM -> manager  "ready LOADED_MS RESTORED_MS JAIL_MS\n"   as `wisp-vmm restore --ready-fd`
//
// The VMM runs the order once; any other message, a count of descriptors that does not match,
// or a truncated message is refused (it exits with the reason on stderr). The manager is host
// input to the VMM: parse_order validates everything before a descriptor is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace wisp::standby {

// The words and counts, then the snapshot's directory: any path the kernel takes (PATH_MAX).
constexpr size_t kMaxOrderBytes = 64 + 4096;
// A full snapshot and up to 16 diff layers above it (snapshot/'s kMaxDiffDepth).
constexpr uint32_t kMaxLayers = 17;
constexpr uint32_t kMaxDrives = 16;
constexpr size_t kMaxOrderFds = 2 * kMaxLayers + kMaxDrives;

constexpr std::string_view kStandbyLine = "standby\n";

struct RestoreOrder {
  uint32_t layers = 0;
  std::vector<bool> drive_read_only;  // one per drive, in slot order
  std::string source_dir;             // the snapshot's directory (a label, see above)
  size_t fd_count() const { return 2 * size_t{layers} + drive_read_only.size(); }
  bool operator==(const RestoreOrder&) const = default;
};

// The order's text (without descriptors). Throws Error for counts out of range.
std::string encode_order(const RestoreOrder& order);
// Parses `message`, received with `fds` descriptors. Throws Error saying what is wrong (the
// version, the verb, a count, a mode, the descriptor count).
RestoreOrder parse_order(std::string_view message, size_t fds);

// The VMM stopped waiting: the manager closed its end (nothing to do), or a stop signal came.
class OrderCancelled : public Error {
 public:
  using Error::Error;
};

struct ReceivedOrder {
  RestoreOrder order;
  std::vector<UniqueFd> fds;  // layers' state and memory files, then drives, as above
};
// Blocks for one order on `sock`. Every descriptor received is owned (closed on error). Throws
// OrderCancelled on end of file or EINTR (a stop signal), Error for anything malformed.
ReceivedOrder receive_order(int sock);

// Sends `text` with `fds` (may be empty) as one message on `sock`. Throws Error.
void send_message(int sock, std::string_view text, const std::vector<int>& fds = {});

}  // namespace wisp::standby
