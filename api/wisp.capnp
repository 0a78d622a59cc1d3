# The API of `wisp serve`, the sandbox service a FaaS controller holds a connection to:
# Cap'n Proto RPC, two-party vat network, over serve's Unix socket (`--socket PATH`, mode 0600,
# only its owner's uid or root may connect: SO_PEERCRED); the bootstrap capability is a Wisp.
# The HTTP/JSON gateway (`--http`) maps its routes onto the same interfaces, and its JSON bodies
# are these structs in Cap'n Proto's JSON encoding (field names as written here; Data fields
# are base64 strings).
#
# Versioning: `apiVersion` is bumped on any incompatible change; methods and fields are only
# ever added. Clients check Wisp.version().apiVersion.
#
# Limits: serve reads messages of at most Wisp.maxMessageBytes with a traversal limit; a payload
# or a file is at most maxPayloadBytes; names are template names (1..64 of [A-Za-z0-9._-], not
# starting with '.'). A malformed or oversized request is answered with an exception, never by
# crashing serve, and never ends the connection's other calls.
#
# Errors are exceptions whose description starts with a stable word a client can switch on,
# then ": " and a message a person can act on:
#   "not-found: template NAME ..."     unknown template or sandbox
#   "bad-request: ..."                 a malformed name, spec, path or value
#   "overloaded: ..."                  no capacity before the request's deadline (VM count,
#                                      memory budget, or the template's concurrency limit)
#   "draining: ..."                    serve is shutting down and takes no new work
#   "vm-failed: ... <VMM log tail>"    the VM died or its agent broke the RPC mid-call
#   "too-large: ..."                   a payload or file over maxPayloadBytes
#   "unsupported: ..."                 the sandbox's guest cannot do it (an older wisp-agent)
# A handler that fails is not an exception: its result says how it ended.

@0xc30cfb4dc5743292;

using Cxx = import "/capnp/c++.capnp";
using Json = import "/capnp/compat/json.capnp";
# Its own C++ namespace: agent.capnp (wisp::api) also defines InvokeRequest, OutputSink and
# Process, and serve links both; one namespace would define those symbols twice.
$Cxx.namespace("wisp::api::serve");

const apiVersion :UInt32 = 1;

interface Wisp {
  const maxMessageBytes :UInt64 = 33554432;  # 32 MiB: one payload of maxPayloadBytes each way
  const maxPayloadBytes :UInt64 = 16777216;  # 16 MiB: a payload, a file, a handler's stdout

  version @0 () -> (info :ServerInfo);
  templates @1 () -> (templates :Templates);
  sandboxes @2 () -> (sandboxes :Sandboxes);

  # The fast path: one call of template `template`'s handler on a fresh clone (taken warm when
  # serve keeps warm clones of it, else restored by a pre-jailed VMM of the pool), reseeded,
  # invoked and destroyed afterwards. A client that drops the call gets the clone destroyed.
  invoke @3 (template :Text, request :InvokeRequest) -> (response :InvokeResponse);

  stats @4 () -> (stats :Stats);
}

struct ServerInfo {
  apiVersion @0 :UInt32;
  wispVersion @1 :Text;
  home @2 :Text;                # the template store's WISP_HOME
  draining @3 :Bool;
}

# ---- templates ------------------------------------------------------------------------------

interface Templates {
  # Boots the spec's VM, starts its handler, warms it up, snapshots it into the store and
  # publishes it whole (or not at all). Progress lines go to `progress` as the steps start.
  # The spec's host files must lie under a directory serve allows (--allow-dir).
  # bootMs, warmupMs: milliseconds until the agent answered, and of the worker start and
  # warm-up calls (what `wisp template create --timings` prints; 0 when serve does not say).
  create @0 (spec :TemplateSpec, progress :ProgressSink)
      -> (template :TemplateInfo, bootMs :Float64, warmupMs :Float64);
  list @1 () -> (templates :List(TemplateInfo));
  get @2 (name :Text) -> (template :TemplateInfo);
  # Calls in flight finish on the generation they hold; new calls get "not-found". Templates
  # made from it by Sandbox.snapshot are not in the way: each holds hard links of the snapshot
  # files it depends on, so removing (or rebuilding) their parent leaves them working.
  remove @3 (name :Text) -> ();
}

