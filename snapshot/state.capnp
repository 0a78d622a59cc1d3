# The saved state of one microVM: the payload of a snapshot's state file (snapshot/state_file.h
# frames it with magic, format version, length and CRC64). Only snapshot/ reads or writes it.
#
# Everything here is untrusted when read back: snapshot/snapshot_state.cc validates it before any
# component sees it. Extending: add fields (never renumber or retype); a new device is a new
# DeviceState entry with its own `kind`, so the frame and this schema need not change for it.
# An incompatible change bumps the state file's format major version (state_file.h).

@0xa84e83e37e35542d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("wisp::snapshot::schema");

struct VmState {
  metadata @0 :Metadata;
  memory @1 :MemoryLayout;
  vcpus @2 :List(VcpuState);
  irqchip @3 :IrqchipState;
  pit @4 :PitState;
  clock @5 :ClockState;
  devices @6 :List(DeviceState);
  tscKhz @7 :UInt32;             # guest TSC frequency; restore refuses a host that cannot match
  machine @8 :MachineConfig;     # what hardware to rebuild before restoring its state
  id @9 :Text;                   # random, unique per snapshot: a diff names its parent by it
  diff @10 :DiffInfo;            # set for a diff snapshot (parentId non-empty)
}

struct MachineConfig {
  memBytes @0 :UInt64;
  drives @1 :List(Drive);        # virtio-blk devices, in MMIO slot order
  rng @2 :Bool;                  # then virtio-rng
  vsock @3 :Bool;                # then virtio-vsock
  vsockCid @4 :UInt64;
}

struct Drive {
  path @0 :Text;                 # the image (absolute), reopened on restore
  readOnly @1 :Bool;
  sizeBytes @2 :UInt64;          # the image as it was at the snapshot: a clone's page cache
  mtimeNs @3 :Int64;             # holds its blocks, so restore refuses a changed image
}

# A diff snapshot's memory file holds only the pages written since its parent was restored;
# the others come from the parent (recursively).
struct DiffInfo {
  parentDir @0 :Text;            # as given when the diff was made (absolute)
  parentId @1 :Text;             # the parent's VmState.id: restore refuses another parent
  pages @2 :Data;                # bitmap, bit i (LSB first) = memory file page i is in this layer
}

struct Metadata {
  creatorVersion @0 :Text;       # wisp release that wrote it (informational)
  createdUnixNs @1 :Int64;
  cpuVendor @2 :Text;            # CPUID leaf 0 vendor string, e.g. "GenuineIntel"
  cpuid @3 :List(CpuidLeaf);     # the guest-visible feature leaves: the "same CPU features" check
}

struct CpuidLeaf {
  function @0 :UInt32;
  index @1 :UInt32;
  eax @2 :UInt32;
  ebx @3 :UInt32;
  ecx @4 :UInt32;
  edx @5 :UInt32;
}

struct MemoryLayout {
  regions @0 :List(MemoryRegion);
}

# One guest RAM region and where its bytes live in the memory file.
struct MemoryRegion {
  guestBase @0 :UInt64;
  size @1 :UInt64;
  fileOffset @2 :UInt64;
}

# KVM structures are kept as the kernel's own byte layout for now (typed by field, opaque inside):
# vmm/ turns them into and out of its kvm_* structs.
struct VcpuState {
  id @0 :UInt32;
  regs @1 :Data;                 # struct kvm_regs
  sregs @2 :Data;                # struct kvm_sregs (or kvm_sregs2)
  fpu @3 :Data;                  # struct kvm_fpu
  xsave @4 :Data;                # struct kvm_xsave (4 KiB or more with AMX)
  xcrs @5 :Data;                 # struct kvm_xcrs
  msrs @6 :List(Msr);            # including kvmclock and TSC MSRs
  lapic @7 :Data;                # struct kvm_lapic_state: exactly 1024 bytes
  events @8 :Data;               # struct kvm_vcpu_events
  debugregs @9 :Data;            # struct kvm_debugregs
  mpState @10 :UInt32;           # kvm_mp_state.mp_state
  tscKhz @11 :UInt32;            # 0: the VM-wide VmState.tscKhz
}

struct Msr {
  index @0 :UInt32;
  value @1 :UInt64;
}

struct IrqchipState {
  picMaster @0 :Data;            # struct kvm_irqchip, chip_id 0
  picSlave @1 :Data;             # chip_id 1
  ioapic @2 :Data;               # chip_id 2
}

struct PitState {
  pit @0 :Data;                  # struct kvm_pit_state2
}

struct ClockState {
  clockNs @0 :UInt64;            # struct kvm_clock_data.clock
  flags @1 :UInt32;
}

# One device's `State`, encoded by its owner in snapshot/ (kind picks the decoder).
struct DeviceState {
  kind @0 :Text;                 # "serial", "virtio-mmio", "virtio-blk", "virtio-vsock", ...
  name @1 :Text;                 # unique per kind within a VM, e.g. "vda" or "mmio@0xd0000000"
  data @2 :Data;
}
