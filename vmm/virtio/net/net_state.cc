#include "vmm/virtio/net/net_state.h"

#include <cstdio>
#include <set>

#include "base/error.h"
#include "base/ipv4.h"
#include "base/rate_limit_option.h"

namespace wisp {
namespace {

constexpr uint64_t kMulticastBit = 1ull << 40;  // the low bit of the first octet

// "" when `mac` can be a NIC's address, else why not.
std::string mac_problem(uint64_t mac) {
  if (mac == 0) return "is zero";
  if (mac >> 48) return "has more than 48 bits";
  if (mac & kMulticastBit) return "is a multicast address (the first octet's low bit is set)";
  return "";
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

uint64_t parse_mac(const std::string& text, const std::string& field) {
  auto fail = [&](const std::string& why) -> uint64_t {
    throw Error(field + " \"" + text + "\": " + why +
                " (expected six hex octets: 02:00:00:00:00:01)");
  };
  if (text.size() != 17) return fail("wrong length");
  uint64_t mac = 0;
  for (size_t i = 0; i < 6; ++i) {
    int hi = hex_digit(text[3 * i]), lo = hex_digit(text[3 * i + 1]);
    if (hi < 0 || lo < 0) return fail("not a hex octet at position " + std::to_string(i + 1));
    if (i < 5 && text[3 * i + 2] != ':') return fail("octets must be separated by ':'");
    mac = (mac << 8) | static_cast<uint64_t>(hi * 16 + lo);
  }
  if (std::string why = mac_problem(mac); !why.empty()) return fail(why);
  return mac;
}

std::string format_mac(uint64_t mac) {
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x",
           static_cast<unsigned>(mac >> 40) & 0xff, static_cast<unsigned>(mac >> 32) & 0xff,
           static_cast<unsigned>(mac >> 24) & 0xff, static_cast<unsigned>(mac >> 16) & 0xff,
           static_cast<unsigned>(mac >> 8) & 0xff, static_cast<unsigned>(mac) & 0xff);
  return buf;
}

void NetSpec::validate() const {
  if (tap_name.empty()) throw Error("virtio-net spec: tap_name is empty");
  if (tap_name.size() > kMaxTapNameBytes)
    throw Error("virtio-net spec: tap_name \"" + tap_name + "\" is longer than " +
                std::to_string(kMaxTapNameBytes) + " bytes");
  for (char c : tap_name)
    if (c == '/' || c == '\0' || c == ' ' || c == ',' || c == ':')
      throw Error("virtio-net spec: tap_name \"" + tap_name +
                  "\" holds a character an interface name cannot have");
  if (std::string why = mac_problem(mac); !why.empty())
    throw Error("virtio-net spec: mac " + format_mac(mac) + " " + why);
  rx_limit.validate("virtio-net spec: rx rate limit");
  tx_limit.validate("virtio-net spec: tx rate limit");
}

void NetState::validate() const {
  if (std::string why = mac_problem(mac); !why.empty())
    throw Error("virtio-net state: mac " + format_mac(mac) + " " + why);
}

std::string NetGuestAddress::cmdline_word() const {
  if (address.empty()) return "";
  return "wisp.net=" + address + "/" + std::to_string(prefix) + "," +
         (gateway.empty() ? "-" : gateway) + "," + std::to_string(mtu);
}

NetOption parse_net_option(const std::string& text) {
  auto fail = [&](const std::string& why) -> NetOption {
    throw Error("--net \"" + text + "\": " + why +
                " (expected tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR][,rx-bw=RATE]"
                "[,tx-bw=RATE]...)");
  };
  const std::string option = "--net \"" + text + "\"";
  RateLimitKeys rx(option, "rx-"), tx(option, "tx-");
  uint64_t refill_ms = 0;
  NetOption out;
  std::set<std::string> seen;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    size_t eq = item.find('=');
    if (item.empty() || eq == std::string::npos || eq == 0)
      return fail("\"" + item + "\" is not KEY=VALUE");
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (!seen.insert(key).second) return fail(key + " is given twice");
    if (rx.take(key, value) || tx.take(key, value)) {
      continue;  // they refuse a repeated key themselves
    } else if (key == "refill-ms") {
      refill_ms = parse_refill_ms(option, value);
    } else if (key == "tap") {
      out.spec.tap_name = value;
    } else if (key == "mac") {
      out.spec.mac = parse_mac(value, "--net mac");
    } else if (key == "ip") {
      size_t slash = value.find('/');
      if (slash == std::string::npos) return fail("ip \"" + value + "\" has no /PREFIX");
      out.guest.address = value.substr(0, slash);
      if (!parse_ipv4(out.guest.address))
        return fail("ip \"" + value + "\" is not an IPv4 address");
      std::string prefix = value.substr(slash + 1);
      std::optional<uint32_t> length = parse_prefix_length(prefix);
      if (!length) return fail("ip prefix \"" + prefix + "\" is not 1..32");
      out.guest.prefix = *length;
    } else if (key == "gw") {
      if (!parse_ipv4(value)) return fail("gw \"" + value + "\" is not an IPv4 address");
      out.guest.gateway = value;
    } else {
      return fail("unknown key \"" + key + "\"");
    }
  }
  if (!seen.count("tap")) return fail("tap=NAME is missing");
  if (seen.count("gw") && !seen.count("ip")) return fail("gw needs ip");
  if (refill_ms != 0 && !rx.given() && !tx.given())
    return fail("refill-ms without an rx- or tx- rate");
  out.spec.rx_limit = rx.config(refill_ms ? refill_ms : kDefaultRefillMs);
  out.spec.tx_limit = tx.config(refill_ms ? refill_ms : kDefaultRefillMs);
  try {
    out.spec.validate();
  } catch (const Error& e) {
    return fail(std::string("tap: ") + e.what());
  }
  return out;
}

}  // namespace wisp
