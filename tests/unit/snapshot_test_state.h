// A small, valid SnapshotState for the snapshot/ unit tests.
#pragma once

#include <cstdint>

#include "snapshot/snapshot_state.h"

namespace wisp::snapshot::testing {

inline Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 7);
  return b;
}

// Two regions (1 MiB at 0, 64 KiB at 4 GiB), packed back to back in the memory file; a full
// snapshot of a machine with one drive, rng and vsock (CID 3).
inline SnapshotState sample_state(uint32_t vcpus = 2) {
  SnapshotState s;
  s.metadata = {"0.1.0-test",
                1700000000000000000,
                "GenuineIntel",
                {{0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69},
                 {1, 0, 0x806c1, 0, 0xfeda3203, 0x178bfbff}}};
  s.memory = pack_regions({{0, 1 << 20}, {1ull << 32, 64 << 10}});
  for (uint32_t i = 0; i < vcpus; ++i) {
    VcpuState v;
    v.id = i;
    v.regs = pattern(144, 1 + i);
    v.sregs = pattern(312, 2 + i);
    v.fpu = pattern(416, 3);
    v.xsave = pattern(4096, 4);
    v.xcrs = pattern(392, 5);
    v.msrs = {{0x10, 123456789 + i}, {0x4b564d01, 0x1000 | 1}, {0xc0000080, 0xd01}};
    v.lapic = pattern(kLapicBytes, 6 + i);
    v.events = pattern(64, 7);
    v.debugregs = pattern(128, 8);
    v.mp_state = i == 0 ? 0 : 1;
    s.vcpus.push_back(std::move(v));
  }
  s.irqchip = {pattern(512, 9), pattern(512, 10), pattern(512, 11)};
  s.pit = pattern(112, 12);
  s.clock = {987654321, 2};
  s.devices = {{"serial", "ttyS0", pattern(40, 13)},
               {"virtio-vsock", "mmio@0xd0000000", pattern(300, 14)}};
  s.tsc_khz = 2400000;
  s.machine = {(1 << 20) + (64 << 10), {{"/var/lib/wisp/disk.img", true}}, true, true, 3};
  s.id = "0123456789abcdef0123456789abcdef";
  return s;
}

}  // namespace wisp::snapshot::testing
