// The host side of api/agent.capnp: a synchronous client for the in-guest wisp-agent, reached
// through a VM's vsock Unix socket (the VMM's "CONNECT <port>\n" bridge). Callers see plain C++
// structs, never Cap'n Proto types, so the CLI and tests do not depend on the generated code.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"

namespace wisp::client {

// Mirrors of the schema's structs (which live in wisp::api); defaults are the schema's.
struct Limits {
  uint64_t memory_bytes = 256ull << 20;
  uint32_t pids = 64;
  uint64_t cpu_time_ms = 0;  // 0 = no RLIMIT_CPU
  uint64_t max_output_bytes = 16ull << 20;
  uint32_t open_files = 256;
};

struct Handler {
  std::string name;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value"
  Limits limits;
  bool network = false;
  // A container's root and process identity (api/agent.capnp Handler @5..@9).
  std::string root_device;  // "" or "/dev/vdX"
  std::string cwd;
  uint32_t uid = 65534;
  uint32_t gid = 65534;
  std::vector<uint32_t> additional_gids;
  // execStream only: on a pseudo-terminal (api/agent.capnp Handler @10..@12).
  bool terminal = false;
  uint16_t console_width = 0;  // 0: the kernel's default size
  uint16_t console_height = 0;
};

enum class InvokeMode { kExec, kWorker };

struct InvokeRequest {
  InvokeMode mode = InvokeMode::kExec;
  Handler handler;  // worker mode: only `name` is used
  std::string payload;
  uint64_t timeout_ms = 30000;
};

struct InvokeResult {
  std::string out;  // the handler's stdout: the result
  std::string err;
  bool signaled = false;  // true: `signal` ended it; false: it exited with `exit_code`
  int exit_code = 0;
  int signal = 0;
  bool timed_out = false;
  bool output_truncated = false;
  std::string limit_exceeded;  // "" or which limit ended it ("memory", "pids", "output")
  uint64_t duration_ns = 0;
  uint64_t peak_memory_bytes = 0;
  uint64_t cpu_time_ns = 0;
  std::string error;       // "" or why the agent could not run it to completion
  bool preforked = false;  // exec mode: it ran in the agent's pre-forked sandbox
};

// Steers a running exec_stream command from inside its output callbacks. They run on the
// client's event loop, so these only send requests and never wait for them.
class StreamControl {
 public:
  virtual ~StreamControl() = default;
  virtual void write(const std::string& data) = 0;  // to its stdin (errors such as EPIPE ignored)
  virtual void close_stdin() = 0;
  virtual void signal(int sig) = 0;  // to the whole tree; a refusal fails exec_stream
  // The terminal's size (Handler.terminal); a refusal fails exec_stream.
  virtual void resize(uint16_t width, uint16_t height) = 0;
  // Stops waiting: exec_stream returns at once (result.error "dropped by the caller") and
  // releases the Process, which makes the agent kill the command.
  virtual void drop() = 0;
};

using StreamCallback = std::function<void(const std::string& chunk, StreamControl& control)>;

struct ExecStreamRequest {
  Handler handler;
  uint64_t timeout_ms = 30000;
  std::string stdin_data;    // written first
  bool close_stdin = true;   // after stdin_data; false: a callback closes it through control
  StreamCallback on_stdout;  // each chunk of stdout, in order, as the command writes it
  StreamCallback on_stderr;
};

struct AgentInfo {
  uint32_t protocol_version = 0;
  std::string agent_version;
  std::string boot_id;
  uint64_t uptime_ns = 0;
  std::vector<std::string> workers;
  uint64_t started_ns = 0;  // CLOCK_BOOTTIME when wisp-agent's main() began (0: not reported)
  uint64_t ready_ns = 0;    // CLOCK_BOOTTIME when it first listened on vsock
  bool terminals = false;   // execStream honours Handler.terminal
};

// The schema constants, so callers need not include the generated header.
uint32_t agent_port();
uint32_t protocol_version();
uint64_t max_message_bytes();
uint64_t max_file_bytes();

// Why a call failed; wisp exec maps these to exit codes.
class AgentError : public Error {
 public:
  enum class Kind {
    kUnreachable,   // no agent answered before the deadline (VM not up, agent not listening)
    kDisconnected,  // the connection dropped mid-call (VM died or powered off)
    kTimeout,       // the agent did not answer a call in time
    kRemote,        // the agent answered with an exception (bad request, handler not found)
  };
  AgentError(Kind kind, const std::string& msg, bool unimplemented = false)
      : Error(msg), kind_(kind), unimplemented_(unimplemented) {}
  Kind kind() const { return kind_; }
  // kRemote: the agent does not know the method (an older agent).
  bool unimplemented() const { return unimplemented_; }

