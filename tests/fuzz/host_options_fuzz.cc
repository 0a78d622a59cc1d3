// The parsers of host input that are not a file format: JSON text's \uXXXX rewrite (before
// capnp's JSON decoder, for the HTTP gateway and the containerd shim), `--allow CIDR[:PORT]`,
// and the rate-limit keys of --drive / --net / --net-limit. The first byte picks the parser;
// each must refuse with Error (UsageError is one) or give a result that holds its promise:
// the rewrite is idempotent, an allow rule's canonical text parses back to itself.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "base/json_unicode.h"
#include "base/rate_limit_option.h"
#include "manager/host_net/egress_rule.h"

namespace {

void json(const std::string& text) {
  std::string once = wisp::unescape_json_unicode(text, "fuzz");
  if (wisp::unescape_json_unicode(once, "fuzz") != once) __builtin_trap();
}

void allow(const std::string& text) {
  std::string canonical = wisp::host_net::to_string(wisp::host_net::parse_egress_rule(text));
  if (wisp::host_net::to_string(wisp::host_net::parse_egress_rule(canonical)) != canonical)
    __builtin_trap();
}

// KEY=VALUE items separated by commas, as --net-limit takes them.
void rate_keys(const std::string& text) {
  wisp::RateLimitKeys rx("fuzz", "rx-"), tx("fuzz", "tx-"), disk("fuzz", "");
  uint64_t refill_ms = wisp::kDefaultRefillMs;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    size_t eq = item.find('=');
    if (eq != std::string::npos) {
      std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      if (key == "refill-ms")
        refill_ms = wisp::parse_refill_ms("fuzz", value);
      else if (!rx.take(key, value) && !tx.take(key, value))
        disk.take(key, value);
    }
    start = end + 1;
  }
  rx.config(refill_ms);
  tx.config(refill_ms);
  disk.config(refill_ms);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0:
        json(text);
        break;
      case 1:
        allow(text);
        break;
      default:
        rate_keys(text);
    }
  } catch (const wisp::Error&) {
    // Refused, with a message: what bad input gets.
  }
  return 0;
}
