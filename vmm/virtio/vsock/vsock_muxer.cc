#include "vmm/virtio/vsock/vsock_muxer.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "base/unix_socket.h"

namespace wisp {

using namespace vsock;  // NOLINT: op codes

namespace {

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// A connected Unix stream socket (non-blocking) as a connection's host end.
class UnixStream final : public VsockStream {
 public:
  explicit UnixStream(UniqueFd fd) : fd_(std::move(fd)) {}

  ssize_t read(std::span<const std::span<uint8_t>> bufs) override {
    iovec iov[64];
    size_t n = to_iov(bufs, iov);
    ssize_t r = ::readv(fd_.get(), iov, static_cast<int>(n));
    return r < 0 ? -errno : r;
  }
  ssize_t write(std::span<const std::span<const uint8_t>> bufs) override {
    iovec iov[64];
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = to_iov(bufs, iov);
    // MSG_NOSIGNAL: a host process that went away must give us EPIPE, not SIGPIPE.
    ssize_t r = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    return r < 0 ? -errno : r;
  }
  void shutdown_write() override { ::shutdown(fd_.get(), SHUT_WR); }
  int fd() const override { return fd_.get(); }

 private:
  // At most 64 pieces per call: the rest is simply a short transfer.
  template <typename T>
  static size_t to_iov(std::span<const std::span<T>> bufs, iovec (&iov)[64]) {
    size_t n = std::min<size_t>(bufs.size(), 64);
    for (size_t i = 0; i < n; ++i) iov[i] = {const_cast<uint8_t*>(bufs[i].data()), bufs[i].size()};
    return n;
  }

  UniqueFd fd_;
};

bool make_address(const std::string& path, sockaddr_un* addr) {
  return !path.empty() && unix_address(path, addr);
}

// A socket file that nobody listens on any more (a VMM that died): safe to replace.
bool is_stale_socket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_un addr;
  if (!make_address(path, &addr)) return false;
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return false;
  return connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
         errno == ECONNREFUSED;
}

// Raises RLIMIT_NOFILE's soft limit to `need` (and the hard one too, which takes
// CAP_SYS_RESOURCE); where the hard limit stays lower, up to it, and says so.
void raise_file_limit(uint64_t need) {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= need) return;
  rlimit want{need, std::max<rlim_t>(r.rlim_max, need)};
  if (setrlimit(RLIMIT_NOFILE, &want) == 0) return;
  want = {r.rlim_max, r.rlim_max};
  setrlimit(RLIMIT_NOFILE, &want);
  LOG_WARN(
      "vsock: RLIMIT_NOFILE is %llu, below the %llu the connection cap needs; host "
      "connections beyond it are refused until others close",
      static_cast<unsigned long long>(r.rlim_max), static_cast<unsigned long long>(need));
}

}  // namespace

// ---- Configuration helpers ------------------------------------------------------------------

uint64_t parse_vsock_cid(std::string_view text) {
  uint64_t cid = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), cid);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    throw Error("--vsock-cid: '" + std::string(text) + "' is not a decimal number");
  if (cid < kMinGuestCid || cid > kMaxGuestCid)
    throw Error("--vsock-cid: " + std::string(text) +
                " is reserved or out of range: use 3 to 4294967294 (0-2 are the hypervisor, "
                "local and host CIDs)");
  return cid;
}

void validate_vsock_config(const VsockSpec& config) {
  if (config.uds_path.empty()) throw Error("--vsock-uds: the socket path is empty");
  config.validate();
}

