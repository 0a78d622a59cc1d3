#include "api/standby_order.h"

#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "api/vm_limits.h"

namespace wisp::standby {
namespace {

constexpr std::string_view kVersion = "wisp-order/1";
constexpr std::string_view kRestore = "restore";
constexpr std::string_view kBoot = "boot";

// The next space-separated word of `s` (advanced past it and one space).
std::string_view next_word(std::string_view& s) {
  size_t sp = s.find(' ');
  std::string_view w = s.substr(0, sp);
  s = sp == std::string_view::npos ? std::string_view() : s.substr(sp + 1);
  return w;
}

uint32_t parse_layers(std::string_view w) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), n);
  if (w.empty() || ec != std::errc() || end != w.data() + w.size() || w[0] == '0' || n < 1 ||
      n > kMaxLayers)
    throw Error("standby order: layer count \"" + std::string(w) + "\" is not 1 to " +
                std::to_string(kMaxLayers));
  return n;
}

std::vector<bool> parse_modes(std::string_view w) {
  std::vector<bool> ro;
  if (w == "-") return ro;
  for (;;) {
    size_t comma = w.find(',');
    std::string_view m = w.substr(0, comma);
    if (m == "ro") {
      ro.push_back(true);
    } else if (m == "rw") {
      ro.push_back(false);
    } else {
      throw Error("standby order: drive mode \"" + std::string(m).substr(0, 16) +
                  "\" is neither ro nor rw (no drive: \"-\")");
    }
    if (ro.size() > kMaxDrives)
      throw Error("standby order: more than " + std::to_string(kMaxDrives) + " drives");
    if (comma == std::string_view::npos) return ro;
    w = w.substr(comma + 1);
  }
}

// The label is a path for messages and records only, but still host input: one absolute line.
void check_source_dir(std::string_view dir) {
  if (dir.empty() || dir[0] != '/')
    throw Error("standby order: the snapshot directory is missing or not an absolute path");
  for (char c : dir)
    if (static_cast<unsigned char>(c) < 0x20)
      throw Error("standby order: the snapshot directory holds a control character");
}

// A decimal count in [lo, hi] without sign or leading zero, named `what` in the error.
uint32_t parse_count(std::string_view w, uint32_t lo, uint32_t hi, const char* what) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), n);
  if (w.empty() || ec != std::errc() || end != w.data() + w.size() || w[0] == '0' || n < lo ||
      n > hi)
    throw Error("standby order: " + std::string(what) + " \"" + std::string(w).substr(0, 16) +
                "\" is not " + std::to_string(lo) + " to " + std::to_string(hi));
  return n;
}

std::string encode_modes(const std::vector<bool>& read_only) {
  if (read_only.size() > kMaxDrives)
    throw Error("standby order: " + std::to_string(read_only.size()) + " drives");
  std::string modes;
  for (bool ro : read_only) modes += std::string(modes.empty() ? "" : ",") + (ro ? "ro" : "rw");
  return modes.empty() ? "-" : modes;
}

void parse_flags(std::string_view w, BootOrder* order) {
  if (w == "-") return;
  for (;;) {
    size_t comma = w.find(',');
    std::string_view f = w.substr(0, comma);
    bool* flag = f == "initrd"     ? &order->initrd
                 : f == "rootfs"   ? &order->rootfs
                 : f == "raw"      ? &order->raw_cmdline
                 : f == "portable" ? &order->portable
                                   : nullptr;
    // The flags that turn a default off.
    bool* off = f == "norng" ? &order->rng : f == "nohuge" ? &order->huge_pages : nullptr;
    if (off) {
      if (!*off) throw Error("standby order: boot flag \"" + std::string(f) + "\" given twice");
      *off = false;
    } else if (!flag) {
      throw Error("standby order: boot flag \"" + std::string(f).substr(0, 16) +
                  "\" is none of initrd, rootfs, raw, norng, nohuge, portable (none: \"-\")");
    } else if (*flag) {
      throw Error("standby order: boot flag \"" + std::string(f) + "\" given twice");
    } else {
      *flag = true;
    }
    if (comma == std::string_view::npos) return;
    w = w.substr(comma + 1);
  }
}

