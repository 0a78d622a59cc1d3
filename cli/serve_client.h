// The CLI's side of `wisp serve` (api/wisp.capnp): one synchronous Cap'n Proto connection to
// serve's Unix socket, shared by `wisp invoke --server`, `wisp template create --server` and
// `wisp sandbox ...`. Callers see plain C++ structs; serve's errors arrive as ServeError with
// the schema's stable word ("not-found", "overloaded", "vm-failed", ...).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/agent_client.h"
#include "base/error.h"
#include "base/options.h"
#include "manager/template_create.h"

namespace wisp::cli {

// The server a command talks to: `option` (--server PATH) when given, else $WISP_SERVER, else
// "" (standalone).
std::string server_socket(const std::string& option);

// Declares --server PATH into `out`.
void add_server_option(OptionParser& parser, std::string* out);

// An exception from serve, or a failure to reach it. `kind` is the word before ": " in serve's
// message when it is one of the schema's (api/wisp.capnp), "unreachable" when the socket did
// not accept, "disconnected" when the connection dropped mid-call, "error" otherwise.
class ServeError : public Error {
 public:
  ServeError(std::string kind, const std::string& msg) : Error(msg), kind_(std::move(kind)) {}
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};

// Where the call was interrupted by the `cancel_fd` given to connect (a signal arrived).
class ServeCancelled : public Error {
 public:
  using Error::Error;
};

struct ServeTimings {
  double queue_ms = 0, restore_ms = 0, reconnect_ms = 0, invoke_ms = 0, total_ms = 0;
  bool warm = false, pooled = false;
  // Set when serve answered from the template's CRIU image (api/wisp.capnp Timings @12-@20).
  bool criu_fallback = false;
  std::string criu_source;
  double boot_ms = 0, criu_drive_ms = 0, criu_restore_ms = 0, criu_upload_ms = 0,
         criu_unpack_ms = 0, criu_mount_ms = 0, criu_guest_ms = 0;
};

struct ServeInvokeResult {
  client::InvokeResult result;
  std::string error;  // "" or why the handler could not run on the agent's side
  ServeTimings timings;
};

struct ServeTemplateCreated {
  manager::TemplateInfo info;
  double boot_ms = 0, warmup_ms = 0;  // 0 when serve does not report them
};

struct SandboxInfo {
  std::string id;
  std::string template_name;
  std::string state;  // running, paused, dead
  int64_t created_unix_ms = 0;
  int64_t expires_unix_ms = 0;
  uint64_t mem_mib = 0;
  uint64_t invocations = 0;
};

struct ExecSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=value
  uint64_t timeout_ms = 30000;
};

class ServeClient {
 public:
  // Connects to serve's socket. `cancel_fd` (-1: none): when it becomes readable, the call in
  // progress is dropped (serve then destroys its VM) and it throws ServeCancelled.
  // Throws ServeError("unreachable") naming the socket and why.
  static std::unique_ptr<ServeClient> connect(const std::string& socket_path, int cancel_fd = -1);
  ~ServeClient();
  ServeClient(const ServeClient&) = delete;
  ServeClient& operator=(const ServeClient&) = delete;

  ServeInvokeResult invoke(const std::string& name, const std::string& payload, uint64_t timeout_ms,
                           uint64_t deadline_ms);
  // The spec's host paths are made absolute (serve resolves them, not this process's cwd).
  // `progress` gets each progress line serve sends.
  ServeTemplateCreated create_template(const manager::TemplateSpec& spec,
                                       const std::function<void(const std::string&)>& progress);
  SandboxInfo create_sandbox(const std::string& template_name, uint64_t timeout_ms,
                             uint64_t deadline_ms);
  std::vector<SandboxInfo> list_sandboxes();
  void kill_sandbox(const std::string& id);
  // Sandbox.snapshot: sandbox `id` forked into the new template `name` (its record).
  manager::TemplateInfo snapshot_sandbox(const std::string& id, const std::string& name);
  // Runs `spec` in sandbox `id`: stdin from `in_fd` as it comes (read on a thread of its own,
  // so a terminal, a pipe or a file all work), stdout and stderr written to `out_fd`/`err_fd`
  // as the guest writes them. Falls back to Sandbox.exec (stdin read whole first, output at
  // the end) when serve does not implement execStream. Returns the result (its out/err empty
  // when streamed).
  client::InvokeResult exec(const std::string& id, const ExecSpec& spec, int in_fd, int out_fd,
                            int err_fd);

 private:
  struct Impl;
  explicit ServeClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The exit status for a ServeError, with its line on stderr prefixed by `command`:
// kExitVmFailed for "vm-failed", kExitError for the rest.
int serve_error_status(const char* command, const ServeError& e);

}  // namespace wisp::cli
