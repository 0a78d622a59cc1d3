// The manager's side of api/vmm.capnp: a synchronous client for one wisp-vmm's control socket.
// Callers see api/vmm_control.h's plain structs, never Cap'n Proto types.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "api/vmm_control.h"

namespace wisp::client {

// One RPC connection to one VMM. Synchronous: each method runs the calling thread's KJ event
// loop (shared with the thread's AgentClients, see api/thread_io.h) until the answer arrives,
// at most `call_timeout`. Belongs to the thread that created it. Every failure throws
// wisp::Error naming the socket and what went wrong.
class VmmClient {
 public:
  static std::unique_ptr<VmmClient> connect(
      const std::string& socket_path,
      std::chrono::milliseconds call_timeout = std::chrono::milliseconds(120000));
  ~VmmClient();
  VmmClient(const VmmClient&) = delete;
  VmmClient& operator=(const VmmClient&) = delete;

  void ping();
  // A pause held by this connection: it ends with resume() or when this client goes away.
  void pause();
  // A pause that outlives this connection: only a resume() (from any client) ends it.
  void pause_lasting();
  // A lasting pause during which the guest's clock stands still (api/vmm.capnp holdClock).
  void pause_holding_clock();
  void resume();
  // Sends copies of request.state_fd and request.memory_fd with the call (the VMM writes the
  // snapshot into them); the caller still owns its descriptors.
  control::SnapshotReport snapshot(const control::SnapshotRequest& request);
  control::MemoryStats stats();
  // Runs of resident guest pages, (first page, count), sorted.
  std::vector<std::pair<uint64_t, uint64_t>> resident_ranges();
  // Runs of the pages written since the restore (api/vmm.capnp writtenRanges). Throws Error.
  std::vector<std::pair<uint64_t, uint64_t>> written_ranges();
  // Makes these pages private copies (api/vmm.capnp populateWritable); returns the pages.
  // Throws Error with the VMM's reason.
  uint64_t populate_writable(const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

 private:
  struct Impl;
  explicit VmmClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wisp::client