std::optional<uint32_t> parse_connect_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  constexpr std::string_view kVerb = "CONNECT ";
  if (!line.starts_with(kVerb)) return std::nullopt;
  std::string_view digits = line.substr(kVerb.size());
  if (digits.empty() || digits.size() > 10 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  uint64_t port = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (port >= 0xffff'ffffull) return std::nullopt;  // VMADDR_PORT_ANY and beyond: no listener
  return static_cast<uint32_t>(port);
}

void VsockMuxer::set_guest_cid(uint64_t cid) {
  VsockState{cid}.validate();
  guest_cid_ = cid;
}

// ---- Construction ---------------------------------------------------------------------------

VsockMuxer::VsockMuxer(const VsockSpec& config)
    : uds_path_(config.uds_path), guest_cid_(config.guest_cid) {
  validate_vsock_config(config);
  raise_file_limit(kFilesNeeded);
  epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw_errno("vsock: epoll_create1");
  timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) throw_errno("vsock: timerfd_create");
  listener_ = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener_) throw_errno("vsock: socket");
  sockaddr_un addr;
  make_address(uds_path_, &addr);
  if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EADDRINUSE || !is_stale_socket(uds_path_))
      throw Error(errno_message("vsock: cannot bind " + uds_path_ +
                                " (remove it if no VMM uses it, or pick another --vsock-uds)"));
    ::unlink(uds_path_.c_str());
    if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      throw_errno("vsock: bind " + uds_path_);
  }
  if (listen(listener_.get(), 128) != 0) throw_errno("vsock: listen on " + uds_path_);
  for (int fd : {listener_.get(), timer_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("vsock: epoll_ctl");
  }
}

VsockMuxer::~VsockMuxer() {
  if (listener_) ::unlink(uds_path_.c_str());
}

// ---- Backend events -------------------------------------------------------------------------

void VsockMuxer::handle_events() {
  epoll_event events[64];
  int n = epoll_wait(epoll_.get(), events, 64, 0);
  uint64_t now = now_ms();
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == listener_.get()) {
      accept_host_connections();
    } else if (fd == timer_.get()) {
      on_timer();
    } else if (pending_.count(fd)) {
      on_pending_events(fd, events[i].events);
    } else if (auto it = by_fd_.find(fd); it != by_fd_.end()) {
      Key key = it->second;
      conns_.at(key).conn->on_stream_events(events[i].events, now);
      refresh(key);
    }
  }
}

void VsockMuxer::accept_host_connections() {
  for (int i = 0; i < 16; ++i) {  // bounded: the loop comes back while more are waiting
    UniqueFd fd(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      int err = errno;
      if (err == ECONNABORTED || err == EINTR) continue;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) pause_listener(err);
      return;  // EAGAIN: the backlog is empty
    }
    if (at_capacity()) {
      LOG_WARN("vsock: %zu connections open; refusing a host connection", conns_.size());
      continue;  // closed: the host process sees end of file
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) continue;
    int raw = fd.get();
    PendingHost& p = pending_[raw];
    p.fd = std::move(fd);
    p.deadline_ms = now_ms() + kConnectLineTimeoutMs;
    arm_timer(p.deadline_ms);
  }
}

void VsockMuxer::pause_listener(int err) {
  // The connection waits in the backlog; level-triggered epoll would report it again at once.
  LOG_WARN("vsock: accept on %s: %s; not accepting for %llu ms", uds_path_.c_str(),
           std::strerror(err), static_cast<unsigned long long>(kAcceptBackoffMs));
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
  listener_resume_ms_ = now_ms() + kAcceptBackoffMs;
  arm_timer(listener_resume_ms_);
}

void VsockMuxer::on_pending_events(int fd, uint32_t events) {
  PendingHost& p = pending_.at(fd);
  if (!p.held) {
    on_pending_readable(fd);
    return;
  }
  // Held: watched for hang-up only (its stream bytes wait in the socket). A client that gave
  // up frees its slot now, not at the deadline.
  if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
    LOG_DEBUG("vsock: a held host connection to port %u closed", p.port);
    drop_pending(fd);
  }
}