// The command line reaches the guest kernel as is: printable ASCII within its size.
void check_cmdline(std::string_view cmdline) {
  if (cmdline.size() > kMaxCmdlineBytes)
    throw Error("standby order: the kernel command line is " + std::to_string(cmdline.size()) +
                " bytes, over the kernel's limit of " + std::to_string(kMaxCmdlineBytes));
  for (char c : cmdline)
    if (c < 0x20 || c > 0x7e)
      throw Error(
          "standby order: the kernel command line holds a byte that is not printable ASCII");
}

void check_boot(const BootOrder& order) {
  if (order.mem_mib < (kMinGuestMemBytes >> 20) || order.mem_mib > (kMaxGuestMemBytes >> 20))
    throw Error("standby order: guest memory " + std::to_string(order.mem_mib) + " MiB is not " +
                std::to_string(kMinGuestMemBytes >> 20) + " to " +
                std::to_string(kMaxGuestMemBytes >> 20));
  if (order.vcpus < 1 || order.vcpus > kMaxGuestVcpus)
    throw Error("standby order: " + std::to_string(order.vcpus) + " vCPUs is not 1 to " +
                std::to_string(kMaxGuestVcpus));
  if (order.rootfs && (order.drive_read_only.empty() || !order.drive_read_only[0]))
    throw Error("standby order: flag rootfs needs drive 0, read-only (MODES starting \"ro\")");
  check_cmdline(order.cmdline);
}

BootOrder parse_boot(std::string_view s, size_t fds) {
  BootOrder order;
  order.mem_mib = parse_count(next_word(s), static_cast<uint32_t>(kMinGuestMemBytes >> 20),
                              static_cast<uint32_t>(kMaxGuestMemBytes >> 20), "guest memory (MiB)");
  order.vcpus = parse_count(next_word(s), 1, kMaxGuestVcpus, "vCPU count");
  if (s.empty()) throw Error("standby order: drive modes missing (no drive: \"-\")");
  order.drive_read_only = parse_modes(next_word(s));
  if (s.empty()) throw Error("standby order: boot flags missing (none: \"-\")");
  parse_flags(next_word(s), &order);
  order.cmdline = std::string(s);
  check_boot(order);
  if (fds != order.fd_count())
    throw Error("standby order: came with " + std::to_string(fds) + " descriptors, " +
                std::to_string(order.fd_count()) +
                " expected (the kernel, the initrd if flagged, 1 per drive)");
  return order;
}

}  // namespace

std::string encode_order(const BootOrder& order) {
  check_boot(order);
  std::string flags;
  for (auto [on, name] :
       {std::pair{order.initrd, "initrd"}, std::pair{order.rootfs, "rootfs"},
        std::pair{order.raw_cmdline, "raw"}, std::pair{!order.rng, "norng"},
        std::pair{!order.huge_pages, "nohuge"}, std::pair{order.portable, "portable"}})
    if (on) flags += std::string(flags.empty() ? "" : ",") + name;
  if (flags.empty()) flags = "-";
  return std::string(kVersion) + " " + std::string(kBoot) + " " + std::to_string(order.mem_mib) +
         " " + std::to_string(order.vcpus) + " " + encode_modes(order.drive_read_only) + " " +
         flags + " " + order.cmdline + "\n";
}

size_t fd_count(const Order& order) {
  return std::visit([](const auto& o) { return o.fd_count(); }, order);
}

