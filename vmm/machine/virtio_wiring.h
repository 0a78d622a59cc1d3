// Builds the microVM's virtio devices and wires each onto the machine: its transport on the
// MMIO bus, its interrupt through an irqfd, its queue kicks through ioeventfds into the event
// loop, and the kernel command-line fragment that tells the guest where it is. The machine
// builder calls these once, before the vCPUs and the event loop start.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vmm/bus/io_bus.h"
#include "vmm/devices/irq_line.h"
#include "vmm/event/event_loop.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/device_kinds.h"
#include "vmm/virtio/mmio_layout.h"
#include "vmm/virtio/mmio_transport.h"

namespace wisp {

// One device per spec, in order (create_virtio_device): opens the images and binds the vsock
// socket. Throws Error naming a drive or socket that cannot be used.
std::vector<std::shared_ptr<VirtioDevice>> create_virtio_devices(
    const std::vector<DeviceSpec>& specs);

// A device placed on the machine. The machine keeps these alive while vCPUs and the event loop
// run (the transport's irq reference points into `irq`).
struct AttachedVirtioDevice {
  VirtioMmioSlot slot;
  std::unique_ptr<EventFdIrq> irq;
  std::shared_ptr<MmioTransport> transport;
};

// Gives device i the slot virtio_mmio_slot(i): inserts its transport on `mmio`, registers the
// irqfd (GSI = slot IRQ) and one ioeventfd per queue (base + 0x50, 4 bytes, datamatch = queue
// index) with `vm`, and adds each queue eventfd to `loop`, plus the device's backend_fds().
// Must run before `loop` runs (the loop is not thread-safe to add to). Throws Error on a KVM
// or layout failure.
std::vector<AttachedVirtioDevice> attach_virtio_devices(
    Vm& vm, IoBus& mmio, EventLoop& loop, const GuestMemory& mem,
    const std::vector<std::shared_ptr<VirtioDevice>>& devices);

// "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6", or "" for none.
std::string virtio_kernel_cmdline(const std::vector<AttachedVirtioDevice>& devices);

}  // namespace wisp