void VsockMuxer::hold(int fd, uint32_t port) {
  PendingHost& p = pending_.at(fd);
  p.held = true;
  p.port = port;
  p.deadline_ms = now_ms() + reset_hold_ms_;
  epoll_event ev{};
  ev.events = EPOLLRDHUP;  // not EPOLLIN: bytes after the line are the stream's, left queued
  ev.data.fd = fd;
  // Added afresh: on_pending_readable took it out of the set with the rest of its pending entry.
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    drop_pending(fd);
    return;
  }
  arm_timer(p.deadline_ms);
}

size_t VsockMuxer::held_count() const {
  size_t n = 0;
  for (const auto& [fd, p] : pending_) n += p.held;
  return n;
}

void VsockMuxer::hold_connects() { holding_ = true; }

void VsockMuxer::release_held() {
  holding_ = false;
  std::vector<int> held;
  for (const auto& [fd, p] : pending_)
    if (p.held) held.push_back(fd);
  // In the order they came (fds are no measure of that, deadlines are).
  std::sort(held.begin(), held.end(), [this](int a, int b) {
    return pending_.at(a).deadline_ms < pending_.at(b).deadline_ms;
  });
  for (int fd : held) {
    PendingHost& p = pending_.at(fd);
    UniqueFd owned = std::move(p.fd);
    uint32_t port = p.port;
    drop_pending(fd);
    start_host_connection(std::move(owned), port);
  }
}