interface ProgressSink {
  event @0 (message :Text) -> stream;
  done @1 ();
}

struct TemplateSpec {
  name @0 :Text;
  rebuild @1 :Bool;             # replace an existing template atomically
  mode @2 :Text = "exec";       # exec: a fresh handler process per call; worker: warm worker
  argv @3 :List(Text);          # the handler command
  env @4 :List(Text);           # "KEY=value"
  warmup @5 :UInt32;            # invocations before the snapshot; 0: none, and then no
                                # probe clone records a working set (`wisp template
                                # create` sends 1 unless given --warmup)
  warmupPayload @6 :Data $Json.base64;
  kernel @7 :Text;              # "": wisp's default guest kernel
  initrd @8 :Text;              # "" and no rootfs: the agent initramfs
  rootfs @9 :Text;              # an ext4 image with wisp-agent as init (read-only)
  drives @10 :List(Text);       # "PATH[,ro]" after the rootfs
  memMib @11 :UInt32;           # 0: 256
  vcpus @12 :UInt32;            # 0: 1
  bootTimeoutMs @13 :UInt64 = 120000;
  # exec mode: how the handler's sandbox is made (its root, user, limits), as the execs of
  # its clones will ask (ExecRequest.sandbox): the snapshot's pre-forked sandbox is made so.
  handlerSandbox @14 :ExecSandbox;
}

struct TemplateInfo {
  name @0 :Text;
  mode @1 :Text;
  argv @2 :List(Text);
  env @3 :List(Text);
  drives @4 :List(Text);
  memMib @5 :UInt64;
  vcpus @6 :UInt32;
  guest @7 :Text;               # what it was booted from
  createdUnix @8 :Int64;
  parent @9 :Text;              # "" or the template a Sandbox.snapshot diff depends on
  memoryFileBytes @10 :UInt64;
  warm @11 :UInt32;             # warm clones serve keeps of it (--warm NAME=N)
  warmReady @12 :UInt32;        # of which restored and waiting now
  memoryDiskBytes @13 :UInt64;  # the memory file's blocks on disk (it is sparse)
  snapshotMs @14 :Float64;      # pause + save when it was made
}

# ---- invocations ----------------------------------------------------------------------------

struct InvokeRequest {
  payload @0 :Data $Json.base64;
  timeoutMs @1 :UInt64 = 30000;  # the handler's wall-clock limit
  deadlineMs @2 :UInt64 = 30000; # how long the request may wait for capacity (then overloaded)
}

struct InvokeResponse {
  stdout @0 :Data $Json.base64;              # the result
  stderr @1 :Data $Json.base64;
  union {
    exitCode @2 :Int32;
    signal @3 :Int32;
  }
  timedOut @4 :Bool;
  outputTruncated @5 :Bool;
  limitExceeded @6 :Text;       # "" or which limit ended it ("memory", "pids", "output")
  error @7 :Text;               # "" or why the handler could not run on the agent's side
  durationNs @8 :UInt64;        # the handler's own run
  peakMemoryBytes @9 :UInt64;
  cpuTimeNs @10 :UInt64;
  timings @11 :Timings;
}

