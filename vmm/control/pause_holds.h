// Who holds a VM's pause on the control channel. A pause asked on a connection lasts until a
// `resume` (from any connection) or until every connection that asked for it has closed, unless
// one asked for a lasting pause (warm clones kept paused by the manager, `wisp vm pause`), which
// only `resume` ends. So a client that dies between its pause and its resume (a killed CLI, a
// crashed manager) cannot leave the VM frozen for good.
//
// Plain bookkeeping, no VM: ControlSessions asks it and pauses or resumes the machine.
// Thread rules: the control socket's RPC thread only.
#pragma once

#include <cstdint>
#include <set>

namespace wisp {

class PauseHolds {
 public:
  using ConnectionId = uint64_t;

  // Connection `c` paused the VM (the pause succeeded); `lasting`: it outlives `c`.
  void paused(ConnectionId c, bool lasting);
  // The VM was resumed: nobody holds a pause any more.
  void resumed();
  // Connection `c` closed. True when that ended the pause (it was the last holder and no
  // lasting pause was asked): the caller resumes the VM.
  bool closed(ConnectionId c);

  bool held() const { return lasting_ || !holders_.empty(); }
  bool lasting() const { return lasting_; }

 private:
  std::set<ConnectionId> holders_;  // connections whose pause ends with them
  bool lasting_ = false;
};

}  // namespace wisp
