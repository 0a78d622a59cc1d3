// The order a standby VMM (wisp-vmm standby) waits for, and what it says back, over its order
// socket: one end of a SOCK_SEQPACKET socketpair the manager (manager/vmm_pool.h) keeps the
// other end of. One message each way per step, text, at most kMaxOrderBytes:
//
//   VMM -> manager  "standby\n"                   jailed (namespaces, root, cgroup, uid, no
//                                                 capabilities), /dev/kvm open, waiting
//   manager -> VMM  "wisp-order/1 restore L MODES [ws [wr]] DIR\n" with 2*L + D (+ 1 or 2)
//                   descriptors (SCM_RIGHTS): each layer's state file then memory file, top
//                   layer first, then the D drive images in slot order, then with "ws" the top
//                   layer's working-set file (snapshot/working_set.h: the VMM prefetches it),
//                   then with "wr" its written-set file (the VMM makes those pages private
//                   copies before the vCPUs run). MODES is "-"
//                   (no drive) or the D drives' modes joined by commas ("ro,rw"), which must be the
//                   snapshot's. DIR (the rest of the line, absolute) is the snapshot's directory: a
//                   label the VMM opens nothing by, recorded as the parent of a diff snapshot of
//                   the clone.
//   VMM -> manager  "ready LOADED_MS RESTORED_MS JAIL_MS\n"   as `wisp-vmm restore --ready-fd`
//
// or, to boot a machine as `wisp-vmm run` would (the standby's own vsock, control socket and
// console, from its launch arguments):
//
//   manager -> VMM  "wisp-order/1 boot MEM_MIB VCPUS MODES FLAGS CMDLINE\n" with 1 + I + D
//                   descriptors: the kernel, the initrd when FLAGS has "initrd" (I = 1), then
//                   the D drive images in slot order (MODES as for restore). MEM_MIB and VCPUS
//                   must be within the standby's class (checked by the VMM, which knows it).
//                   FLAGS is "-" or a comma-joined set of: initrd; rootfs (drive 0, read-only,
//                   is the root filesystem: `wisp-vmm run --rootfs`); raw (CMDLINE is the whole
//                   command line: --raw-cmdline); norng (no virtio-rng); nohuge (guest RAM on
//                   4 KiB pages: --no-hugepages); portable (the x86-64-v2 baseline CPU:
//                   --portable). CMDLINE (the rest of the line, may be empty) is what `wisp-vmm run
//                   --cmdline` takes: the VMM puts its defaults (and the rootfs arguments) before
//                   it exactly as run does. At most kMaxCmdlineBytes of printable ASCII.
//   VMM -> manager  "ready LOADED_MS BOOTED_MS JAIL_MS\n"  the kernel loaded / the machine built
//                   (its vCPUs about to run), counted from the order, as for restore
//
// The VMM runs the order once; any other message, a count of descriptors that does not match,
// or a truncated message is refused (it exits with the reason on stderr). The manager is host
// input to the VMM: parse_order validates everything before a descriptor is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace wisp::standby {

// The words and counts, then the snapshot's directory: any path the kernel takes (PATH_MAX).
constexpr size_t kMaxOrderBytes = 64 + 4096;
// A full snapshot and up to 16 diff layers above it (snapshot/'s kMaxDiffDepth).
constexpr uint32_t kMaxLayers = 17;
constexpr uint32_t kMaxDrives = 16;
constexpr size_t kMaxOrderFds = 2 * kMaxLayers + kMaxDrives + 2;  // + working and written set
// The kernel's COMMAND_LINE_SIZE (2048) less its terminating NUL: a boot order's CMDLINE; the
// VMM checks the whole line (its defaults added) against the kernel image's own limit.
constexpr size_t kMaxCmdlineBytes = 2047;

constexpr std::string_view kStandbyLine = "standby\n";

struct RestoreOrder {
  uint32_t layers = 0;
  std::vector<bool> drive_read_only;  // one per drive, in slot order
  std::string source_dir;             // the snapshot's directory (a label, see above)
  bool working_set = false;           // a working-set descriptor follows the drives'
  bool written_set = false;           // ... and a written-set one (only with working_set)
  size_t fd_count() const {
    return 2 * size_t{layers} + drive_read_only.size() + (working_set ? 1 : 0) +
           (written_set ? 1 : 0);
  }
  bool operator==(const RestoreOrder&) const = default;
};

struct BootOrder {
  uint32_t mem_mib = 0;
  uint32_t vcpus = 0;
  std::vector<bool> drive_read_only;  // one per drive, in slot order
  bool initrd = false;                // an initrd descriptor follows the kernel's
  bool rootfs = false;                // drive 0 is the root filesystem (read-only)
  bool raw_cmdline = false;           // `cmdline` is the whole command line
  bool rng = true;
  bool huge_pages = true;  // false: flag nohuge (`wisp-vmm run --no-hugepages`)
  bool portable = false;   // flag portable (`wisp-vmm run --portable`)
  std::string cmdline;     // as `wisp-vmm run --cmdline` takes it
  size_t fd_count() const { return 1 + (initrd ? 1 : 0) + drive_read_only.size(); }
  bool operator==(const BootOrder&) const = default;
};

using Order = std::variant<RestoreOrder, BootOrder>;

// The order's text (without descriptors). Throws Error for counts or text out of range.
std::string encode_order(const RestoreOrder& order);
std::string encode_order(const BootOrder& order);
// Parses `message`, received with `fds` descriptors. Throws Error saying what is wrong (the
// version, the verb, a count, a size, a mode, a flag, the command line, the descriptor count).
Order parse_order(std::string_view message, size_t fds);
size_t fd_count(const Order& order);

// The VMM stopped waiting: the manager closed its end (nothing to do), or a stop signal came.
class OrderCancelled : public Error {
 public:
  using Error::Error;
};

struct ReceivedOrder {
  Order order;
  std::vector<UniqueFd> fds;  // as the order's text says (above)
};
// Blocks for one order on `sock`. Every descriptor received is owned (closed on error). Throws
// OrderCancelled on end of file or EINTR (a stop signal), Error for anything malformed.
ReceivedOrder receive_order(int sock);

// Sends `text` with `fds` (may be empty) as one message on `sock`. Throws Error.
void send_message(int sock, std::string_view text, const std::vector<int>& fds = {});

}  // namespace wisp::standby
