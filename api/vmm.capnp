# The control channel between a manager (the wisp CLI, later `wisp serve`) and one wisp-vmm
# process: Cap'n Proto RPC, two-party vat network, over the VMM's control Unix socket
# (`--control-socket PATH`); the bootstrap capability is a Vmm.
#
# Every call runs on the VMM's event-loop thread, between device events, so a snapshot sees no
# device touching guest memory while it is written. A failed call is an exception whose
# description says what went wrong; the VM keeps running.

@0xc54ba2441dfd6d27;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("wisp::api");

interface Vmm {
  const maxMessageBytes :UInt64 = 65536;  # the VMM reads no larger request
  const maxFdsPerMessage :UInt32 = 4;     # the VMM accepts no more descriptors with one request

  # Answers when the VMM's event loop is serving calls.
  ping @0 () -> ();

  # Stops every vCPU (each leaves KVM_RUN with its pending I/O completed) and keeps them stopped
  # until resume, or until this connection closes (and every other connection that paused it
  # without `lasting`): a client that dies mid-operation does not leave the VM frozen. `lasting`:
  # the pause outlives the connection and only resume ends it (a warm clone kept paused, `wisp vm
  # pause`). Pausing a paused VM, or resuming a running one, does nothing else.
  # `holdClock`: the guest's clock (kvmclock) stands still while paused, as under QEMU's
  # stop/cont: on resume it goes on from where it stopped, so the guest has no jump of time to
  # catch up with (timers all due at once, its watchdogs) and its monotonic clock leaves the
  # pause out. Its wall clock then lags by the pause: the caller sets it (agent.resumed). A
  # warm clone is held so. A snapshot of a VM paused so records the clock of the pause.
  pause @1 (lasting :Bool, holdClock :Bool) -> ();
  resume @2 () -> ();

  # Writes the VM's state into `stateFile` and its memory into `memoryFile`, and fsyncs both:
  # the only places a snapshot is written (the VMM opens no path for it).
  # The manager creates the two files (in a temp directory it renames into place afterwards:
  # the VMM opens, creates and renames nothing, and may not see the destination at all); each
  # must carry a descriptor of a regular, empty file opened for writing. `dir` is the snapshot's
  # final directory, for messages only. `diff`: only pages written since the VM was restored
  # from its snapshot. The VM is paused for the save and resumed afterwards unless it was paused
  # before.
  snapshot @3 (dir :Text, diff :Bool, stateFile :FileHandle, memoryFile :FileHandle)
      -> (report :SnapshotReport);

  # Guest memory pages: in this process's page tables, and written since a restore; with them
  # KVM's own counters of the vCPUs (an older VMM leaves `vcpu` unset).
  stats @4 () -> (stats :MemoryStats, vcpu :VcpuCounters);

  # The guest pages in this process's page tables now, as sorted runs of page indexes (4 KiB
  # pages of the memory's file offset space): what a template's probe clone touched from its
  # restore to its first result is recorded as the template's working set (issue 13).
  residentRanges @5 () -> (ranges :List(PageRange));

  # The guest pages written since the restore (each now a private copy of the snapshot's page),
  # as residentRanges lists them: the probe clone's are recorded beside the template's working
  # set. A VM booted, not restored, has every page its own: refused.
  writtenRanges @6 () -> (ranges :List(PageRange));

  # Makes these pages private copies now (MADV_POPULATE_WRITE), as the guest's first write to
  # each would, without the guest: for a warm clone made ahead of demand, whose guest's writes
  # to them then take no nested page fault in a call. Pages as residentRanges lists them, each
  # range inside guest memory (else refused, naming it), at most maxPopulateRanges. Answers
  # with the pages made writable.
  populateWritable @7 (ranges :List(PageRange)) -> (pages :UInt64);
  const maxPopulateRanges :UInt32 = 1048576;
}

struct PageRange {
  first @0 :UInt64;
  count @1 :UInt64;
}

# A file handed to the VMM: the capability carries its descriptor (SCM_RIGHTS on the control
# socket; the receiver gets it with getFd()). It has no methods: the descriptor is the point.
interface FileHandle {}

struct SnapshotReport {
  id @0 :Text;
  diff @1 :Bool;
  pauseMs @2 :Float64;
  stateMs @3 :Float64;
  memoryMs @4 :Float64;
  totalMs @5 :Float64;
  memoryFileBytes @6 :UInt64;   # logical size of the memory file
  memoryDiskBytes @7 :UInt64;   # allocated on disk (sparse)
  pagesWritten @8 :UInt64;      # pages of data in the memory file
  pagesInLayer @9 :UInt64;      # a diff: pages this layer covers (data or zero)
}

# KVM's counters of every vCPU, summed, since the VM was created or restored (its binary
# statistics, Linux 5.14+; `available` false without them). They show the exits the VMM never
# sees: a restored guest's first touch of each page is one nested page fault (EPT/NPT).
struct VcpuCounters {
  available @0 :Bool;
  exits @1 :UInt64;             # every exit from guest mode
  nestedPageFaults @2 :UInt64;  # faults KVM's MMU handled (KVM's pf_taken)
  pagesMapped @3 :UInt64;       # of those, the ones that installed a mapping (pf_fixed)
  haltExits @4 :UInt64;
  mmioExits @5 :UInt64;         # exits the VMM handled as MMIO
  ioExits @6 :UInt64;           # exits the VMM handled as port I/O
}

struct MemoryStats {
  residentPages @0 :UInt64;
  writtenPages @1 :UInt64;
  pages @2 :UInt64;
}
