// The host side of virtio-vsock, bridged to Unix sockets the way Firecracker does it:
//  - host-initiated: a host process connects to the VM's socket PATH and writes
//    "CONNECT <guest port>\n"; once the guest accepts, it reads "OK <host port>\n" and the
//    socket carries the stream.
//  - guest-initiated: the guest connects to CID 2 port P; we connect to "PATH_P".
// The muxer owns the listener, the connections (keyed by host port and guest port) and its own
// epoll set, which the VMM's event loop watches as one fd. Owning the epoll set means
// connections come and go without touching the event loop (not thread-safe to modify) and
// with no syscall beyond epoll_ctl on our own set.
//
// Not thread-safe: the device calls it with its lock held, from the event-loop thread (backend
// events, queue kicks) or from a vCPU thread (reset).
//
// What a guest and local clients can make it hold, at most (the bound on a VMM's vsock memory):
//  - guest-to-host bytes the host end has not taken yet: each connection buffers at most the
//    buf_alloc it advertised. The first kFullBufferBudget / kBufAlloc connections (128) get
//    256 KiB, later ones 16 KiB while the budget is spent, so all rings together stay under
//    kFullBufferBudget + kMaxConnections * kMinBufAlloc = 32 + 16 = 48 MiB;
//  - host-to-guest bytes: none (read from the socket straight into the guest's RX buffers);
//  - per connection a few hundred bytes of state, and kMaxConnectLine bytes per pending CONNECT
//    line; kMaxControlBacklog RST headers.
// Each connection is one fd: the muxer raises RLIMIT_NOFILE to kFilesNeeded where it can (the
// jail sets it before dropping privileges).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/virtio/vsock/vsock_connection.h"
#include "vmm/virtio/vsock/vsock_packet.h"
#include "vmm/virtio/vsock/vsock_state.h"

namespace wisp {

// Parses a guest CID in decimal: throws Error for garbage, 0, 1, 2 (reserved) and values
// >= 2^32 - 1 (VMADDR_CID_ANY and beyond).
uint64_t parse_vsock_cid(std::string_view text);
// Throws Error when `config` cannot work: what config.validate() refuses, or an empty path.
void validate_vsock_config(const VsockSpec& config);

// "CONNECT <port>" (the line without its '\n'; a trailing '\r' is tolerated): the port, or
// nullopt for anything else.
std::optional<uint32_t> parse_connect_line(std::string_view line);

class VsockMuxer {
 public:
  // Live connections plus host connections still sending their CONNECT line.
  static constexpr size_t kMaxConnections = 1024;
  // RSTs for packets of unknown connections, waiting for RX buffers. While full, the device
  // stops taking TX packets, so a guest cannot grow it.
  static constexpr size_t kMaxControlBacklog = 256;
  // The longest CONNECT line, newline included.
  static constexpr size_t kMaxConnectLine = 32;
  // Host ports we hand out for host-initiated connections start here.
  static constexpr uint32_t kFirstHostPort = 1u << 30;
  // How long a host connection has to send its CONNECT line: one that does not is closed, so
  // idle clients cannot hold connection slots (and fds).
  static constexpr uint64_t kConnectLineTimeoutMs = 2000;
  // After accept() fails for lack of fds or memory the listener is not watched for this long:
  // the backlog stays readable, and a level-triggered loop would spin on it.
  static constexpr uint64_t kAcceptBackoffMs = 100;
  // How long a held CONNECT (hold_connects) waits for the guest to handle its transport reset.
  // One held longer is closed and holding ends: a guest that does not refill its event queue
  // gets host connections at once again, as without the hold. Generous: a connection let
  // through before the guest handled the reset would be reset by it, and serve sends its first
  // calls on a new connection without confirming it (a client that stops waiting earlier just
  // closes, which frees its slot, and dials again).
  static constexpr uint64_t kResetHoldMs = 10000;
  // Ring bytes handed out as full-size (VsockConnection::kBufAlloc) buffers; see above.
  static constexpr uint64_t kFullBufferBudget = 32ull << 20;
  // RLIMIT_NOFILE the connection cap needs: the connections plus the VMM's own fds (vCPUs,
  // eventfds, drives, sockets).
  static constexpr uint64_t kFilesNeeded = kMaxConnections + 256;

  // Binds and listens on config.uds_path (a stale socket file nobody listens on is replaced).
  // Throws Error.
  explicit VsockMuxer(const VsockSpec& config);
  ~VsockMuxer();
  VsockMuxer(const VsockMuxer&) = delete;
  VsockMuxer& operator=(const VsockMuxer&) = delete;

  // Watch for EPOLLIN on the event loop; call handle_events() when it fires.
  int epoll_fd() const { return epoll_.get(); }
  // Accepts host connections, reads CONNECT lines, notes stream readiness, fires timeouts.
  void handle_events();

