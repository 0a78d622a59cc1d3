// virtio-vsock end to end, in process: the device with its real Unix-socket back-end in a temp
// dir, the mock driver playing the guest's virtio_transport, and test code playing the host
// processes. The event loop is replaced by pump(), which runs the device's backend handler
// while its epoll fd is readable.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/jail/jail.h"
#include "vmm/virtio/vsock/vsock.h"

namespace wisp {
namespace {

using namespace vsock;  // NOLINT: op codes
using testing::DeviceHarness;
using testing::readable;
using testing::writable;

constexpr uint64_t kCid = 7;
constexpr uint32_t kRxBufBytes = 4096;  // what Linux posts per RX buffer

struct Packet {
  VsockHeader hdr;
  std::string data;
};

int unix_connect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
  return fd;
}

int unix_listen(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd, 8), 0);
  return fd;
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what is available now (the fd is made non-blocking).
std::string read_now(int fd) {
  set_nonblocking(fd);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

// The other end closed: end of file, or ECONNRESET when it closed with our bytes unread.
bool at_eof(int fd) {
  set_nonblocking(fd);
  char c;
  ssize_t n = ::read(fd, &c, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

class VsockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wisp-vsock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/v.sock";
    dev_ = std::make_unique<VirtioVsock>(VsockSpec{path_, kCid});
    h_ = std::make_unique<DeviceHarness>(*dev_);
    ASSERT_TRUE(h_->activated());
    post_rx(16);
  }
  void TearDown() override {
    h_.reset();
    dev_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Guest side ---------------------------------------------------------------------------
  // Posts `n` RX buffers the way Linux 6.1 does: header and data in separate descriptors.
  void post_rx(int n) {
    for (int i = 0; i < n; ++i) {
      uint64_t hdr = h_->q(0).alloc(kHeaderBytes), data = h_->q(0).alloc(kRxBufBytes);
      uint16_t head =
          h_->q(0).add_chain({writable(hdr, kHeaderBytes), writable(data, kRxBufBytes)});
      rx_bufs_[head] = {hdr, data};
    }
    h_->kick(0);
  }
  // Takes every packet the device returned, reposting each buffer.
  std::vector<Packet> take() {
    std::vector<Packet> out;
    while (rx_seen_ != h_->q(0).used_idx()) {
      auto [head, len] = h_->q(0).used_elem(rx_seen_++);
      auto [hdr_addr, data_addr] = rx_bufs_.at(static_cast<uint16_t>(head));
      EXPECT_GE(len, kHeaderBytes);
      auto raw = h_->q(0).bytes(hdr_addr, kHeaderBytes);
      Packet p{
          decode_vsock_header(std::span<const uint8_t, kHeaderBytes>(raw.data(), kHeaderBytes)),
          ""};
      EXPECT_EQ(len, kHeaderBytes + p.hdr.len);
      EXPECT_EQ(p.hdr.src_cid, kHostCid);
      EXPECT_EQ(p.hdr.dst_cid, kCid);
      auto data = h_->q(0).bytes(data_addr, p.hdr.len);
      p.data.assign(data.begin(), data.end());
      if (p.hdr.op == kOpRw) guest_rx_bytes_ += p.hdr.len;
      out.push_back(std::move(p));
      uint16_t again =
          h_->q(0).add_chain({writable(hdr_addr, kHeaderBytes), writable(data_addr, kRxBufBytes)});
      rx_bufs_[again] = {hdr_addr, data_addr};
    }
    h_->kick(0);
    return out;
  }
  Packet take_one() {
    auto v = take();
    EXPECT_EQ(v.size(), 1u);
    return v.empty() ? Packet{} : v[0];
  }
  void send(uint32_t guest_port, uint32_t host_port, uint16_t op, const std::string& data = "",
            uint32_t flags = 0) {
    VsockHeader h;
    h.src_cid = kCid;
    h.dst_cid = kHostCid;
    h.src_port = guest_port;
    h.dst_port = host_port;
    h.type = kTypeStream;
    h.op = op;
    h.flags = flags;
    h.len = static_cast<uint32_t>(data.size());
    h.buf_alloc = guest_buf_alloc_;
    h.fwd_cnt = guest_rx_bytes_;  // this guest consumes everything at once
    send_raw(h, data);
  }
  void send_raw(const VsockHeader& h, const std::string& data) {
    if (!tx_hdr_) {
      tx_hdr_ = h_->q(1).alloc(kHeaderBytes);
      tx_data_ = h_->q(1).alloc(kMaxPayload);
    }
    uint8_t raw[kHeaderBytes];
    encode_vsock_header(h, raw);
    h_->q(1).put(tx_hdr_, raw, kHeaderBytes);
    if (data.empty()) {
      h_->q(1).add_chain({readable(tx_hdr_, kHeaderBytes)});
    } else {
      h_->q(1).put(tx_data_, data.data(), data.size());
      h_->q(1).add_chain({readable(tx_hdr_, kHeaderBytes),
                          readable(tx_data_, static_cast<uint32_t>(data.size()))});
    }
    h_->kick(1);
  }

  // Host side ----------------------------------------------------------------------------
  // What the event loop does with the device's back-end fd.
  void pump() {
    std::vector<BackendFd> backend = dev_->backend_fds();
    ASSERT_EQ(backend.size(), 1u);
    for (int i = 0; i < 100; ++i) {
      pollfd p{backend[0].fd, POLLIN, 0};
      if (poll(&p, 1, 0) <= 0) return;
      backend[0].on_readable();
    }
  }
  // A host process connects to the VM's socket and asks for `port`; returns the fd and the
  // host port the guest sees in the REQUEST.
  int host_connect(uint32_t guest_port, uint32_t* host_port) {
    int fd = unix_connect(path_);
    std::string line = "CONNECT " + std::to_string(guest_port) + "\n";
    EXPECT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    pump();
    Packet p = take_one();
    EXPECT_EQ(p.hdr.op, kOpRequest);
    EXPECT_EQ(p.hdr.dst_port, guest_port);
    EXPECT_GE(p.hdr.src_port, VsockMuxer::kFirstHostPort);
    *host_port = p.hdr.src_port;
    return fd;
  }

  std::string dir_, path_;
  std::unique_ptr<VirtioVsock> dev_;
  std::unique_ptr<DeviceHarness> h_;
  std::map<uint16_t, std::pair<uint64_t, uint64_t>> rx_bufs_;
  uint16_t rx_seen_ = 0;
  uint64_t tx_hdr_ = 0, tx_data_ = 0;
  uint32_t guest_buf_alloc_ = 256 * 1024;
  uint32_t guest_rx_bytes_ = 0;
};

TEST_F(VsockDeviceTest, Identity) {
  EXPECT_EQ(dev_->device_type(), 19u);
  EXPECT_EQ(dev_->num_queues(), 3);
  uint64_t cid = 0;
  dev_->read_config(0, {reinterpret_cast<uint8_t*>(&cid), 8});
  EXPECT_EQ(cid, kCid);
  uint32_t hi = 1;
  dev_->read_config(4, {reinterpret_cast<uint8_t*>(&hi), 4});
  EXPECT_EQ(hi, 0u);
}

TEST_F(VsockDeviceTest, HostInitiatedConnectionEndToEnd) {
  uint32_t hp;
  int fd = host_connect(52, &hp);
  send(52, hp, kOpResponse);
  std::string ok = "OK " + std::to_string(hp) + "\n";
  EXPECT_EQ(read_now(fd), ok);
  // Host -> guest.
  ASSERT_EQ(::write(fd, "ping", 4), 4);
  pump();
  Packet p = take_one();
  EXPECT_EQ(p.hdr.op, kOpRw);
  EXPECT_EQ(p.data, "ping");
  EXPECT_EQ(p.hdr.src_port, hp);
  // Guest -> host.
  send(52, hp, kOpRw, "pong");
  EXPECT_EQ(read_now(fd), "pong");
  // The host closes: the guest hears SHUTDOWN (both), answers RST, and the connection is gone.
  ::close(fd);
  pump();
  p = take_one();
  EXPECT_EQ(p.hdr.op, kOpShutdown);
  EXPECT_EQ(p.hdr.flags, kShutdownBoth);
  send(52, hp, kOpRst);
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_EQ(dev_->bad_requests(), 0u);
}

TEST_F(VsockDeviceTest, BytesAfterTheConnectLineAreData) {
  int fd = unix_connect(path_);
  ASSERT_EQ(::write(fd, "CONNECT 9\nearly", 15), 15);
  pump();
  Packet req = take_one();
  ASSERT_EQ(req.hdr.op, kOpRequest);
  send(9, req.hdr.src_port, kOpResponse);
  pump();
  Packet p = take_one();
  EXPECT_EQ(p.data, "early");
  ::close(fd);
}

TEST_F(VsockDeviceTest, GuestClosesHostInitiatedConnection) {
  uint32_t hp;
  int fd = host_connect(52, &hp);
  send(52, hp, kOpResponse);
  read_now(fd);
  send(52, hp, kOpRw, "last");
  send(52, hp, kOpShutdown, "", kShutdownBoth);
  EXPECT_EQ(take_one().hdr.op, kOpRst);
  EXPECT_EQ(read_now(fd), "last");
  EXPECT_TRUE(at_eof(fd));
  EXPECT_EQ(dev_->connection_count(), 0u);
  ::close(fd);
}

TEST_F(VsockDeviceTest, NoGuestListenerClosesTheHostConnection) {
  uint32_t hp;
  int fd = host_connect(99, &hp);
  send(99, hp, kOpRst);
  EXPECT_TRUE(at_eof(fd));
  EXPECT_EQ(dev_->connection_count(), 0u);
  ::close(fd);
}

TEST_F(VsockDeviceTest, GuestResetClosesTheHostSide) {
  uint32_t hp;
  int fd = host_connect(52, &hp);
  send(52, hp, kOpResponse);
  read_now(fd);
  send(52, hp, kOpRst);
  EXPECT_TRUE(at_eof(fd));
  ::close(fd);
}

TEST_F(VsockDeviceTest, MalformedConnectLinesAreClosed) {
  for (std::string bad :
       {std::string("HELLO\n"), std::string("CONNECT x\n"), std::string(40, 'C')}) {
    int fd = unix_connect(path_);
    ASSERT_EQ(::write(fd, bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
    pump();
    EXPECT_TRUE(at_eof(fd)) << bad;
    ::close(fd);
  }
  EXPECT_TRUE(take().empty());
}

TEST_F(VsockDeviceTest, ConnectLineInPieces) {
  int fd = unix_connect(path_);
  ASSERT_EQ(::write(fd, "CONN", 4), 4);
  pump();
  ASSERT_EQ(::write(fd, "ECT 77\n", 7), 7);
  pump();
  EXPECT_EQ(take_one().hdr.dst_port, 77u);
  ::close(fd);
}

TEST_F(VsockDeviceTest, GuestInitiatedConnection) {
  int lfd = unix_listen(path_ + "_5000");
  send(1025, 5000, kOpRequest);
  Packet p = take_one();
  EXPECT_EQ(p.hdr.op, kOpResponse);
  EXPECT_EQ(p.hdr.src_port, 5000u);
  EXPECT_EQ(p.hdr.dst_port, 1025u);
  int fd = accept(lfd, nullptr, nullptr);
  ASSERT_GE(fd, 0);
  send(1025, 5000, kOpRw, "from guest");
  EXPECT_EQ(read_now(fd), "from guest");
  ASSERT_EQ(::write(fd, "from host", 9), 9);
  pump();
  EXPECT_EQ(take_one().data, "from host");
  // Guest half-closes: the host reads EOF but can still answer.
  send(1025, 5000, kOpShutdown, "", kShutdownSend);
  EXPECT_TRUE(at_eof(fd));
  ASSERT_EQ(::write(fd, "still", 5), 5);
  pump();
  EXPECT_EQ(take_one().data, "still");
  ::close(fd);
  ::close(lfd);
}

TEST_F(VsockDeviceTest, GuestConnectionToAMissingHostListenerIsReset) {
  send(1025, 6000, kOpRequest);
  Packet p = take_one();
  EXPECT_EQ(p.hdr.op, kOpRst);
  EXPECT_EQ(p.hdr.dst_port, 1025u);
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDeviceTest, PacketsForUnknownConnectionsGetRst) {
  send(1025, 6000, kOpRw, "stray");
  EXPECT_EQ(take_one().hdr.op, kOpRst);
  send(1025, 6000, kOpRst);  // never answered
  EXPECT_TRUE(take().empty());
}

TEST_F(VsockDeviceTest, BadPacketsAreCountedAndDropped) {
  VsockHeader h;
  h.src_cid = kCid + 1;  // spoofed source
  h.dst_cid = kHostCid;
  h.type = kTypeStream;
  h.op = kOpRequest;
  send_raw(h, "");
  h.src_cid = kCid;
  h.type = 2;  // SEQPACKET
  send_raw(h, "");
  EXPECT_EQ(dev_->bad_requests(), 2u);
  auto v = take();
  ASSERT_EQ(v.size(), 1u);  // RST for the bad type only: its addressing was ours
  EXPECT_EQ(v[0].hdr.op, kOpRst);
}

TEST_F(VsockDeviceTest, LargeTransferRespectsGuestCredit) {
  guest_buf_alloc_ = 16 * 1024;
  uint32_t hp;
  int fd = host_connect(52, &hp);
  send(52, hp, kOpResponse);
  read_now(fd);
  set_nonblocking(fd);
  std::string sent, got;
  for (size_t i = 0; i < 1 << 20; ++i) sent.push_back(static_cast<char>(i * 131 + (i >> 12)));
  size_t off = 0;
  uint32_t acked = guest_rx_bytes_;  // what the device last heard we consumed
  for (int round = 0; round < 10000 && got.size() < sent.size(); ++round) {
    if (off < sent.size()) {
      ssize_t n = ::write(fd, sent.data() + off, std::min<size_t>(sent.size() - off, 65536));
      if (n > 0) off += n;
    }
    pump();
    for (const Packet& p : take()) {
      ASSERT_TRUE(p.hdr.op == kOpRw || p.hdr.op == kOpCreditRequest) << p.hdr.op;
      got += p.data;
      // Never more in flight than the guest allowed.
      ASSERT_LE(guest_rx_bytes_ - acked, guest_buf_alloc_);
    }
    send(52, hp, kOpCreditUpdate);
    acked = guest_rx_bytes_;
  }
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
  ::close(fd);
}

TEST_F(VsockDeviceTest, GuestToSlowHostIsFlowControlled) {
  int lfd = unix_listen(path_ + "_5001");
  send(1025, 5001, kOpRequest);
  ASSERT_EQ(take_one().hdr.op, kOpResponse);
  int fd = accept(lfd, nullptr, nullptr);
  // The guest uses all 256 KiB of credit while the host reads nothing.
  std::string chunk(kMaxPayload, 'q');
  for (int i = 0; i < 4; ++i) send(1025, 5001, kOpRw, chunk);
  EXPECT_EQ(dev_->connection_count(), 1u);
  // Host reads: buffered bytes flow and credit comes back.
  std::string got;
  for (int i = 0; i < 100 && got.size() < 4 * chunk.size(); ++i) {
    got += read_now(fd);
    pump();
  }
  EXPECT_EQ(got.size(), 4 * chunk.size());
  uint32_t fwd = 0;
  for (const Packet& p : take())
    if (p.hdr.op == kOpCreditUpdate) fwd = p.hdr.fwd_cnt;
  EXPECT_EQ(fwd, 4 * chunk.size());
  ::close(fd);
  ::close(lfd);
}

TEST_F(VsockDeviceTest, TransportResetDropsConnectionsAndPostsTheEvent) {
  uint64_t ev = h_->q(2).alloc(4, 0xff);
  uint16_t head = h_->q(2).add_chain({writable(ev, 4)});
  h_->kick(2);
  EXPECT_EQ(h_->q(2).used_idx(), 0);  // nothing to say yet
  uint32_t hp;
  int fd = host_connect(52, &hp);
  send(52, hp, kOpResponse);
  read_now(fd);
  dev_->send_transport_reset();
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_TRUE(at_eof(fd));
  ASSERT_EQ(h_->q(2).used_idx(), 1);
  EXPECT_EQ(h_->q(2).used_elem(0), std::make_pair(uint32_t{head}, 4u));
  EXPECT_EQ(h_->q(2).bytes(ev, 4), std::vector<uint8_t>(4, 0));  // id 0: TRANSPORT_RESET
  ::close(fd);
}

// Posts `n` event buffers and kicks, as Linux does when it starts and after each event.
std::vector<uint64_t> post_events(DeviceHarness& h, int n) {
  std::vector<uint64_t> bufs;
  for (int i = 0; i < n; ++i) {
    bufs.push_back(h.q(2).alloc(4, 0xff));
    h.q(2).add_chain({writable(bufs.back(), 4)});
  }
  h.kick(2);
  return bufs;
}

TEST_F(VsockDeviceTest, HostConnectsWaitUntilTheGuestHandledTheReset) {
  post_events(*h_, 8);  // Linux fills its event ring
  dev_->send_transport_reset();
  ASSERT_EQ(h_->q(2).used_idx(), 1);  // the reset went out, on the first buffer
  // A client connecting now (and pipelining its first bytes) is held: a REQUEST before the
  // guest handled the reset would be reset by it.
  int fd = unix_connect(path_);
  ASSERT_EQ(::write(fd, "CONNECT 52\nearly", 16), 16);
  pump();
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_EQ(read_now(fd), "");  // no OK, and not closed
  EXPECT_FALSE(at_eof(fd));
  // Other guest traffic does not release it: only a refilled event queue does.
  h_->kick(0);
  pump();
  EXPECT_TRUE(take().empty());
  // The guest handled the event and put its buffer back: the held connect goes out.
  post_events(*h_, 1);
  Packet req = take_one();
  ASSERT_EQ(req.hdr.op, kOpRequest);
  EXPECT_EQ(req.hdr.dst_port, 52u);
  send(52, req.hdr.src_port, kOpResponse);
  EXPECT_EQ(read_now(fd), "OK " + std::to_string(req.hdr.src_port) + "\n");
  pump();
  EXPECT_EQ(take_one().data, "early");
  // Later connects pass at once.
  uint32_t hp;
  int again = host_connect(53, &hp);
  EXPECT_EQ(dev_->bad_requests(), 0u);
  ::close(again);
  ::close(fd);
}

TEST_F(VsockDeviceTest, AHeldConnectIsReleasedByAnyKickOnceTheEventQueueIsRefilled) {
  post_events(*h_, 2);
  dev_->send_transport_reset();
  int fd = unix_connect(path_);
  ASSERT_EQ(::write(fd, "CONNECT 52\n", 11), 11);
  pump();
  EXPECT_TRUE(take().empty());
  // The refill's own kick was lost (suppressed): the next kick of any queue notices it.
  uint64_t ev = h_->q(2).alloc(4);
  h_->q(2).add_chain({writable(ev, 4)});
  h_->kick(0);  // e.g. the guest posting RX buffers
  Packet req = take_one();
  EXPECT_EQ(req.hdr.op, kOpRequest);
  ::close(fd);
}

TEST_F(VsockDeviceTest, AHeldConnectTheGuestNeverAnswersIsClosedAfterItsDeadline) {
  constexpr uint64_t kHoldMs = 1000;  // VsockMuxer::kResetHoldMs, shortened
  dev_->set_reset_hold_ms(kHoldMs);
  post_events(*h_, 1);
  dev_->send_transport_reset();
  int held = unix_connect(path_);
  ASSERT_EQ(::write(held, "CONNECT 52\n", 11), 11);
  pump();
  EXPECT_TRUE(take().empty());
  usleep((kHoldMs - 500) * 1000);
  pump();
  EXPECT_FALSE(at_eof(held));  // still waiting
  usleep(600 * 1000);
  pump();  // the deadline passed: closed, not left hanging
  EXPECT_TRUE(at_eof(held));
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(dev_->connection_count(), 0u);
  // The guest may never handle it: holding ends, and the client's next attempt goes through.
  uint32_t hp;
  int fd = host_connect(52, &hp);
  ::close(fd);
  ::close(held);
}

TEST_F(VsockDeviceTest, AClientGivingUpWhileHeldFreesItsSlot) {
  post_events(*h_, 1);
  dev_->send_transport_reset();
  int fd = unix_connect(path_);
  ASSERT_EQ(::write(fd, "CONNECT 52\n", 11), 11);
  pump();
  ::close(fd);
  pump();
  post_events(*h_, 1);
  EXPECT_TRUE(take().empty());  // no REQUEST for a client that left
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST(VsockDevice, ARestoredDeviceHoldsConnectsUntilItsResetIsHandled) {
  char tmpl[] = "/tmp/wisp-vsock-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/v.sock";
  VirtioVsock dev(VsockSpec{path, 3});
  dev.restore_state(VsockState{kCid});
  {
    DeviceHarness h(dev, /*event_idx=*/true);
    ASSERT_TRUE(h.activated());
    uint64_t rx_hdr = h.q(0).alloc(kHeaderBytes + kRxBufBytes);
    h.q(0).add_chain({writable(rx_hdr, kHeaderBytes + kRxBufBytes)});
    h.kick(0);
    int fd = unix_connect(path);
    ASSERT_EQ(::write(fd, "CONNECT 52\n", 11), 11);
    std::vector<BackendFd> backend = dev.backend_fds();
    pollfd p{backend[0].fd, POLLIN, 0};
    for (int i = 0; i < 100 && poll(&p, 1, 0) > 0; ++i) backend[0].on_readable();
    EXPECT_EQ(h.q(0).used_idx(), 0);  // held
    post_events(h, 4);                // the reset goes out on the first
    ASSERT_EQ(h.q(2).used_idx(), 1);
    EXPECT_EQ(h.q(0).used_idx(), 0);  // still held: the guest has not handled it yet
    // With EVENT_IDX the guest kicks only past avail_event: asked for at the index after the
    // four buffers, so that adding a fifth kicks.
    EXPECT_EQ(h.q(2).avail_event(), 4);
    post_events(h, 1);  // handled: the buffer comes back
    ASSERT_EQ(h.q(0).used_idx(), 1);
    auto raw = h.q(0).bytes(rx_hdr, kHeaderBytes);
    VsockHeader req =
        decode_vsock_header(std::span<const uint8_t, kHeaderBytes>(raw.data(), kHeaderBytes));
    EXPECT_EQ(req.op, kOpRequest);
    EXPECT_EQ(req.dst_port, 52u);
    EXPECT_EQ(req.dst_cid, kCid);
    ::close(fd);
  }
  std::filesystem::remove_all(tmpl);
}

TEST_F(VsockDeviceTest, ManyConcurrentConnections) {
  post_rx(64);
  std::vector<int> fds;
  std::vector<uint32_t> ports;
  for (int i = 0; i < 32; ++i) {
    uint32_t hp;
    fds.push_back(host_connect(100 + i, &hp));
    ports.push_back(hp);
    send(100 + i, hp, kOpResponse);
    read_now(fds.back());
  }
  for (int i = 0; i < 32; ++i) {
    std::string msg = "conn" + std::to_string(i);
    ASSERT_EQ(::write(fds[i], msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
  }
  pump();
  std::map<uint32_t, std::string> by_port;
  for (const Packet& p : take()) by_port[p.hdr.dst_port] += p.data;
  ASSERT_EQ(by_port.size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(by_port[100 + i], "conn" + std::to_string(i));
  EXPECT_EQ(dev_->connection_count(), 32u);
  for (int fd : fds) ::close(fd);
}

// A hostile guest on another vCPU: keeps queue `q` full of buffers the device must refuse,
// reposting as fast as the device returns them, until `total` have been posted.
class BadBufferRefiller {
 public:
  BadBufferRefiller(testing::MockQueue& q, uint32_t len, uint32_t total) : q_(q) {
    uint64_t buf = q.alloc(len);
    uint16_t start = q.used_idx();
    auto post_while_room = [this, buf, len, start, total] {
      while (posted_ < total &&
             static_cast<uint16_t>(start + posted_ - q_.used_idx()) < q_.size()) {
        q_.add_chain({writable(buf, len)});
        ++posted_;
      }
    };
    post_while_room();  // a full ring before the device looks
    thread_ = std::thread([this, post_while_room, total] {
      running_ = true;
      while (posted_ < total && !stop_.load()) post_while_room();
    });
    while (!running_.load()) std::this_thread::yield();
  }
  ~BadBufferRefiller() {
    stop_ = true;
    thread_.join();
  }

 private:
  testing::MockQueue& q_;
  uint32_t posted_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  std::thread thread_;
};

TEST_F(VsockDeviceTest, RxRefilledWithBadBuffersDoesNotHoldTheLoop) {
  for (int i = 0; i < 17; ++i) send(1025, 6000 + i, kOpRw, "stray");  // 16 RSTs fill the ring
  uint16_t before = h_->q(0).used_idx();
  ASSERT_EQ(before, 16);  // the 17th RST waits for a buffer
  h_->signals().requeued.clear();
  {
    BadBufferRefiller guest(h_->q(0), 8, 20000);  // 8 bytes: shorter than a header
    h_->kick(0);
    // One call serves at most a ring's worth, then hands the loop back with a requeue.
    EXPECT_LE(static_cast<uint16_t>(h_->q(0).used_idx() - before), VirtioVsock::kQueueSize);
    EXPECT_EQ(h_->signals().requeued, std::vector<uint16_t>{VirtioVsock::kRxQueue});
  }
  // The RST is still owed: once the refused buffers left on the ring are back (the requeued
  // kicks), a good buffer gets it.
  for (int i = 0; i < 2; ++i) h_->kick(0);
  rx_seen_ = h_->q(0).used_idx();
  post_rx(1);
  std::vector<Packet> got = take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].hdr.op, kOpRst);
  EXPECT_EQ(got[0].hdr.dst_port, 1025u);
}

TEST_F(VsockDeviceTest, EventQueueRefilledWithBadBuffersDoesNotHoldTheLoop) {
  h_->signals().requeued.clear();
  BadBufferRefiller guest(h_->q(2), 2, 20000);  // 2 bytes: shorter than an event
  dev_->send_transport_reset();
  EXPECT_LE(h_->q(2).used_idx(), VirtioVsock::kQueueSize);
  EXPECT_EQ(h_->signals().requeued, std::vector<uint16_t>{VirtioVsock::kEventQueue});
}

TEST_F(VsockDeviceTest, HostConnectionWithoutConnectLineIsClosedAfterTheDeadline) {
  int quiet = unix_connect(path_);
  int partial = unix_connect(path_);
  ASSERT_EQ(::write(partial, "CONNECT 5", 9), 9);  // and never the rest
  pump();
  EXPECT_FALSE(at_eof(quiet));
  EXPECT_FALSE(at_eof(partial));
  usleep((VsockMuxer::kConnectLineTimeoutMs + 100) * 1000);
  pump();  // the muxer's timer fired
  EXPECT_TRUE(at_eof(quiet));
  EXPECT_TRUE(at_eof(partial));
  EXPECT_TRUE(take().empty());
  // A client that does send its line in time is served as before.
  uint32_t hp;
  int fd = host_connect(52, &hp);
  ::close(fd);
  ::close(quiet);
  ::close(partial);
}

TEST_F(VsockDeviceTest, AcceptOutOfFdsRestsTheListenerInsteadOfSpinning) {
  int client = unix_connect(path_);
  ASSERT_EQ(::write(client, "CONNECT 52\n", 11), 11);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> hogs;  // every free fd below the limit
  for (int fd; (fd = dup(0)) >= 0;) hogs.push_back(fd);
  std::vector<BackendFd> backend = dev_->backend_fds();
  backend[0].on_readable();  // accept fails: EMFILE
  for (int fd : hogs) ::close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  // The connection still waits in the backlog, but the loop is not woken for it again and again.
  pollfd p{backend[0].fd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  // After the rest the listener is back and the connection is served.
  usleep((VsockMuxer::kAcceptBackoffMs + 50) * 1000);
  pump();
  Packet req = take_one();
  EXPECT_EQ(req.hdr.op, kOpRequest);
  EXPECT_EQ(req.hdr.dst_port, 52u);
  ::close(client);
}

TEST_F(VsockDeviceTest, BufferMemoryIsBounded) {
  // Past the budget for full-size buffers, connections advertise (and may fill) smaller ones.
  constexpr size_t kFull = VsockMuxer::kFullBufferBudget / VsockConnection::kBufAlloc;
  post_rx(64);
  std::vector<int> fds;
  for (size_t i = 0; i < kFull + 2; ++i) {
    int fd = unix_connect(path_);
    std::string line = "CONNECT " + std::to_string(100 + i) + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    fds.push_back(fd);
    pump();
    for (const Packet& p : take()) {
      ASSERT_EQ(p.hdr.op, kOpRequest);
      EXPECT_EQ(p.hdr.buf_alloc, p.hdr.dst_port - 100 < kFull ? VsockConnection::kBufAlloc
                                                              : VsockConnection::kMinBufAlloc);
    }
  }
  EXPECT_EQ(dev_->connection_count(), kFull + 2);
  for (int fd : fds) ::close(fd);
}

TEST(VsockDevice, JailedFileLimitCoversTheConnectionCap) {
  static_assert(jail::kVmmMaxFiles >= VsockMuxer::kFilesNeeded);
  // Unjailed, the muxer raises the soft limit itself (the hard one permitting).
  rlimit r{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &r), 0);
  if (r.rlim_max >= VsockMuxer::kFilesNeeded) {
    rlimit low{256, r.rlim_max};
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    char tmpl[] = "/tmp/wisp-vsock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    { VirtioVsock dev(VsockSpec{std::string(tmpl) + "/v.sock", 3}); }
    rlimit now{};
    getrlimit(RLIMIT_NOFILE, &now);
    setrlimit(RLIMIT_NOFILE, &r);
    std::filesystem::remove_all(tmpl);
    EXPECT_GE(now.rlim_cur, VsockMuxer::kFilesNeeded);
  }
}

TEST_F(VsockDeviceTest, DeviceResetClosesEverything) {
  uint32_t hp;
  int fd = host_connect(52, &hp);
  send(52, hp, kOpResponse);
  read_now(fd);
  h_.reset();  // the harness resets the device
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_TRUE(at_eof(fd));
  ::close(fd);
}

TEST(VsockDevice, SocketPathInUseIsAnError) {
  char tmpl[] = "/tmp/wisp-vsock-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/v.sock";
  {
    VirtioVsock a(VsockSpec{path, 3});
    EXPECT_THROW(VirtioVsock(VsockSpec{path, 3}), Error);
  }
  // A stale socket file (its VMM gone) is replaced.
  int fd = unix_listen(path);
  ::close(fd);
  EXPECT_NO_THROW(VirtioVsock(VsockSpec{path, 3}));
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace wisp
