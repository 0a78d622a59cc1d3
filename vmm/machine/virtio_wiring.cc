#include "vmm/machine/virtio_wiring.h"

#include <cinttypes>
#include <cstdio>

namespace wisp {

std::vector<std::shared_ptr<VirtioDevice>> create_virtio_devices(
    const std::vector<DeviceSpec>& specs) {
  std::vector<std::shared_ptr<VirtioDevice>> out;
  for (const DeviceSpec& spec : specs) out.push_back(create_virtio_device(spec));
  return out;
}

std::vector<AttachedVirtioDevice> attach_virtio_devices(
    Vm& vm, IoBus& mmio, EventLoop& loop, const GuestMemory& mem,
    const std::vector<std::shared_ptr<VirtioDevice>>& devices) {
  std::vector<AttachedVirtioDevice> out;
  for (size_t i = 0; i < devices.size(); ++i) {
    AttachedVirtioDevice a;
    a.slot = virtio_mmio_slot(i);
    a.irq = std::make_unique<EventFdIrq>();
    char label[64];
    snprintf(label, sizeof(label), "%s@0x%" PRIx64, devices[i]->name(), a.slot.base);
    a.transport = std::make_shared<MmioTransport>(devices[i], mem, *a.irq, label);
    vm.register_irqfd(a.irq->fd(), a.slot.irq);
    mmio.insert(a.slot.base, a.slot.size, a.transport);
    MmioTransport* t = a.transport.get();  // owned by `out`, which outlives the loop's run
    for (uint16_t q = 0; q < t->num_queues(); ++q) {
      vm.register_ioeventfd(t->queue_eventfd(q), a.slot.base + virtio_mmio::kQueueNotify, 4, q);
      loop.add(t->queue_eventfd(q), [t, q](uint32_t) { t->handle_queue_event(q); });
    }
    // The device is owned by the transport in `out`, like `t` above.
    for (BackendFd& b : devices[i]->backend_fds())
      loop.add(b.fd, [handler = std::move(b.on_readable)](uint32_t) { handler(); });
    out.push_back(std::move(a));
  }
  return out;
}

std::string virtio_kernel_cmdline(const std::vector<AttachedVirtioDevice>& devices) {
  std::string out;
  for (const auto& d : devices) {
    if (!out.empty()) out += ' ';
    out += virtio_mmio_cmdline(d.slot);
  }
  return out;
}

}  // namespace wisp
