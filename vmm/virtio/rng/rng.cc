#include "vmm/virtio/rng/rng.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace wisp {

std::shared_ptr<VirtioDevice> RngKind::create(const RngSpec&) {
  return std::make_shared<VirtioRng>();
}

void VirtioRng::read_config(uint64_t, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

void VirtioRng::process_queue(uint16_t index) {
  drain_queue(index, [&](const DescriptorChain& chain) -> uint32_t {
    // The driver only hands over buffers for us to fill; one we should read is a request
    // in the wrong direction.
    if (!chain.readable().empty() || chain.writable_bytes() == 0) {
      count_bad_request(
          "queue %u: request at head %u has no device-writable buffer or a "
          "device-readable one",
          index, chain.head());
      return 0;
    }
    return fill(chain, static_cast<uint32_t>(
                           std::min<uint64_t>(chain.writable_bytes(), kMaxBytesPerRequest)));
  });
}

uint32_t VirtioRng::fill(const DescriptorChain& chain, uint32_t len) {
  uint32_t filled = 0;
  // Straight into the guest's buffers: no intermediate copy of the entropy in the VMM.
  for (std::span<uint8_t> view : chain.writable_views(memory(), 0, len)) {
    size_t done = 0;
    while (done < view.size()) {
      ssize_t n = getrandom(view.data() + done, view.size() - done, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // Host failure (should not happen once the host pool is up): give what we have.
        LOG_ERROR("virtio-rng: getrandom failed: %s", std::strerror(errno));
        return filled + static_cast<uint32_t>(done);
      }
      done += static_cast<size_t>(n);
    }
    filled += static_cast<uint32_t>(view.size());
  }
  return filled;
}

}  // namespace wisp
