// libFuzzer target for a standby VMM's order (api/standby_order.h), the host input a standby
// parses before it touches a descriptor. The input: a byte giving the count of descriptors that
// came with the message, then the message. Checks: nothing crashes, a parsed order has the
// descriptor count it came with and its limits, and encoding it gives text that parses back to
// the same order.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/standby_order.h"
#include "base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t fds = data[0];
  std::string_view message(reinterpret_cast<const char*>(data + 1), size - 1);
  wisp::standby::RestoreOrder order;
  try {
    order = wisp::standby::parse_order(message, fds);
  } catch (const wisp::Error&) {
    return 0;
  }
  if (order.fd_count() != fds || order.layers < 1 || order.layers > wisp::standby::kMaxLayers ||
      order.drive_read_only.size() > wisp::standby::kMaxDrives)
    std::abort();
  if (wisp::standby::parse_order(wisp::standby::encode_order(order), fds) != order) std::abort();
  return 0;
}