void VsockMuxer::on_pending_readable(int fd) {
  PendingHost& p = pending_.at(fd);
  char buf[kMaxConnectLine];
  size_t room = kMaxConnectLine - p.line.size();
  // Peek first: bytes after the newline already belong to the stream and must stay queued.
  ssize_t n = recv(fd, buf, room, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  const char* nl = n > 0 ? static_cast<const char*>(std::memchr(buf, '\n', n)) : nullptr;
  size_t take =
      nl ? static_cast<size_t>(nl - buf) + 1 : static_cast<size_t>(std::max<ssize_t>(n, 0));
  if (n > 0 && recv(fd, buf, take, 0) != static_cast<ssize_t>(take)) n = -1;
  if (n > 0) p.line.append(buf, nl ? take - 1 : take);
  std::optional<uint32_t> port;
  if (nl && n > 0) port = parse_connect_line(p.line);
  if (n > 0 && !nl && p.line.size() < kMaxConnectLine) return;  // line not complete yet
  // Complete (or broken): leave the pending set either way.
  UniqueFd owned = std::move(p.fd);
  std::string line = std::move(p.line);
  drop_pending(fd);
  if (!port) {
    LOG_DEBUG("vsock: closing a host connection: bad CONNECT line '%.32s'", line.c_str());
    return;  // `owned` closes it
  }
  if (holding_) {
    int raw = owned.get();
    PendingHost& held = pending_[raw];
    held.fd = std::move(owned);
    held.line = std::move(line);
    hold(raw, *port);
    return;
  }
  start_host_connection(std::move(owned), *port);
}

void VsockMuxer::drop_pending(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  pending_.erase(fd);  // closes the fd unless the caller took it
}

void VsockMuxer::expire_pending(uint64_t now) {
  std::vector<int> late;
  uint64_t next = 0;
  bool held_expired = false;
  for (const auto& [fd, p] : pending_) {
    if (p.deadline_ms <= now) {
      late.push_back(fd);
      held_expired |= p.held;
    } else if (next == 0 || p.deadline_ms < next) {
      next = p.deadline_ms;
    }
  }
  for (int fd : late) {
    if (pending_.at(fd).held)
      LOG_DEBUG(
          "vsock: closing a held host connection: the guest did not handle its transport "
          "reset within %llu ms",
          static_cast<unsigned long long>(reset_hold_ms_));
    else
      LOG_DEBUG("vsock: closing a host connection: no CONNECT line within %llu ms",
                static_cast<unsigned long long>(kConnectLineTimeoutMs));
    drop_pending(fd);
  }
  if (held_expired) {
    // The guest may never handle it (no event buffer posted): stop holding, as without the
    // hold. The client whose connect was closed dials again and goes through.
    LOG_WARN(
        "vsock: the guest did not handle the transport reset within %llu ms; host "
        "connections are no longer held for it",
        static_cast<unsigned long long>(reset_hold_ms_));
    release_held();
  }
  if (next != 0) arm_timer(next);
}

uint32_t VsockMuxer::grant_buffer() {
  uint32_t grant = buffer_granted_ + VsockConnection::kBufAlloc <= kFullBufferBudget
                       ? VsockConnection::kBufAlloc
                       : VsockConnection::kMinBufAlloc;
  buffer_granted_ += grant;
  return grant;
}

void VsockMuxer::start_host_connection(UniqueFd fd, uint32_t guest_port) {
  uint32_t port = allocate_host_port();
  Key key = key_of(port, guest_port);
  host_ports_in_use_.insert(port);
  Entry& e = conns_[key];
  e.conn = VsockConnection::host_initiated(
      port, guest_port, std::make_unique<UnixStream>(std::move(fd)), grant_buffer());
  refresh(key);
}

uint32_t VsockMuxer::allocate_host_port() {
  // At most kMaxConnections ports are in use, so this ends quickly.
  while (true) {
    uint32_t p = next_host_port_;
    next_host_port_ = p >= 0xffff'fffeu ? kFirstHostPort : p + 1;
    if (!host_ports_in_use_.count(p)) return p;
  }
}

// ---- Guest packets --------------------------------------------------------------------------

bool VsockMuxer::on_guest_packet(const TxPacket& p) {
  const VsockHeader& h = p.hdr;
  Key key = key_of(h.dst_port, h.src_port);
  auto it = conns_.find(key);
  if (p.error != PacketError::kNone) {
    if (packet_error_wants_rst(p.error)) {
      if (it != conns_.end()) {
        it->second.conn->kill();
        refresh(key);
      } else if (h.op != kOpRst) {
        queue_rst(h);
      }
    }
    return false;
  }
  if (it == conns_.end()) {
    if (h.op == kOpRequest) {
      connect_to_host(h);
    } else if (h.op != kOpRst) {
      queue_rst(h);  // e.g. a connection we already dropped: tell the guest it is gone
    }
    return true;
  }
  bool ok = it->second.conn->on_guest_packet(h, p.payload, now_ms());
  refresh(key);
  return ok;
}

void VsockMuxer::connect_to_host(const VsockHeader& request) {
  if (at_capacity()) {
    LOG_WARN("vsock: %zu connections open; refusing the guest's connection to port %u",
             conns_.size(), request.dst_port);
    queue_rst(request);
    return;
  }
  std::string path = uds_path_ + "_" + std::to_string(request.dst_port);
  sockaddr_un addr;
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  // Non-blocking: a Unix connect completes at once or fails (EAGAIN: the backlog is full);
  // the event loop never waits on a host listener.
  if (!fd || !make_address(path, &addr) ||
      connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    LOG_DEBUG("vsock: guest connection to port %u: %s: %s", request.dst_port, path.c_str(),
              std::strerror(errno));
    queue_rst(request);
    return;
  }
  Key key = key_of(request.dst_port, request.src_port);
  Entry& e = conns_[key];
  e.conn = VsockConnection::guest_initiated(request, std::make_unique<UnixStream>(std::move(fd)),
                                            grant_buffer());
  refresh(key);
}

void VsockMuxer::queue_rst(const VsockHeader& to_answer) {
  // Bounded by the device, which stops taking TX packets while this is full; dropping here is
  // the last resort (the guest times the connection out instead).
  if (control_.size() >= kMaxControlBacklog) return;
  control_.push_back(make_rx_header(guest_cid_, to_answer.dst_port, to_answer.src_port, kOpRst));
}

// ---- Bookkeeping ----------------------------------------------------------------------------

void VsockMuxer::refresh(Key key) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  Entry& e = it->second;
  VsockConnection& c = *e.conn;
  int fd = c.watched_fd();
  uint32_t want = fd >= 0 ? c.epoll_events() : 0;
  if (e.fd != fd) {
    if (e.fd >= 0) {
      // Fails harmlessly when the connection already closed it (close removes it from epoll).
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, e.fd, nullptr);
      by_fd_.erase(e.fd);
      e.fd = -1;
    }
    if (fd >= 0) {
      epoll_event ev{};
      ev.events = want;  // 0 still reports HUP and ERR: how we learn the host went away
      ev.data.fd = fd;
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0) {
        e.fd = fd;
        e.events = want;
        by_fd_[fd] = key;
      } else {
        c.kill();
      }
    }
  } else if (fd >= 0 && want != e.events) {
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
    e.events = want;
  }
  if (c.finished()) {
    forget(key);
    return;
  }
  if (!e.queued && c.has_rx()) {
    rx_order_.push_back(key);
    e.queued = true;
  }
  if (c.deadline_ms() != 0) arm_timer(c.deadline_ms());
}