 private:
  Kind kind_;
  bool unimplemented_ = false;
};

struct ConnectOptions {
  std::string uds_path;  // the VM's --vsock-uds socket
  // Non-zero: connect over AF_VSOCK to this guest CID instead (a VM whose vsock is the host
  // kernel's vhost-vsock, e.g. QEMU's vhost-vsock-device; used by the perf suite's peer).
  uint32_t vsock_cid = 0;
  uint32_t port = 0;  // 0: agent_port()
  // The guest may still be booting: connect and CONNECT are retried until this passes.
  std::chrono::milliseconds deadline{30000};
  // Called between attempts; returning false gives up early (e.g. the VMM process exited).
  std::function<bool()> keep_trying;
  // Every call other than invoke must answer within this; invoke gets its timeout plus this.
  std::chrono::milliseconds call_grace{10000};
  // Ping after connecting, and connect again if the connection drops before the answer: a VM
  // just restored from a snapshot resets its vsock transport once it runs, which drops
  // connections made while it was still resuming (QEMU's vhost-vsock does so).
  bool confirm = false;
};

// One RPC connection to one agent. Synchronous: each method runs the calling thread's KJ event
// loop (shared by all AgentClients of that thread, created with the first; so the thread must
// not run another KJ loop) until the answer arrives. An AgentClient belongs to the thread that
// created it: for concurrent calls use one per thread, or invoke_many on one connection.
class AgentClient {
 public:
  // Throws AgentError(kUnreachable) if the agent did not accept a connection by the deadline.
  static std::unique_ptr<AgentClient> connect(const ConnectOptions& options);
  // Connects and makes the first calls before the guest has accepted the connection:
  // `first_calls` makes them on the new client (and may wait for their answers). Their bytes
  // wait in the VMM behind the CONNECT line and reach the agent as it accepts, one round trip
  // sooner than connect() and then the calls. A connection the bridge refused (the guest saw
  // none of it) is made again and `first_calls` run anew, until the deadline; an AgentError on
  // a connection the guest accepted propagates (its calls may have run). Only through a VMM's
  // bridge (uds_path); `confirm` does not apply (the first calls' answers confirm).
  static std::unique_ptr<AgentClient> connect_with(
      const ConnectOptions& options, const std::function<void(AgentClient&)>& first_calls);
  // Wraps an already connected byte stream (after any CONNECT handshake); takes the fd.
  static std::unique_ptr<AgentClient> from_fd(int fd, std::chrono::milliseconds call_grace);
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  AgentInfo ping();
  InvokeResult invoke(const InvokeRequest& request);
  // Sends all requests at once on this connection and waits for every answer (in order).
  std::vector<InvokeResult> invoke_many(const std::vector<InvokeRequest>& requests);
  void start_worker(const Handler& handler);
  void stop_worker(const std::string& name);
  void prepare_snapshot();
  // Also has the agent set up a pre-forked sandbox for the exec-mode `spare` (the handler as
  // the template's invokes name it) and returns once it is ready, so the snapshot holds it.
  void prepare_snapshot(const Handler& spare);
  void resumed(const std::string& entropy, int64_t wall_clock_unix_ns);
  // resumed and invoke sent together, one round trip: the agent takes a connection's calls in
  // order and reseeds before resumed returns, so the handler runs reseeded. The result is
  // returned only once resumed answered; a failed reseed throws and the result is dropped.
  // `reseeded_ns`, if given, gets the time (base/clock.h now_ns) the reseed's answer came.
  InvokeResult resumed_then_invoke(const std::string& entropy, int64_t wall_clock_unix_ns,
                                   const InvokeRequest& request, uint64_t* reseeded_ns = nullptr);
  // execStream: runs the command, feeding chunks to the callbacks as they arrive, and returns
  // its result (out and err are empty: the output went to the callbacks). Throws AgentError
  // (kRemote) when the agent refuses the command, or a callback threw (its message).
  InvokeResult exec_stream(const ExecStreamRequest& request);
  // The simple form: writes `stdin_data`, closes stdin, collects chunks through the callbacks.
  InvokeResult exec_stream(const Handler& handler, uint64_t timeout_ms,
                           const std::string& stdin_data,
                           std::function<void(const std::string&)> on_stdout,
                           std::function<void(const std::string&)> on_stderr);
  // Files in the guest's scratch space (/scratch; `path` relative to it). Throws AgentError
  // (kRemote) with the agent's reason on a refused path, a symlink, a missing file, a size
  // over Agent.maxFileBytes. `mode` is masked to 0777 by the agent (0: 0644).
  void put_file(const std::string& path, const std::string& data, uint32_t mode = 0644);
  std::string get_file(const std::string& path);
  // The agent replies, then powers the VM off. A connection dropped by the power-off before
  // the reply arrives counts as success.
  void shutdown();

