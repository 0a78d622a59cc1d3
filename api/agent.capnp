# The protocol between the host and wisp-agent, the in-guest agent (PID 1 of a function guest).
# Cap'n Proto RPC, two-party vat network, over one vsock byte stream: the agent listens on
# guest vsock port Agent.port; the host reaches it through the VMM's Unix-socket bridge
# ("CONNECT <port>\n" / "OK <host_port>\n"), then the bootstrap capability is an Agent.
#
# Versioning: `protocolVersion` is bumped on any incompatible change; fields are only ever
# added (Cap'n Proto keeps old readers working). Both sides check ping().protocolVersion.
#
# Limits: the agent reads messages with a traversal limit and a size cap (Agent.maxMessageBytes)
# and answers oversized or malformed requests with an exception, never by crashing.

@0xb8c964ca7be465fc;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("wisp::api");

const protocolVersion :UInt32 = 1;

interface Agent {
  const port :UInt32 = 1024;               # guest vsock port the agent listens on
  const maxMessageBytes :UInt64 = 67108864;  # 64 MiB: payloads up to 16 MiB each way fit

  ping @0 () -> (info :AgentInfo);

  # Runs one invocation. exec mode: a fresh process per call, payload on stdin, stdout is the
  # result. worker mode: the call goes to the handler's warm worker (startWorker first).
  invoke @1 (request :InvokeRequest) -> (result :InvokeResult);

  # Starts the long-lived worker for `handler` (its initialisation runs now, once) and keeps it
  # for later invokes with mode = worker. Idempotent for the same handler name.
  startWorker @2 (handler :Handler) -> ();
  stopWorker @3 (name :Text) -> ();

  # Quiesce before a snapshot: sync filesystems, flush, stop agent timers. The host pauses
  # the VM after this returns. With `spare` (an exec-mode handler, as its invokes will name
  # it), it returns only once the agent holds a pre-forked sandbox for that handler (set up up
  # to its execve, waiting for a call), so the snapshot holds it and a clone's first exec call
  # only hands it its payload. If the sandbox cannot be set up it returns anyway (the calls
  # then take the ordinary path and report why).
  prepareSnapshot @4 (spare :Handler) -> ();

  # After a restore: credit `entropy` to the guest kernel's RNG, force its reseed, set the wall
  # clock, and send each warm worker the "resumed" notice (worker_protocol.md) so it reseeds
  # its own generators: clones of one snapshot are unique and see the current time.
  resumed @5 (entropy :Data, wallClockUnixNs :Int64) -> ();

  # Powers the VM off after replying.
  shutdown @6 () -> ();

  # Added for `wisp serve`'s sandboxes (an older agent answers them "unimplemented"):
  # A command in the handler isolation (as exec-mode invoke), streamed: its stdout and stderr
  # go to `output` as they are written (in order, each stream capped as maxOutputBytes caps
  # invoke's), stdin is written through the returned Process, which also signals it and
  # waits for its end (the result's stdout and stderr are empty there).
  execStream @7 (handler :Handler, timeoutMs :UInt64, output :OutputSink) -> (process :Process);
  # A file in the scratch space (/scratch, shared by every handler the agent runs; `path` is
  # relative to it, without "..", symlinks not followed). At most Agent.maxFileBytes.
  putFile @8 (path :Text, data :Data, mode :UInt32) -> ();
  getFile @9 (path :Text) -> (data :Data);

  const maxFileBytes :UInt64 = 16777216;

