// The control channel's calls (api/vmm.capnp's Vmm) as every connection to the control socket
// is served them: each connection gets a Vmm capability of its own, so that a pause it asks for
// has an owner (pause_holds.h), and each call is handed to the VM's event loop to run. Also what
// the control protocol's fuzz target serves (tests/fuzz/control_protocol_fuzz.cc).
//
// Snapshots are written only into the two descriptors a request carries (checked here: regular,
// empty, open for writing, not appending); the request's `dir` is text for messages, never
// opened. The VMM creates, opens and renames no file for its control channel.
//
// Thread rules: open(), close() and every call on the RPC thread that owns this; the service's
// methods run where `run_on_loop` runs them (the VM's event loop).
#pragma once

#include <capnp/capability.h>

#include <cstdint>
#include <functional>

#include "api/vmm_control.h"
#include "vmm/control/pause_holds.h"

namespace wisp {

// Runs `fn` on the VM's event loop and returns true, or returns false without running it when
// the VM is stopping. A wisp::Error `fn` throws reaches the caller (EventLoop::run_on_loop's
// contract).
using RunOnLoop = std::function<bool(const std::function<void()>& fn)>;

class ControlSessions {
 public:
  // `service` must outlive this.
  ControlSessions(RunOnLoop run_on_loop, control::Service& service)
      : run_on_loop_(std::move(run_on_loop)), service_(service) {}
  ControlSessions(const ControlSessions&) = delete;
  ControlSessions& operator=(const ControlSessions&) = delete;

  // The bootstrap capability of a new connection, known as *id from now on.
  capnp::Capability::Client open(PauseHolds::ConnectionId* id);
  // Connection `id` closed: ends its pause if it was the last to hold one and none was asked
  // to last (the VM resumes). Never throws (a failed resume is logged).
  void close(PauseHolds::ConnectionId id);

  const PauseHolds& holds() const { return holds_; }

 private:
  friend class VmmConnection;
  // Runs `fn` on the loop; a failure (or a stopping VM) becomes the caller's KJ exception.
  void run(const std::function<void()>& fn);

  RunOnLoop run_on_loop_;
  control::Service& service_;
  PauseHolds holds_;
  PauseHolds::ConnectionId next_id_ = 1;
};

}  // namespace wisp