void VsockMuxer::forget(Key key) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  if (it->second.fd >= 0) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
    by_fd_.erase(it->second.fd);
  }
  uint32_t port = it->second.conn->host_port();
  if (port >= kFirstHostPort) host_ports_in_use_.erase(port);
  buffer_granted_ -= it->second.conn->buf_alloc();
  conns_.erase(it);  // a stale key left in rx_order_ is skipped
}

void VsockMuxer::arm_timer(uint64_t deadline_ms) {
  if (timer_deadline_ms_ != 0 && timer_deadline_ms_ <= deadline_ms) return;
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(deadline_ms / 1000);
  its.it_value.tv_nsec = static_cast<long>(deadline_ms % 1000) * 1000000;
  if (timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &its, nullptr) == 0)
    timer_deadline_ms_ = deadline_ms;
}

void VsockMuxer::on_timer() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t r = ::read(timer_.get(), &expirations, sizeof(expirations));
  timer_deadline_ms_ = 0;
  uint64_t now = now_ms();
  expire_pending(now);
  if (listener_resume_ms_ != 0) {
    if (listener_resume_ms_ <= now) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = listener_.get();
      epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev);
      listener_resume_ms_ = 0;
    } else {
      arm_timer(listener_resume_ms_);
    }
  }
  std::vector<Key> due;
  for (auto& [key, e] : conns_)
    if (e.conn->deadline_ms() != 0) due.push_back(key);
  // Each refresh re-arms the timer for deadlines still ahead.
  for (Key key : due) {
    conns_.at(key).conn->on_timer(now);
    refresh(key);
  }
}

bool VsockMuxer::next_rx(VsockHeader* hdr, std::span<const std::span<uint8_t>> data) {
  if (!control_.empty()) {
    *hdr = control_.front();
    control_.pop_front();
    return true;
  }
  uint64_t now = now_ms();
  // Round robin: a connection that sent something goes to the back if it has more.
  for (size_t tries = rx_order_.size(); tries > 0 && !rx_order_.empty(); --tries) {
    Key key = rx_order_.front();
    rx_order_.pop_front();
    auto it = conns_.find(key);
    if (it == conns_.end()) continue;
    it->second.queued = false;
    bool got = it->second.conn->next_rx(hdr, data, now);
    refresh(key);
    if (got) {
      hdr->src_cid = kHostCid;
      hdr->dst_cid = guest_cid_;
      return true;
    }
  }
  return false;
}

void VsockMuxer::reset_all() {
  // Destroying the streams closes their fds, which also takes them out of epoll_.
  conns_.clear();
  by_fd_.clear();
  pending_.clear();
  host_ports_in_use_.clear();
  rx_order_.clear();
  control_.clear();
  buffer_granted_ = 0;
  itimerspec off{};
  timerfd_settime(timer_.get(), 0, &off, nullptr);
  timer_deadline_ms_ = 0;
  if (listener_resume_ms_ != 0) arm_timer(listener_resume_ms_);  // still resting
}

}  // namespace wisp