  # Added for CRIU inside the guest (issue 17; an older agent answers "unimplemented"). The
  # agent, PID 1 with every capability, runs the image's criu (/usr/sbin/criu) itself: the
  # handler sandbox cannot (CRIU needs CAP_SYS_ADMIN and ptrace).
  # `criu check`: whether this guest's kernel and criu can checkpoint and restore.
  criuCheck @10 () -> (result :CriuCheckResult);
  # Checkpoints warm worker `name`'s process tree (criu dump --leave-running: it keeps
  # answering) and sends the image (a CriuImage archive, api/criu_image.h) to `sink` in chunks
  # of at most 1 MiB, then calls sink.done(). Refused when the image would exceed `maxBytes`
  # (0: Agent.maxCriuImageBytes).
  checkpointWorker @11 (name :Text, sink :CriuImageSink, maxBytes :UInt64)
      -> (info :CriuDumpInfo);
  # Restores a worker for `handler` (its name, limits; argv is informational) from an image the
  # host writes to the returned upload; upload.done() restores it and answers with the times.
  # The restored worker is then a warm worker like a started one (send it `resumed` for fresh
  # randomness). Refused when a worker of that name is running.
  restoreWorker @12 (handler :Handler) -> (upload :CriuImageUpload);
  # As restoreWorker, from the image directory on a read-only drive the host attached (an ext4
  # image of the unpacked archive, made by the host beside the archive): `device` is that
  # drive ("/dev/vdb".."/dev/vdz", a block device). The agent mounts it read-only (nodev,
  # nosuid, noexec, no journal replay) under /run/wisp-criu, restores from it (criu's log and
  # anything else it writes go to a writable directory beside it), then unmounts it. Answers
  # with criu restore's run time and the mount's. An older agent answers "unimplemented": the
  # host then uploads the archive (restoreWorker).
  restoreWorkerFromDrive @13 (handler :Handler, device :Text) -> (restoreNs :UInt64, mountNs :UInt64);

  const maxCriuImageBytes :UInt64 = 2147483648;  # 2 GiB

  # Added for warm clones (an older agent, or a guest kernel without /dev/mem, refuses it): reads
  # one byte of every guest-physical 4 KiB page in `ranges` through /dev/mem, so that the
  # host's KVM maps those pages now, while the clone is made ahead of demand, rather than one
  # nested page fault at a time inside a later call. Changes no guest state. Ranges: each
  # count > 0, all inside guest RAM (else the call fails naming the page), at most
  # maxTouchRanges of them and maxTouchPages pages in all. Answers with the pages read and the
  # time it took.
  touchMemory @14 (ranges :List(GuestPageRange)) -> (pages :UInt64, ns :UInt64);

  const maxTouchRanges :UInt32 = 1048576;
  const maxTouchPages :UInt64 = 4194304;  # 16 GiB of 4 KiB pages
}

struct GuestPageRange {
  firstPage @0 :UInt64;         # guest-physical address / 4096
  pageCount @1 :UInt64;
}

struct CriuCheckResult {
  passed @0 :Bool;              # criu check exited 0
  output @1 :Text;              # its stdout and stderr (at most 64 KiB)
  criuVersion @2 :Text;         # `criu --version`, first line
}

struct CriuDumpInfo {
  imageBytes @0 :UInt64;        # the archive's size as sent
  files @1 :UInt32;             # files in the image directory
  dumpNs @2 :UInt64;            # criu dump's run time (the worker is frozen for part of it)
  sendNs @3 :UInt64;            # sending the archive
}

interface CriuImageSink {
  write @0 (data :Data) -> stream;
  done @1 () -> ();
}

interface CriuImageUpload {
  write @0 (data :Data) -> stream;
  done @1 () -> (restoreNs :UInt64, unpackNs :UInt64);
}

interface OutputSink {
  stdout @0 (data :Data) -> stream;
  stderr @1 (data :Data) -> stream;
}

interface Process {
  write @0 (data :Data) -> ();  # to its stdin
  closeStdin @1 () -> ();
  signal @2 (signal :Int32) -> ();  # to its whole process tree
  wait @3 () -> (result :InvokeResult);
  # Added for terminals (issue 16; an older agent answers "unimplemented"): the terminal's
  # size in characters (TIOCSWINSZ; the kernel sends SIGWINCH to its foreground process
  # group). Refused for a process without a terminal (Handler.terminal false).
  resize @4 (width :UInt16, height :UInt16) -> ();
}

