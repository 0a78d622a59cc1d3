// libFuzzer target for a standby VMM's order (api/standby_order.h), the host input a standby
// parses before it touches a descriptor. The input: a byte giving the count of descriptors that
// came with the message, then the message. Checks: nothing crashes, a parsed order has the
// descriptor count it came with and its limits (a restore's or a boot's), and encoding it gives
// text that parses back to the same order.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "api/standby_order.h"
#include "base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t fds = data[0];
  std::string_view message(reinterpret_cast<const char*>(data + 1), size - 1);
  namespace standby = wisp::standby;
  standby::Order order;
  try {
    order = standby::parse_order(message, fds);
  } catch (const wisp::Error&) {
    return 0;
  }
  if (standby::fd_count(order) != fds) std::abort();
  if (auto* r = std::get_if<standby::RestoreOrder>(&order)) {
    if (r->layers < 1 || r->layers > standby::kMaxLayers ||
        r->drive_read_only.size() > standby::kMaxDrives)
      std::abort();
    if (standby::parse_order(standby::encode_order(*r), fds) != order) std::abort();
  } else {
    const auto& b = std::get<standby::BootOrder>(order);
    if (b.mem_mib < 16 || b.vcpus < 1 || b.drive_read_only.size() > standby::kMaxDrives ||
        b.cmdline.size() > standby::kMaxCmdlineBytes ||
        (b.rootfs && (b.drive_read_only.empty() || !b.drive_read_only[0])))
      std::abort();
    for (char c : b.cmdline)
      if (c < 0x20 || c > 0x7e) std::abort();
    if (standby::parse_order(standby::encode_order(b), fds) != order) std::abort();
  }
  return 0;
}