std::string encode_order(const RestoreOrder& order) {
  if (order.layers < 1 || order.layers > kMaxLayers)
    throw Error("standby order: " + std::to_string(order.layers) + " layers");
  if (order.drive_read_only.size() > kMaxDrives)
    throw Error("standby order: " + std::to_string(order.drive_read_only.size()) + " drives");
  std::string modes;
  for (bool ro : order.drive_read_only)
    modes += std::string(modes.empty() ? "" : ",") + (ro ? "ro" : "rw");
  if (modes.empty()) modes = "-";
  check_source_dir(order.source_dir);
  if (order.written_set && !order.working_set)
    throw Error("standby order: a written set without a working set");
  std::string text = std::string(kVersion) + " " + std::string(kRestore) + " " +
                     std::to_string(order.layers) + " " + modes +
                     (order.working_set ? " ws " : " ") + (order.written_set ? "wr " : "") +
                     order.source_dir + "\n";
  if (text.size() > kMaxOrderBytes)
    throw Error("standby order: snapshot directory " + order.source_dir + " is too long");
  return text;
}

Order parse_order(std::string_view message, size_t fds) {
  if (message.size() > kMaxOrderBytes)
    throw Error("standby order: " + std::to_string(message.size()) + " bytes, over the limit of " +
                std::to_string(kMaxOrderBytes));
  if (message.empty() || message.back() != '\n')
    throw Error("standby order: not one line ending in a newline");
  std::string_view s = message.substr(0, message.size() - 1);
  if (s.find('\n') != std::string_view::npos || s.find('\0') != std::string_view::npos)
    throw Error("standby order: not one line of text");
  if (next_word(s) != kVersion)
    throw Error("standby order: not a " + std::string(kVersion) + " message");
  std::string_view verb = next_word(s);
  if (verb == kBoot) return parse_boot(s, fds);
  if (verb != kRestore)
    throw Error("standby order: the orders are \"restore\" and \"boot\", not \"" +
                std::string(verb).substr(0, 16) + "\"");
  RestoreOrder order;
  order.layers = parse_layers(next_word(s));
  if (s.empty()) throw Error("standby order: drive modes missing (no drive: \"-\")");
  order.drive_read_only = parse_modes(next_word(s));
  // Optional, and never a directory: DIR is absolute.
  if (s.substr(0, 3) == "ws ") {
    order.working_set = true;
    s.remove_prefix(3);
    if (s.substr(0, 3) == "wr ") {
      order.written_set = true;
      s.remove_prefix(3);
    }
  }
  check_source_dir(s);
  order.source_dir = std::string(s);
  if (fds != order.fd_count())
    throw Error("standby order: came with " + std::to_string(fds) + " descriptors, " +
                std::to_string(order.fd_count()) +
                " expected (2 per layer, 1 per drive, 1 for ws, 1 for wr)");
  return order;
}

ReceivedOrder receive_order(int sock) {
  char text[kMaxOrderBytes + 1];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxOrderFds)];
  iovec iov{text, sizeof(text)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0 && errno == EINTR) throw OrderCancelled("standby: stopped by a signal");
  if (n < 0) throw_errno("standby: receiving the order");
  // Whatever came, its descriptors are owned from here on.
  ReceivedOrder out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);
    }
  }
  if (n == 0 && out.fds.empty())
    throw OrderCancelled("standby: the manager closed the order socket");
  // The control buffer rounds up to 8 bytes: with an odd limit, one more may fit uncut.
  if ((msg.msg_flags & MSG_CTRUNC) || out.fds.size() > kMaxOrderFds)
    throw Error("standby order: more than " + std::to_string(kMaxOrderFds) + " descriptors");
  if (msg.msg_flags & MSG_TRUNC)
    throw Error("standby order: over the limit of " + std::to_string(kMaxOrderBytes) + " bytes");
  out.order = parse_order(std::string_view(text, static_cast<size_t>(n)), out.fds.size());
  return out;
}

void send_message(int sock, std::string_view text, const std::vector<int>& fds) {
  if (fds.size() > kMaxOrderFds) throw Error("standby: too many descriptors to send");
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxOrderFds)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  while ((n = ::sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  if (n < 0) throw_errno("standby: sending to the VMM's order socket");
  if (static_cast<size_t>(n) != text.size()) throw Error("standby: short send on the order socket");
}

}  // namespace wisp::standby