struct AgentInfo {
  protocolVersion @0 :UInt32;
  agentVersion @1 :Text;
  bootId @2 :Text;              # /proc/sys/kernel/random/boot_id
  uptimeNs @3 :UInt64;          # CLOCK_BOOTTIME
  workers @4 :List(Text);       # names of running warm workers
  startedNs @5 :UInt64;         # CLOCK_BOOTTIME when wisp-agent's main() began
  readyNs @6 :UInt64;           # CLOCK_BOOTTIME when it first listened on vsock
  # execStream honours Handler.terminal (an older agent ignores that field and would run the
  # command on pipes: a caller that asks for a terminal checks this first).
  terminals @7 :Bool;
}

struct Handler {
  name @0 :Text;                # identifies a worker; for exec mode informational
  argv @1 :List(Text);          # argv[0] resolved through PATH inside the sandbox
  env @2 :List(Text);           # "KEY=value"
  limits @3 :Limits;
  network @4 :Bool = false;     # no network namespace isolation when true
  # A container's root (the containerd shim, issue 16). "" keeps the guest's own root
  # (read-only). Else a guest block device ("/dev/vdX") holding a read-only ext4 image: the
  # agent mounts it once per VM under a writable overlay whose upper layer is a tmpfs in guest
  # RAM (private per VM, and per clone after a restore), and the handler runs with that overlay
  # as its root, without the agent's /tmp and /scratch.
  rootDevice @5 :Text;
  cwd @6 :Text;                 # "": /tmp (the private scratch) or, with rootDevice, "/"
  uid @7 :UInt32 = 65534;       # the handler's user; 0 (a container's root) keeps no
  gid @8 :UInt32 = 65534;       # capabilities, and /proc/sys is read-only to it
  additionalGids @9 :List(UInt32);
  # execStream only (invoke, workers and spares refuse it): the command runs on a
  # pseudo-terminal of a devpts instance of its own (/dev/pts/0 in its sandbox, also its
  # controlling terminal). Its stdout and stderr are the terminal, whose output (echo and
  # ONLCR included) goes to OutputSink.stdout (nothing to stderr); Process.write types into it;
  # closeStdin types the terminal's end-of-file character (VEOF, ^D by default), which ends a
  # read in canonical mode and is a plain byte in raw mode.
  terminal @10 :Bool = false;
  consoleWidth @11 :UInt16;     # the terminal's initial size in characters; 0 (either):
  consoleHeight @12 :UInt16;    # left at the kernel's default (0x0) until Process.resize
}

struct Limits {
  memoryBytes @0 :UInt64 = 268435456;   # cgroup memory.max (256 MiB)
  pids @1 :UInt32 = 64;                 # cgroup pids.max
  cpuTimeMs @2 :UInt64 = 0;             # RLIMIT_CPU; 0 = none
  maxOutputBytes @3 :UInt64 = 16777216; # stdout (result) cap; stderr is capped at 1 MiB
  openFiles @4 :UInt32 = 256;           # RLIMIT_NOFILE
}

struct InvokeRequest {
  enum Mode { exec @0; worker @1; }
  mode @0 :Mode;
  handler @1 :Handler;          # exec: what to run; worker: only `name` is used
  payload @2 :Data;
  timeoutMs @3 :UInt64 = 30000; # wall clock; the whole process tree is killed after it
}

struct InvokeResult {
  stdout @0 :Data;              # the result
  stderr @1 :Data;
  union {
    exitCode @2 :Int32;
    signal @3 :Int32;
  }
  timedOut @4 :Bool;
  outputTruncated @5 :Bool;     # stdout or stderr hit its cap
  limitExceeded @6 :Text;       # "" or which limit ended it ("memory", "pids", "output")
  durationNs @7 :UInt64;
  peakMemoryBytes @8 :UInt64;   # cgroup memory.peak (6.1 has it; else ru_maxrss)
  cpuTimeNs @9 :UInt64;         # user + system of the whole tree
  error @10 :Text;              # "" or why the handler could not run to completion on the
                                # agent's side (worker died, worker not started, bad frame)
  preforked @11 :Bool;          # exec mode: the call ran in the agent's pre-forked sandbox
                                # (made before it, e.g. in the snapshot) instead of a new one
}
