// Asynchronous Cap'n Proto links from `wisp serve`'s event loop to one VM: its agent (over the
// VMM's vsock Unix-socket bridge, "CONNECT <port>\n" / "OK <n>\n") and its VMM control socket.
// The synchronous clients of api/ (agent_client.h, vmm_client.h) run a loop of their own per
// thread, which serve's loop thread cannot; these speak the same protocols on the caller's loop.
//
// This file exposes no generated type: api/agent.capnp and api/wisp.capnp both generate
// wisp::api::InvokeRequest, OutputSink and Process, so no translation unit may include both.
// The service's Wisp side sees the agent only through these plain C++ types.
//
// Threads: everything here belongs to the loop thread that made it.
#pragma once

#include <kj/async-io.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "api/agent_client.h"  // client::InvokeRequest, client::InvokeResult

namespace wisp::service {

// Where a stream's output goes (an adapter onto a caller's sink); each call's promise is the
// flow control: the next chunk waits for it.
class OutputStream {
 public:
  virtual ~OutputStream() noexcept(false) = default;  // holds Cap'n Proto clients
  virtual kj::Promise<void> stdout_chunk(kj::ArrayPtr<const kj::byte> data) = 0;
  virtual kj::Promise<void> stderr_chunk(kj::ArrayPtr<const kj::byte> data) = 0;
};

// A command started by AgentLink::exec_stream, running in the guest.
class StreamedProcess {
 public:
  virtual ~StreamedProcess() noexcept(false) = default;  // holds Cap'n Proto clients
  virtual kj::Promise<void> write(kj::Array<kj::byte> data) = 0;
  virtual kj::Promise<void> close_stdin() = 0;
  virtual kj::Promise<void> signal(int32_t signal) = 0;
  virtual kj::Promise<client::InvokeResult> wait() = 0;
  virtual kj::Promise<void> resize(uint16_t width, uint16_t height) = 0;  // a terminal's size
};

// One RPC connection to a guest agent.
class AgentLink {
 public:
  virtual ~AgentLink() noexcept(false) = default;  // holds Cap'n Proto clients
  // Resolves once the guest accepted the connection (at once for a link connect_agent returns,
  // except to AgentConnectOptions::first_calls).
  virtual kj::Promise<void> accepted() = 0;
  virtual kj::Promise<void> ping() = 0;
  // agent.resumed with fresh entropy and the host's wall clock (DESIGN.md rule 8).
  virtual kj::Promise<void> resumed_fresh() = 0;
  virtual kj::Promise<client::InvokeResult> invoke(const client::InvokeRequest& request) = 0;
  virtual kj::Promise<kj::Own<StreamedProcess>> exec_stream(const client::Handler& handler,
                                                            uint64_t timeout_ms,
                                                            kj::Own<OutputStream> output) = 0;
  virtual kj::Promise<void> put_file(const std::string& path, kj::ArrayPtr<const kj::byte> data,
                                     uint32_t mode) = 0;
  virtual kj::Promise<kj::Array<kj::byte>> get_file(const std::string& path) = 0;
  // agent.touchMemory: the guest reads one byte of each guest-physical page of `ranges`
  // (first page, count), so KVM maps them now. Resolves to the pages read.
  virtual kj::Promise<uint64_t> touch_memory(
      const std::vector<std::pair<uint64_t, uint64_t>>& ranges) = 0;
};

struct AgentConnectOptions {
  std::string uds_path;  // the VM's --vsock-uds socket
  std::chrono::milliseconds deadline{30000};
  // A clone just restored resets its vsock transport as it resumes, dropping connections made
  // before: a first call after connecting, and connect again if that drops
  // (client::ConnectOptions). kReseed makes that call agent.resumed (AgentLink::resumed_fresh),
  // which such a clone needs first anyway; it may then run twice (a reseed more: harmless).
  enum class Confirm { kNone, kPing, kReseed };
  Confirm confirm = Confirm::kPing;
  // Set: called with each new link before the guest has accepted it, to make the first calls
  // (a reseed and an invoke), which then travel with the connection request: one round trip
  // for all. The connection is confirmed by the guest's accept alone (`confirm` is not used):
  // a refused one, of which the guest saw nothing, is made again and this called again on the
  // new link (the calls on the old one fail and are to be replaced). Calls on a link the guest
  // accepted are not repeated: it may have run them.
  std::function<void(AgentLink&)> first_calls;
  // Asked between attempts; false gives up (the VMM exited).
  std::function<bool()> keep_trying;
};

// Connects on `io`'s loop, retrying while the guest's agent is not listening yet. The promise
// fails with a kj::Exception whose description says why (unreachable by the deadline).
kj::Promise<kj::Own<AgentLink>> connect_agent(kj::AsyncIoContext& io, AgentConnectOptions options);

// One RPC connection to a VMM's control socket (api/vmm.capnp).
class ControlLink {
 public:
  virtual ~ControlLink() noexcept(false) = default;  // holds Cap'n Proto clients
  // `lasting`: the pause outlives this connection (a warm clone held paused). `hold_clock`:
  // the guest's clock stands still until the resume (api/vmm.capnp pause).
  virtual kj::Promise<void> pause(bool lasting, bool hold_clock) = 0;
  virtual kj::Promise<void> resume() = 0;
  // The VMM's counters now: its vCPUs' (summed, since the restore) and guest pages written.
  struct Sample {
    uint64_t exits = 0, nested_page_faults = 0, written_pages = 0;
  };
  virtual kj::Promise<Sample> sample() = 0;
  // Vmm.populateWritable: these pages (first page, count; the memory file's page indexes) made
  // private copies now. Resolves to the pages.
  virtual kj::Promise<uint64_t> populate_writable(
      const std::vector<std::pair<uint64_t, uint64_t>>& ranges) = 0;
  // Vmm.writtenRanges: the pages written since the restore (first page, count).
  virtual kj::Promise<std::vector<std::pair<uint64_t, uint64_t>>> written_ranges() = 0;
};

kj::Promise<kj::Own<ControlLink>> connect_control(kj::AsyncIoContext& io,
                                                  const std::string& socket_path);

}  // namespace wisp::service