  // A packet from the guest's TX queue (validated or not). Returns false when it broke the
  // protocol, for the device's error counter.
  bool on_guest_packet(const TxPacket& packet);

  bool has_rx() const { return !control_.empty() || !rx_order_.empty(); }
  // The next packet for the guest: fills `hdr` (all fields) and reads its payload into `data`.
  // false when there was nothing to send after all.
  bool next_rx(VsockHeader* hdr, std::span<const std::span<uint8_t>> data);
  // The RST backlog is full: stop taking TX packets until RX buffers drain it.
  bool backlog_full() const { return control_.size() >= kMaxControlBacklog; }

  // Drops every connection, pending CONNECT and owed packet; the listener stays. For a device
  // reset and for the transport-reset event.
  void reset_all();

  // From now on, complete CONNECT lines wait (are held) instead of becoming REQUESTs: the device
  // has posted (or will post) a TRANSPORT_RESET the guest has not handled yet, and the guest
  // resets every connection it has when it does, a new one too; the host would have to notice
  // and dial again. The host's client thus waits for its OK instead of retrying.
  void hold_connects();
  // The guest handled the reset: held connections go to the guest (their REQUESTs queue) and
  // new ones pass as they come.
  void release_held();
  bool holding() const { return holding_; }
  void set_reset_hold_ms(uint64_t ms) { reset_hold_ms_ = ms; }  // for tests
  size_t held_count() const;

  uint64_t guest_cid() const { return guest_cid_; }
  // For snapshot restore: the guest keeps the CID it had. Throws Error for a reserved or
  // out-of-range CID (as VsockState::validate does).
  void set_guest_cid(uint64_t cid);
  size_t connection_count() const { return conns_.size(); }
  size_t pending_host_count() const { return pending_.size(); }
  // Ring bytes the open connections may buffer (the sum of their buf_alloc).
  uint64_t buffer_granted() const { return buffer_granted_; }
  // accept() failed for lack of resources and the listener rests (kAcceptBackoffMs).
  bool listener_paused() const { return listener_resume_ms_ != 0; }

 private:
  using Key = uint64_t;  // host port << 32 | guest port
  static Key key_of(uint32_t host_port, uint32_t guest_port) {
    return static_cast<uint64_t>(host_port) << 32 | guest_port;
  }
  struct Entry {
    std::unique_ptr<VsockConnection> conn;
    int fd = -1;          // registered in epoll_ (-1: not)
    uint32_t events = 0;  // what it is registered for
    bool queued = false;  // in rx_order_
  };
  // A host connection that has not finished its CONNECT line.
  struct PendingHost {
    UniqueFd fd;
    std::string line;
    uint64_t deadline_ms = 0;  // closed if the line is not complete (or still held) by then
    bool held = false;         // the line is complete: waits for release_held() with `port`
    uint32_t port = 0;
  };

  void accept_host_connections();
  void pause_listener(int err);
  void expire_pending(uint64_t now);
  void drop_pending(int fd);
  uint32_t grant_buffer();
  void on_pending_readable(int fd);
  void on_pending_events(int fd, uint32_t events);
  void hold(int fd, uint32_t port);
  void start_host_connection(UniqueFd fd, uint32_t guest_port);
  void connect_to_host(const VsockHeader& request);
  void queue_rst(const VsockHeader& to_answer);
  // Brings epoll, the RX order and the timer in line with the connection's wishes; forgets it
  // when finished.
  void refresh(Key key);
  void forget(Key key);
  void on_timer();
  void arm_timer(uint64_t deadline_ms);
  uint32_t allocate_host_port();
  bool at_capacity() const { return conns_.size() + pending_.size() >= kMaxConnections; }

  const std::string uds_path_;
  uint64_t guest_cid_;
  UniqueFd listener_;
  UniqueFd epoll_;
  UniqueFd timer_;
  uint64_t timer_deadline_ms_ = 0;   // 0: disarmed
  uint64_t listener_resume_ms_ = 0;  // 0: the listener is watched
  uint64_t buffer_granted_ = 0;
  bool holding_ = false;
  uint64_t reset_hold_ms_ = kResetHoldMs;

  std::unordered_map<Key, Entry> conns_;
  std::unordered_map<int, Key> by_fd_;
  std::unordered_map<int, PendingHost> pending_;
  std::unordered_set<uint32_t> host_ports_in_use_;
  uint32_t next_host_port_ = kFirstHostPort;
  std::deque<Key> rx_order_;         // connections with something to send, round robin
  std::deque<VsockHeader> control_;  // RSTs not tied to a live connection
};

}  // namespace wisp
