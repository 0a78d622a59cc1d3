// virtio-rng (device id 4, spec 5.4): one queue of device-writable buffers that the device fills
// from the host's getrandom(). It is how a guest (and each restored clone) gets entropy early.
#pragma once

#include <cstdint>

#include "vmm/virtio/device.h"
#include "vmm/virtio/virtio_spec.h"

namespace wisp {

class VirtioRng final : public VirtioDeviceBase {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Bytes given per request at most: a guest posting huge buffers cannot hold the event loop
  // in getrandom() for long. The driver asks again for more.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  const char* name() const override { return "virtio-rng"; }
  uint32_t device_type() const override { return virtio::kDeviceIdRng; }
  uint64_t device_features() const override { return 0; }
  uint16_t num_queues() const override { return 1; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  void read_config(uint64_t, std::span<uint8_t> data) override;  // no config space
  void write_config(uint64_t, std::span<const uint8_t>) override {}

  // RngState: nothing but the kind to check.
  VirtioDeviceState save_state() const override { return RngState{}; }
  void restore_state(const VirtioDeviceState& s) override {
    expect_device_state<RngState>(s, name());
  }

 protected:
  void process_queue(uint16_t index) override;

 private:
  // Fills `len` bytes of the chain's writable buffers; returns how many were filled.
  uint32_t fill(const DescriptorChain& chain, uint32_t len);
};

}  // namespace wisp
