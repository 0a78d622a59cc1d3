// Numbers from the virtio 1.2 specification that more than one file needs: device ids, status
// bits, feature bits and split-ring flags. Device-specific numbers live with their device.
#pragma once

#include <cstdint>

namespace wisp::virtio {

// Device ids (spec 5): what the transport reports in DeviceID.
constexpr uint32_t kDeviceIdNet = 1;
constexpr uint32_t kDeviceIdBlock = 2;
constexpr uint32_t kDeviceIdRng = 4;
constexpr uint32_t kDeviceIdVsock = 19;

// Device status bits (spec 2.1), written by the driver, read back by it.
constexpr uint32_t kStatusAcknowledge = 0x01;
constexpr uint32_t kStatusDriver = 0x02;
constexpr uint32_t kStatusDriverOk = 0x04;
constexpr uint32_t kStatusFeaturesOk = 0x08;
constexpr uint32_t kStatusNeedsReset = 0x40;  // set by the device only
constexpr uint32_t kStatusFailed = 0x80;

// Reserved feature bits (spec 6) that concern the ring or the transport, not a device.
constexpr uint64_t kFeatureIndirectDesc = 1ull << 28;  // VIRTIO_RING_F_INDIRECT_DESC
constexpr uint64_t kFeatureEventIdx = 1ull << 29;      // VIRTIO_RING_F_EVENT_IDX
constexpr uint64_t kFeatureVersion1 = 1ull << 32;      // VIRTIO_F_VERSION_1: "modern" device

// Split virtqueue descriptor flags (spec 2.7.5).
constexpr uint16_t kDescFlagNext = 1;
constexpr uint16_t kDescFlagWrite = 2;  // device-writable (else device-readable)
constexpr uint16_t kDescFlagIndirect = 4;

// Ring flags: driver asks for no interrupts / device asks for no notifications (spec 2.7.7).
constexpr uint16_t kAvailFlagNoInterrupt = 1;
constexpr uint16_t kUsedFlagNoNotify = 1;

// InterruptStatus bits (spec 4.2.2).
constexpr uint32_t kInterruptUsedBuffer = 0x1;
constexpr uint32_t kInterruptConfigChange = 0x2;

}  // namespace wisp::virtio
