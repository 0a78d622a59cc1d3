// The VMM's control socket: serves api/vmm.capnp (Cap'n Proto RPC, two-party) on a Unix socket
// for the manager (`wisp snapshot create`, `wisp template create`, later `wisp serve`).
//
// Threads: RPC runs on a thread of its own with a KJ event loop, born with every signal blocked
// (stop signals belong to the VMM's signalfd, the vCPU kick to the vCPU threads). Each call is
// handed to the VMM's event loop with EventLoop::run_on_loop and runs there, between device
// events, so a pause or a snapshot never races a device writing guest memory. Calls are served
// one at a time; a call made while the VM is stopping fails with "the VM is stopping".
//
// Who may connect: the socket file is owner-only (0600), and each connection's peer (SO_PEERCRED)
// must be root or `owner`, the uid that started the VM (the jailed VMM itself runs as a leased
// uid, so its own uid says nothing); any other peer is closed at once, with a warning.
//
// Connections pass descriptors (SCM_RIGHTS, at most Vmm.maxFdsPerMessage a request): the
// manager hands the VMM the files a snapshot goes into, since a jailed VMM can neither see nor
// create them; they are the only place a snapshot is written (control_sessions.h checks them).
// A pause belongs to the connection that asked for it (pause_holds.h).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "api/vmm_control.h"
#include "base/unique_fd.h"
#include "vmm/event/event_loop.h"

namespace wisp {

class ControlServer {
 public:
  // At most this many connections at once; more are closed as they arrive.
  static constexpr size_t kMaxClients = 8;

  // Binds and listens on `path`, owner-only (0600); connections wait in the backlog until
  // start(). A socket file already at `path` is replaced only when it is stale (connect()
  // refused: its VMM is gone); a live one is an Error naming the path, as is anything else
  // there. `owner`: the uid allowed to connect besides root. `loop` and `service` must
  // outlive this. Throws Error naming the path when it cannot listen.
  ControlServer(std::string path, EventLoop& loop, control::Service& service, uid_t owner);
  // Stops serving (calls waiting for the loop fail), joins the thread, removes the socket file.
  ~ControlServer();

  // Starts the RPC thread ("vmm-control"), which runs `on_thread_start` first (the jail
  // installs its seccomp filter there) and then serves. Separate from the constructor so that
  // no thread exists while the VMM drops its privileges. Returns once the thread is serving;
  // throws Error if `on_thread_start` threw. Once only.
  void start(std::function<void()> on_thread_start = {});
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  struct Thread;
  std::string path_;
  EventLoop& loop_;
  control::Service& service_;
  uid_t owner_;
  UniqueFd listen_fd_;  // until start() hands it to the thread
  std::unique_ptr<Thread> thread_;
};

}  // namespace wisp
