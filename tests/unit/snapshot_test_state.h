// A small, valid SnapshotState for the snapshot/ unit tests and fuzzers.
#pragma once

#include <cstdint>

#include "snapshot/snapshot_state.h"

namespace wisp::snapshot::testing {

inline Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 7);
  return b;
}

inline VcpuState sample_vcpu(uint32_t id) {
  VcpuState v;
  v.id = id;
  v.regs = pattern(KvmImageSize::kRegs, 1 + id);
  v.sregs = pattern(KvmImageSize::kSregs, 2 + id);
  v.fpu = pattern(KvmImageSize::kFpu, 3);
  v.xsave = pattern(KvmImageSize::kXsaveMin, 4);
  v.xcrs = pattern(KvmImageSize::kXcrs, 5);
  v.lapic = pattern(KvmImageSize::kLapic, 6 + id);
  v.vcpu_events = pattern(KvmImageSize::kVcpuEvents, 7);
  v.debug_regs = pattern(KvmImageSize::kDebugRegs, 8);
  v.mp_state = id == 0 ? 0 : 1;
  v.msrs = {{0x10, 123456789 + id}, {0x4b564d01, 0x1000 | 1}, {0xc0000080, 0xd01}};
  v.tsc_khz = 2400000;
  return v;
}

// A running transport with `queues` queues (VERSION_1 and EVENT_IDX accepted).
inline MmioTransportState running_transport(uint16_t queues) {
  MmioTransportState t;
  t.status = 0xf;
  t.driver_features = (1ull << 32) | (1ull << 29);
  t.device_activated = true;
  for (uint16_t i = 0; i < queues; ++i) {
    uint64_t base = 0x10000 * (i + 1);
    t.queues.push_back({256, true, base, base + 0x1000, base + 0x2000, 7, 7, true});
  }
  return t;
}

// Two regions (1 MiB at 0, 64 KiB at 4 GiB), packed back to back in the memory file; a full
// snapshot of a machine with one drive, rng and vsock (CID 3).
inline SnapshotState sample_state(uint32_t vcpus = 2) {
  SnapshotState s;
  s.metadata = {"0.1.0-test", 1700000000000000000};
  s.memory = pack_regions({{0, 1 << 20}, {1ull << 32, 64 << 10}});
  MachineState& m = s.machine;
  m.mem_bytes = (1 << 20) + (64 << 10);
  m.cpuid = {{0, 0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69},
             {1, 0, 0, 0x806c1, 0, 0xfeda3203, 0x178bfbff},
             {7, 0, 1, 0, 0x219c07ab, 0, 0}};
  m.vm = {pattern(KvmImageSize::kIrqchip, 9),
          pattern(KvmImageSize::kIrqchip, 10),
          pattern(KvmImageSize::kIrqchip, 11),
          pattern(KvmImageSize::kPit, 12),
          987654321,
          2};
  for (uint32_t i = 0; i < vcpus; ++i) m.vcpus.push_back(sample_vcpu(i));
  m.serial.ier = 1;
  m.serial.rx = {'l', 's'};
  m.virtio.push_back({BlockSpec{"/var/lib/wisp/disk.img", true, 1 << 20, 1700000000123456789},
                      running_transport(1), BlockState{2048, true, 128}});
  m.virtio.push_back({RngSpec{}, running_transport(1), RngState{}});
  m.virtio.push_back({VsockSpec{"", 3}, running_transport(3), VsockState{3}});
  m.virtio.push_back({NetSpec{"wisp-tap0", 0x02'00'00'00'00'07}, running_transport(2),
                      NetState{0x02'00'00'00'00'07}});
  s.id = "0123456789abcdef0123456789abcdef";
  return s;
}

}  // namespace wisp::snapshot::testing
