# The saved state of one microVM: the payload of a snapshot's state file (snapshot/state_file.h
# frames it with magic, format version, length and CRC64). Only snapshot/ reads or writes it.
#
# Machine and the structs it holds are vmm/'s State types as they are (vmm/machine/
# machine_state.h and what it includes), field for field under the same names (camelCase);
# SnapshotState adds what the snapshot layer owns: its metadata, where the memory regions lie in
# the memory file, its id and a diff's parent.
#
# Everything here is untrusted when read back: the decoder bounds every list before decoding it,
# then each State's validate() and snapshot/snapshot_state.cc's file checks run. Extending: add
# fields (never renumber or retype); a new device kind is a member of devices.capnp's
# VirtioDevice union. An incompatible change bumps the state file's format major version
# (state_file.h).

@0xa84e83e37e35542d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("wisp::snapshot::schema");

using Devices = import "devices.capnp";

struct SnapshotState {
  metadata @0 :Metadata;
  memory @1 :List(MemoryRegion);  # where each guest RAM region lies in the memory file
  machine @2 :Machine;
  id @3 :Text;                   # random, unique per snapshot: a diff names its parent by it
  diff @4 :DiffInfo;             # set for a diff snapshot (parentId non-empty)
}

struct Metadata {
  creatorVersion @0 :Text;       # wisp release that wrote it (informational)
  createdUnixNs @1 :Int64;
}

# One guest RAM region and where its bytes live in the memory file.
struct MemoryRegion {
  guestBase @0 :UInt64;
  size @1 :UInt64;
  fileOffset @2 :UInt64;
}

# A diff snapshot's memory file holds only the pages written since its parent was restored;
# the others come from the parent (recursively).
struct DiffInfo {
  parentDir @0 :Text;            # as given when the diff was made (absolute); restore follows it
                                 # only into the diff's own directory (snapshot_trust.h)
  parentId @1 :Text;             # the parent's SnapshotState.id: restore refuses another parent
  pages @2 :Data;                # bitmap, bit i (LSB first) = memory file page i is in this layer
}

# vmm's MachineState.
struct Machine {
  memBytes @0 :UInt64;
  cpuid @1 :List(CpuidEntry);    # vCPU 0's: restore refuses a host that would give another
  vm @2 :VmState;
  vcpus @3 :List(VcpuState);     # vcpus[i] is vCPU i
  serial @4 :Devices.SerialState;
  virtio @5 :List(Devices.VirtioDevice);  # virtio[i] is the device in MMIO slot i
  cpuModel @6 :CpuModel;         # the CPU the guest was booted on (absent: the host's)
}

# vmm's CpuModel: what a restore computes the host's CPUID for, to compare with `cpuid`.
enum CpuModel {
  host @0;                       # what the host's KVM supports
  x8664V2 @1;                    # --portable: masked to the x86-64-v2 baseline
}

struct CpuidEntry {
  function @0 :UInt32;
  index @1 :UInt32;
  flags @2 :UInt32;              # KVM_CPUID_FLAG_*
  eax @3 :UInt32;
  ebx @4 :UInt32;
  ecx @5 :UInt32;
  edx @6 :UInt32;
}

# KVM structures are kept as the kernel's own byte layout (typed by field, opaque inside):
# vmm/kvm/ turns them into and out of its kvm_* structs.
struct VmState {
  picMaster @0 :Data;            # struct kvm_irqchip, chip_id 0
  picSlave @1 :Data;             # chip_id 1
  ioapic @2 :Data;               # chip_id 2
  pit @3 :Data;                  # struct kvm_pit_state2
  clockNs @4 :UInt64;            # struct kvm_clock_data.clock
  clockFlags @5 :UInt32;
}

struct VcpuState {
  id @0 :UInt32;
  regs @1 :Data;                 # struct kvm_regs
  sregs @2 :Data;                # struct kvm_sregs
  fpu @3 :Data;                  # struct kvm_fpu
  xsave @4 :Data;                # struct kvm_xsave (4 KiB or more with AMX)
  xcrs @5 :Data;                 # struct kvm_xcrs
  lapic @6 :Data;                # struct kvm_lapic_state
  vcpuEvents @7 :Data;           # struct kvm_vcpu_events
  debugRegs @8 :Data;            # struct kvm_debugregs
  mpState @9 :UInt32;            # kvm_mp_state.mp_state
  msrs @10 :List(Msr);           # including kvmclock and TSC MSRs
  tscKhz @11 :UInt32;            # 0: unknown (no scaling on restore)
}

struct Msr {
  index @0 :UInt32;
  value @1 :UInt64;
}
