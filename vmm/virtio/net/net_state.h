// virtio-net in the persist shape (see vmm/virtio/kind_list.h): the TAP a NIC is bridged to and
// its MAC (NetSpec, the user's `--net tap=NAME[,mac=MAC]`), and what a snapshot keeps of a
// running one (NetState: the MAC the guest read at probe time). The negotiated features and
// the queues are the transport's state. Plain data, no fds: the TAP is opened by NetKind::create
// (or handed over before the jail, provide_tap_fd in tap_backend.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/token_bucket.h"

namespace wisp {

class VirtioDevice;

// A locally administered unicast MAC (52:54:00:12:34:56 with the local bit set: 02:...): the
// default when --net names none.
constexpr uint64_t kDefaultNetMac = 0x02'54'00'12'34'56;

// Parses "aa:bb:cc:dd:ee:ff" (hex, either case) into the low 48 bits, first octet most
// significant. Throws Error naming `field` for another form, a multicast address or zero.
uint64_t parse_mac(const std::string& text, const std::string& field);
std::string format_mac(uint64_t mac);

struct NetSpec {
  // IFNAMSIZ - 1: the longest interface name Linux takes.
  static constexpr size_t kMaxTapNameBytes = 15;

  std::string tap_name;
  uint64_t mac = kDefaultNetMac;
  // Rate limits, none by default: RX counts frames to the guest, TX frames from it. In the
  // snapshot, so a template's clones are limited as the template was.
  RateLimitConfig rx_limit;
  RateLimitConfig tx_limit;
  bool operator==(const NetSpec&) const = default;

  // Throws Error("virtio-net spec: ...") for an empty, over-long or '/'-holding TAP name, a
  // MAC that is zero, multicast or above 48 bits, or rate-limit buckets out of range.
  void validate() const;

  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("tap_name", self.tap_name);
    f("mac", self.mac);
    f("rx_bw_size", self.rx_limit.bandwidth.size);
    f("rx_bw_one_time_burst", self.rx_limit.bandwidth.one_time_burst);
    f("rx_bw_refill_time_ms", self.rx_limit.bandwidth.refill_time_ms);
    f("rx_ops_size", self.rx_limit.ops.size);
    f("rx_ops_one_time_burst", self.rx_limit.ops.one_time_burst);
    f("rx_ops_refill_time_ms", self.rx_limit.ops.refill_time_ms);
    f("tx_bw_size", self.tx_limit.bandwidth.size);
    f("tx_bw_one_time_burst", self.tx_limit.bandwidth.one_time_burst);
    f("tx_bw_refill_time_ms", self.tx_limit.bandwidth.refill_time_ms);
    f("tx_ops_size", self.tx_limit.ops.size);
    f("tx_ops_one_time_burst", self.tx_limit.ops.one_time_burst);
    f("tx_ops_refill_time_ms", self.tx_limit.ops.refill_time_ms);
  }
};

// The guest's address on that NIC, for the kernel command line (`wisp.net=...`, which the
// agent applies): empty address = the guest configures nothing.
struct NetGuestAddress {
  std::string address;  // dotted quad
  uint32_t prefix = 0;  // 1..32
  std::string gateway;  // dotted quad or ""
  uint32_t mtu = 1500;
  bool operator==(const NetGuestAddress&) const = default;
  // "wisp.net=ADDR/PREFIX,GW,MTU" (GW "-" for none); "" without an address.
  std::string cmdline_word() const;
};

// One `--net` option: the device and the guest's address on it.
struct NetOption {
  NetSpec spec;
  NetGuestAddress guest;
};

// Parses "tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR]" plus rate limits per direction,
// "[,rx-bw=RATE][,rx-bw-burst=SIZE][,rx-ops=RATE][,rx-ops-burst=N]", the same with tx-, and
// "[,refill-ms=MS]" (base/rate_limit_option.h). Throws Error naming --net and the field that is
// wrong (missing tap, bad MAC, address, prefix, rate, unknown or repeated key).
NetOption parse_net_option(const std::string& text);

// The MAC the guest read from the config space at probe time: a restored NIC shows the same.
struct NetState {
  uint64_t mac = 0;
  bool operator==(const NetState&) const = default;

  // Throws Error("virtio-net state: ...") for a MAC that is zero, multicast or above 48 bits.
  void validate() const;

  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("mac", self.mac);
  }
};

struct NetKind {
  static constexpr const char* kName = "virtio-net";
  using Spec = NetSpec;
  using State = NetState;
  // Opens the TAP (or takes the descriptor provide_tap_fd gave for its name) and builds the
  // device. Throws Error naming the TAP.
  static std::shared_ptr<VirtioDevice> create(const NetSpec& spec);
};

}  // namespace wisp