# Milliseconds from the request's arrival at serve.
struct Timings {
  queueMs @0 :Float64;          # waiting for capacity
  restoreMs @1 :Float64;        # until the clone was rebuilt (0 for a warm clone)
  reconnectMs @2 :Float64;      # until its agent was connected and reseeded
  invokeMs @3 :Float64;         # the call
  totalMs @4 :Float64;
  warm @5 :Bool;                # a warm clone served it
  pooled @6 :Bool;              # a pre-jailed VMM of the pool restored it
  # The parts (each the stage's own length): reconnect is connectMs for a new clone (its
  # agent.resumed confirms the connection), resumeMs and reseedMs for a warm one (sent together,
  # both counted from the resume's start); handler is the agent's own time for the handler's
  # run (cgroup, sandbox, fork, exec, exit), within invoke.
  connectMs @7 :Float64;        # connecting to the agent and reseeding (0 for a warm clone)
  resumeMs @8 :Float64;         # resuming the paused warm clone's vCPUs (0 otherwise)
  reseedMs @9 :Float64;         # a warm clone's agent.resumed: fresh entropy and clock
  handlerMs @10 :Float64;
  warmFilling @11 :UInt32;      # warm clones of the template restoring in the background then
  # The template's VM snapshot does not fit this host (issue 17): the call was served from its
  # CRIU image instead, in a guest booted cold. restoreMs then ends once the worker was restored
  # (bootMs + criuRestoreMs, after queueMs and any failed restore), reconnectMs and connectMs
  # are 0 (the reseed goes with the invoke).
  criuFallback @12 :Bool;
  bootMs @13 :Float64;          # the cold boot, until the guest's agent answered
  criuRestoreMs @14 :Float64;   # restoreWorker as serve saw it (transfer, unpacking, criu)
  criuGuestMs @15 :Float64;     # of which criu restore in the guest
  criuUploadMs @16 :Float64;    # of which the image's transfer to the agent
  criuUnpackMs @17 :Float64;    # of which the agent's unpacking of it
  criuSource @18 :Text;         # "drive" (the image's read-only drive) or "upload"
  criuMountMs @19 :Float64;     # of criuRestoreMs: the drive's mount in the guest
  criuDriveMs @20 :Float64;     # of bootMs: the drive made again from the archive (else 0)
  # The clone's guest during the call when serve runs with --vcpu-counts (else not counted:
  # vcpuCounted false): a warm clone's from its resume, a fresh clone's from its restore, to
  # the handler's answer: KVM's counters of its vCPUs (api/vmm.capnp VcpuCounters) and the
  # guest pages it first wrote (each a private copy of the snapshot's page).
  vcpuCounted @21 :Bool;
  exits @22 :UInt64;
  nestedPageFaults @23 :UInt64;
  writtenPages @24 :UInt64;
}

# ---- sandboxes ------------------------------------------------------------------------------

interface Sandboxes {
  # A clone of `template` kept running between calls. It lives until its time to live runs
  # out (timeoutMs, default 5 minutes; Sandbox.setTimeout changes it), it is killed, or the
  # capability returned here (and every copy of it) is dropped. `detached`: dropping the
  # capability does not end it (the CLI and the HTTP gateway create such sandboxes: they reach
  # them by id later). `deadlineMs`: how long the request may wait for capacity.
  create @0 (template :Text, timeoutMs :UInt64 = 300000, deadlineMs :UInt64 = 30000,
             detached :Bool = false)
      -> (sandbox :Sandbox, info :SandboxInfo);
  # Another handle on a live sandbox (the CLI, HTTP); dropping it does not end the sandbox.
  get @1 (id :Text) -> (sandbox :Sandbox);
  list @2 () -> (sandboxes :List(SandboxInfo));
}

interface Sandbox {
  info @0 () -> (info :SandboxInfo);
  # The template's handler, as Wisp.invoke but on this sandbox.
  invoke @1 (request :InvokeRequest) -> (response :InvokeResponse);
  # A command run to its end in the sandbox's handler isolation, `stdin` as its input.
  exec @2 (request :ExecRequest) -> (response :InvokeResponse);
  # The same, streamed: output arrives on `output` as it is written; the returned Process
  # takes stdin and signals, and its wait() gives the result (stdout and stderr empty there).
  execStream @3 (request :ExecRequest, output :OutputSink) -> (process :Process);
  # A file in the sandbox's scratch space (/scratch in the guest; `path` is relative to it,
  # without ".." components).
  putFile @4 (path :Text, data :Data, mode :UInt32 = 420) -> ();  # 420 = 0644
  getFile @5 (path :Text) -> (data :Data);
  pause @6 () -> ();
  resume @7 () -> ();
  # A diff snapshot of the running sandbox as a new template `name`, whose parent is the
  # sandbox's template: one warmed sandbox forked into many. The sandbox runs on.
  snapshot @8 (name :Text) -> (template :TemplateInfo);
  setTimeout @9 (timeoutMs :UInt64) -> ();
  kill @10 () -> ();
}

struct SandboxInfo {
  id @0 :Text;
  template @1 :Text;
  state @2 :Text;               # "running", "paused", "dead"
  createdUnixMs @3 :Int64;
  expiresUnixMs @4 :Int64;
  memMib @5 :UInt64;
  invocations @6 :UInt64;
}