  // CRIU inside the guest (issue 17; agent.capnp criuCheck, checkpointWorker, restoreWorker).
  struct CriuCheck {
    bool passed = false;
    std::string output;   // criu check's stdout and stderr
    std::string version;  // `criu --version`, first line
  };
  CriuCheck criu_check();
  struct CriuDump {
    uint64_t image_bytes = 0;  // the archive (api/criu_image.h) as received
    uint32_t files = 0;
    uint64_t dump_ns = 0;  // criu dump in the guest
    uint64_t send_ns = 0;  // the archive's transfer
  };
  // Checkpoints warm worker `name` (it keeps running); the archive arrives in order through
  // `on_chunk` (which may throw to abort). `max_bytes`: the agent refuses a larger image.
  CriuDump checkpoint_worker(const std::string& name, uint64_t max_bytes,
                             const std::function<void(const std::string&)>& on_chunk);
  struct CriuRestore {
    uint64_t upload_ns = 0;   // sending the archive
    uint64_t unpack_ns = 0;   // the agent's unpacking
    uint64_t restore_ns = 0;  // criu restore in the guest
  };
  // Restores a worker for `handler` from the archive `next_chunk` returns piece by piece (""
  // at its end). The worker then answers mode=worker invokes; send `resumed` before its first
  // call for fresh randomness.
  CriuRestore restore_worker(const Handler& handler,
                             const std::function<std::string()>& next_chunk);
  struct CriuDriveRestore {
    uint64_t mount_ns = 0;    // mounting the drive in the guest
    uint64_t restore_ns = 0;  // criu restore in the guest
  };
  // Restores a worker for `handler` from the CRIU image drive the VM has as `device`
  // ("/dev/vdX"; agent.capnp restoreWorkerFromDrive). Throws AgentError; an agent without the
  // method: kRemote with unimplemented() (use restore_worker then).
  CriuDriveRestore restore_worker_from_drive(const Handler& handler, const std::string& device);

 private:
  struct Impl;
  explicit AgentClient(std::unique_ptr<Impl> impl);
  // For a client of connect_with: whether the bridge refused the connection (then the guest
  // saw nothing of it), waiting for its answer if it has not come yet.
  bool refused();
  // The RPC connection on impl->stream.
  static std::unique_ptr<AgentClient> on_stream(std::unique_ptr<Impl> impl,
                                                std::chrono::milliseconds call_grace);
  std::unique_ptr<Impl> impl_;
};

// Connects to `uds_path` and writes "CONNECT <port>\n" without waiting for the reply. Returns
// the connected fd, or -1 with `why` set when there is no listener yet.
int vsock_uds_send_connect(const std::string& uds_path, uint32_t port, std::string* why);

// Connects to `uds_path` and does the "CONNECT <port>\n" / "OK <n>\n" handshake once, waiting
// at most `timeout` for the reply. Returns the connected fd (the guest stream), or -1 with
// `why` set when there is no listener yet. Throws Error on a malformed reply.
int vsock_uds_connect(const std::string& uds_path, uint32_t port, std::chrono::milliseconds timeout,
                      std::string* why);

// Connects over AF_VSOCK to guest `cid`, `port`, waiting at most `timeout`. Returns the
// connected fd, or -1 with `why` set when the guest is not there or not listening yet.
int vsock_cid_connect(uint32_t cid, uint32_t port, std::chrono::milliseconds timeout,
                      std::string* why);

// An agent address as a person writes it: "vsock:CID" is a guest CID reached over AF_VSOCK
// (sets options->vsock_cid), anything else a VM's --vsock-uds path (sets options->uds_path).
// Throws Error on a malformed "vsock:" address.
void parse_agent_address(const std::string& address, ConnectOptions* options);

}  // namespace wisp::client
