#include "api/standby_order.h"

#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace wisp::standby {
namespace {

constexpr std::string_view kVersion = "wisp-order/1";
constexpr std::string_view kRestore = "restore";

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

}  // namespace

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
  std::string text = std::string(kVersion) + " " + std::string(kRestore) + " " +
                     std::to_string(order.layers) + " " + modes + " " + order.source_dir + "\n";
  if (text.size() > kMaxOrderBytes)
    throw Error("standby order: snapshot directory " + order.source_dir + " is too long");
  return text;
}

RestoreOrder parse_order(std::string_view message, size_t fds) {
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
  if (next_word(s) != kRestore) throw Error("standby order: the only order is \"restore\"");
  RestoreOrder order;
  order.layers = parse_layers(next_word(s));
  if (s.empty()) throw Error("standby order: drive modes missing (no drive: \"-\")");
  order.drive_read_only = parse_modes(next_word(s));
  check_source_dir(s);
  order.source_dir = std::string(s);
  if (fds != order.fd_count())
    throw Error("standby order: came with " + std::to_string(fds) + " descriptors, " +
                std::to_string(order.fd_count()) + " expected (2 per layer, 1 per drive)");
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
  if (msg.msg_flags & MSG_CTRUNC)
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