struct ExecRequest {
  argv @0 :List(Text);
  env @1 :List(Text);           # "KEY=value"
  stdin @2 :Data $Json.base64;
  timeoutMs @3 :UInt64 = 30000;
  sandbox @4 :ExecSandbox;      # unset: the guest's root, as user nobody, default limits
  # execStream only: the command runs on a pseudo-terminal (api/agent.capnp Handler.terminal:
  # its output all goes to OutputSink.stdout, closeStdin types ^D, Process.resize sets the
  # size). Refused with "unsupported" by a sandbox whose agent predates terminals.
  terminal @5 :Bool = false;
  consoleWidth @6 :UInt16;      # the initial size in characters; 0: the kernel's default
  consoleHeight @7 :UInt16;
}

# The handler sandbox of an exec beyond argv and env (api/agent.capnp Handler and Limits say
# what each field does). A clone's pre-forked sandbox serves the call only when these match
# its template's TemplateSpec.handlerSandbox.
struct ExecSandbox {
  rootDevice @0 :Text;          # "" or "/dev/vdX": a read-only ext4 drive as the root
  cwd @1 :Text;
  uid @2 :UInt32 = 65534;
  gid @3 :UInt32 = 65534;
  additionalGids @4 :List(UInt32);
  memoryBytes @5 :UInt64;       # 0: the agent's default (256 MiB)
  pids @6 :UInt32;              # 0: the default (64)
  cpuTimeMs @7 :UInt64;         # 0: none
  openFiles @8 :UInt32;         # 0: the default (256)
}

interface OutputSink {
  stdout @0 (data :Data) -> stream;
  stderr @1 (data :Data) -> stream;
}

interface Process {
  write @0 (data :Data) -> ();  # to its stdin
  closeStdin @1 () -> ();
  signal @2 (signal :Int32) -> ();
  wait @3 () -> (response :InvokeResponse);
  # The terminal's size (ExecRequest.terminal); refused for a command without one.
  resize @4 (width :UInt16, height :UInt16) -> ();
}

# ---- monitoring -----------------------------------------------------------------------------

struct Stats {
  vmsRunning @0 :UInt32;        # VMMs with a guest (clones, sandboxes, template builds)
  memoryCommittedMib @1 :UInt64;  # guest memory admitted (the --max-memory budget's use)
  maxVms @2 :UInt32;
  maxMemoryMib @3 :UInt64;
  poolIdle @4 :UInt32;          # pre-jailed VMMs waiting for an order
  poolTarget @5 :UInt32;
  sandboxes @6 :UInt32;
  waiting @7 :UInt32;           # requests queued for capacity
  draining @8 :Bool;
  templates @9 :List(TemplateStats);
  stages @10 :List(StageHistogram);
  # The pool's huge-page layer (wisp serve --huge-page-layer): memory files copied to its tmpfs
  # of 2 MiB pages, and the bytes they hold. 0 and 0 when serve has none.
  hugePageLayerFiles @11 :UInt32;
  hugePageLayerBytes @12 :UInt64;
}

struct TemplateStats {
  name @0 :Text;
  warmReady @1 :UInt32;
  warmTarget @2 :UInt32;
  inFlight @3 :UInt32;
  outcomes @4 :List(OutcomeCount);
  criuFallbacks @5 :UInt64;     # calls served from the CRIU image (Timings.criuFallback)
  # Guest pages its warm clones read ahead before being paused (agent.touchMemory: their
  # template's working set, so a call takes fewer nested page faults), in all.
  warmTouchedPages @6 :UInt64;
}

struct OutcomeCount {
  outcome @0 :Text;   # "ok" (an exit code), "timeout", "limit", "vm_failed", "overloaded", "error"
  count @1 :UInt64;
}

# A latency histogram (Prometheus style: cumulative counts per upper bound, in seconds).
struct StageHistogram {
  stage @0 :Text;               # "restore", "reconnect", "invoke", "total", ... "criu"
  bucketBounds @1 :List(Float64);
  bucketCounts @2 :List(UInt64);  # cumulative; one more than bounds: the last is +Inf
  sum @3 :Float64;
  count @4 :UInt64;
}
