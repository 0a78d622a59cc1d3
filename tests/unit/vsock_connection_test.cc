#include "vmm/virtio/vsock/vsock_connection.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace wisp {
namespace {

using namespace vsock;  // NOLINT: op codes

// An in-memory host end: `input` is what the host process sends, `output` what it received.
struct FakeStream : VsockStream {
  std::string input;
  bool eof = false;  // after `input`, end of stream (else EAGAIN)
  std::string output;
  size_t write_room = SIZE_MAX;  // bytes it takes before EAGAIN
  int write_error = 0;           // e.g. EPIPE
  bool write_shut = false;
  bool* destroyed = nullptr;

  ~FakeStream() override {
    if (destroyed) *destroyed = true;
  }
  ssize_t read(std::span<const std::span<uint8_t>> bufs) override {
    if (input.empty()) return eof ? 0 : -EAGAIN;
    size_t done = 0;
    for (auto b : bufs) {
      size_t n = std::min(b.size(), input.size() - done);
      std::memcpy(b.data(), input.data() + done, n);
      done += n;
    }
    input.erase(0, done);
    return static_cast<ssize_t>(done);
  }
  ssize_t write(std::span<const std::span<const uint8_t>> bufs) override {
    if (write_error) return -write_error;
    if (write_room == 0) return -EAGAIN;
    size_t done = 0;
    for (auto b : bufs) {
      size_t n = std::min(b.size(), write_room - done);
      output.append(reinterpret_cast<const char*>(b.data()), n);
      done += n;
    }
    write_room -= done;
    return static_cast<ssize_t>(done);
  }
  void shutdown_write() override { write_shut = true; }
  int fd() const override { return 42; }
};

class VsockConnectionTest : public ::testing::Test {
 protected:
  // A guest-initiated connection, established once RESPONSE went out.
  void open_guest_initiated(uint32_t guest_buf = 1 << 20) {
    auto s = std::make_unique<FakeStream>();
    s_ = s.get();
    s_->destroyed = &destroyed_;
    VsockHeader req;
    req.op = kOpRequest;
    req.src_port = 1111;
    req.dst_port = 5000;
    req.buf_alloc = guest_buf;
    c_ = VsockConnection::guest_initiated(req, std::move(s));
    ASSERT_EQ(next().op, kOpResponse);
  }
  VsockHeader guest(uint16_t op, uint32_t flags = 0) {
    VsockHeader h;
    h.op = op;
    h.flags = flags;
    h.buf_alloc = guest_buf_;
    h.fwd_cnt = guest_fwd_;
    return h;
  }
  bool send(uint16_t op, uint32_t flags = 0) {
    return c_->on_guest_packet(guest(op, flags), {}, now_);
  }
  bool send_data(const std::string& d) {
    VsockHeader h = guest(kOpRw);
    h.len = static_cast<uint32_t>(d.size());
    std::span<const uint8_t> piece(reinterpret_cast<const uint8_t*>(d.data()), d.size());
    return c_->on_guest_packet(h, {&piece, 1}, now_);
  }
  // The next packet for the guest; op kOpInvalid when there is none.
  VsockHeader next(size_t room = 4096) {
    buf_.assign(room, 0);
    std::span<uint8_t> piece(buf_);
    VsockHeader h;
    if (!c_->next_rx(&h, {&piece, 1}, now_)) return VsockHeader{};
    last_data_.assign(reinterpret_cast<char*>(buf_.data()), h.len);
    return h;
  }

  std::unique_ptr<VsockConnection> c_;
  FakeStream* s_ = nullptr;
  bool destroyed_ = false;
  uint32_t guest_buf_ = 1 << 20;
  uint32_t guest_fwd_ = 0;
  uint64_t now_ = 1000;
  std::vector<uint8_t> buf_;
  std::string last_data_;
};

TEST_F(VsockConnectionTest, HostInitiatedHandshake) {
  auto s = std::make_unique<FakeStream>();
  s_ = s.get();
  c_ = VsockConnection::host_initiated(1u << 30, 52, std::move(s));
  EXPECT_EQ(c_->state(), VsockConnection::State::kConnecting);
  EXPECT_TRUE(c_->has_rx());
  VsockHeader h = next();
  EXPECT_EQ(h.op, kOpRequest);
  EXPECT_EQ(h.src_port, 1u << 30);
  EXPECT_EQ(h.dst_port, 52u);
  EXPECT_EQ(h.buf_alloc, VsockConnection::kBufAlloc);
  EXPECT_EQ(c_->deadline_ms(), now_ + VsockConnection::kRequestTimeoutMs);
  EXPECT_FALSE(c_->has_rx());
  EXPECT_EQ(c_->epoll_events(), 0u);  // nothing read before the guest accepts
  EXPECT_TRUE(send(kOpResponse));
  EXPECT_EQ(c_->state(), VsockConnection::State::kEstablished);
  EXPECT_EQ(s_->output, "OK 1073741824\n");
  EXPECT_EQ(c_->deadline_ms(), 0u);
  EXPECT_EQ(c_->epoll_events(), static_cast<uint32_t>(EPOLLIN));
}

TEST_F(VsockConnectionTest, HostInitiatedRefusedByGuest) {
  auto s = std::make_unique<FakeStream>();
  s->destroyed = &destroyed_;
  c_ = VsockConnection::host_initiated(1u << 30, 52, std::move(s));
  next();
  EXPECT_TRUE(send(kOpRst));
  EXPECT_TRUE(destroyed_);  // the Unix side closes
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, HostInitiatedTimesOut) {
  auto s = std::make_unique<FakeStream>();
  c_ = VsockConnection::host_initiated(1u << 30, 52, std::move(s));
  next();
  c_->on_timer(now_ + VsockConnection::kRequestTimeoutMs - 1);
  EXPECT_FALSE(c_->finished());
  c_->on_timer(now_ + VsockConnection::kRequestTimeoutMs);
  EXPECT_EQ(next().op, kOpRst);
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, ResponseBeforeRequestIsAViolation) {
  c_ = VsockConnection::host_initiated(1u << 30, 52, std::make_unique<FakeStream>());
  EXPECT_FALSE(send(kOpResponse));
  EXPECT_EQ(next().op, kOpRst);
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, DataBothWays) {
  open_guest_initiated();
  EXPECT_TRUE(send_data("hello"));
  EXPECT_EQ(s_->output, "hello");
  EXPECT_EQ(c_->fwd_cnt(), 5u);
  s_->input = "world";
  c_->on_stream_events(EPOLLIN, now_);
  EXPECT_EQ(c_->epoll_events(), 0u);  // drained through next_rx, not epoll
  VsockHeader h = next();
  EXPECT_EQ(h.op, kOpRw);
  EXPECT_EQ(last_data_, "world");
  EXPECT_EQ(h.fwd_cnt, 5u);
  EXPECT_EQ(c_->epoll_events(), static_cast<uint32_t>(EPOLLIN));  // short read: watch again
}

TEST_F(VsockConnectionTest, NeverSendsPastGuestCredit) {
  guest_buf_ = 1000;
  open_guest_initiated(1000);
  s_->input.assign(5000, 'a');
  c_->on_stream_events(EPOLLIN, now_);
  EXPECT_EQ(next().len, 1000u);
  EXPECT_EQ(c_->guest_credit(), 0u);
  // Out of credit: one CREDIT_REQUEST, then silence.
  EXPECT_EQ(next().op, kOpCreditRequest);
  EXPECT_FALSE(c_->has_rx());
  EXPECT_EQ(next().op, kOpInvalid);
  // The guest consumed 600 bytes.
  guest_fwd_ = 600;
  EXPECT_TRUE(send(kOpCreditUpdate));
  EXPECT_EQ(next().len, 600u);
  EXPECT_EQ(s_->input.size(), 3400u);
  // A guest claiming to have consumed more than it got earns no credit.
  guest_fwd_ = 5000;
  EXPECT_TRUE(send(kOpCreditUpdate));
  EXPECT_EQ(c_->guest_credit(), 0u);
}

TEST_F(VsockConnectionTest, CreditRequestIsAnswered) {
  open_guest_initiated();
  EXPECT_FALSE(c_->has_rx());
  EXPECT_TRUE(send(kOpCreditRequest));
  VsockHeader h = next();
  EXPECT_EQ(h.op, kOpCreditUpdate);
  EXPECT_EQ(h.buf_alloc, VsockConnection::kBufAlloc);
}

TEST_F(VsockConnectionTest, CreditUpdateWhenTheGuestsViewGoesStale) {
  open_guest_initiated();
  std::string chunk(16 * 1024, 'x');
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(send_data(chunk));
  EXPECT_FALSE(c_->has_rx());  // 48 KiB consumed: not yet worth a packet
  EXPECT_TRUE(send_data(chunk));
  VsockHeader h = next();
  EXPECT_EQ(h.op, kOpCreditUpdate);
  EXPECT_EQ(h.fwd_cnt, 64u * 1024);
  EXPECT_FALSE(c_->has_rx());
}

TEST_F(VsockConnectionTest, SlowHostBuffersUpToTheCreditThenResets) {
  open_guest_initiated();
  s_->write_room = 1000;
  std::string chunk(64 * 1024, 'y');
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(send_data(chunk));
  EXPECT_EQ(c_->fwd_cnt(), 1000u);
  EXPECT_EQ(c_->buffered(), 4 * chunk.size() - 1000);
  EXPECT_EQ(c_->epoll_events() & EPOLLOUT, static_cast<uint32_t>(EPOLLOUT));
  // The host drains; buffered bytes follow in order.
  s_->write_room = SIZE_MAX;
  c_->on_stream_events(EPOLLOUT, now_);
  EXPECT_EQ(c_->buffered(), 0u);
  EXPECT_EQ(s_->output.size(), 4 * chunk.size());
  EXPECT_EQ(next().op, kOpCreditUpdate);
  // Now the host stalls and the guest ignores its credit.
  s_->write_room = 0;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(send_data(chunk));
  EXPECT_FALSE(send_data("z"));  // one byte past 256 KiB
  EXPECT_EQ(next().op, kOpRst);
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, GuestHalfCloseThenFullClose) {
  open_guest_initiated();
  s_->write_room = 2;
  EXPECT_TRUE(send_data("abcd"));
  EXPECT_TRUE(send(kOpShutdown, kShutdownSend));
  EXPECT_FALSE(s_->write_shut);  // not before the buffered bytes are out
  s_->write_room = SIZE_MAX;
  c_->on_stream_events(EPOLLOUT, now_);
  EXPECT_EQ(s_->output, "abcd");
  EXPECT_TRUE(s_->write_shut);
  // The host can still send to the guest.
  s_->input = "reply";
  c_->on_stream_events(EPOLLIN, now_);
  EXPECT_EQ(next().op, kOpRw);
  EXPECT_EQ(last_data_, "reply");
  // Data after SHUTDOWN SEND breaks the protocol.
  EXPECT_FALSE(send_data("late"));
  EXPECT_EQ(next().op, kOpRst);
}

TEST_F(VsockConnectionTest, GuestFullShutdownGetsRst) {
  open_guest_initiated();
  EXPECT_TRUE(send(kOpShutdown, kShutdownBoth));
  EXPECT_TRUE(destroyed_);
  EXPECT_EQ(next().op, kOpRst);
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, HostHalfCloseThenHangUp) {
  open_guest_initiated();
  s_->input = "bye";
  s_->eof = true;
  c_->on_stream_events(EPOLLIN, now_);
  EXPECT_EQ(next().op, kOpRw);
  EXPECT_EQ(last_data_, "bye");
  EXPECT_EQ(next().op, kOpInvalid);  // short read: wait for epoll, which reports the EOF
  c_->on_stream_events(EPOLLIN, now_);
  VsockHeader h = next();
  EXPECT_EQ(h.op, kOpShutdown);
  EXPECT_EQ(h.flags, kShutdownSend);
  EXPECT_EQ(c_->epoll_events(), 0u);   // only HUP is watched now
  EXPECT_TRUE(send_data("still ok"));  // the host may still read
  EXPECT_EQ(s_->output, "still ok");
  c_->on_stream_events(EPOLLHUP, now_);
  EXPECT_EQ(c_->watched_fd(), -1);
  h = next();
  EXPECT_EQ(h.op, kOpShutdown);
  EXPECT_EQ(h.flags, kShutdownBoth);
  EXPECT_EQ(c_->deadline_ms(), now_ + VsockConnection::kCloseTimeoutMs);
  EXPECT_TRUE(send(kOpRst));
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, HostVanishesWithDataStillQueued) {
  open_guest_initiated();
  s_->input = "last words";
  s_->eof = true;
  c_->on_stream_events(EPOLLIN | EPOLLHUP, now_);
  EXPECT_EQ(next().op, kOpRw);
  EXPECT_EQ(last_data_, "last words");
  VsockHeader h = next();
  EXPECT_EQ(h.op, kOpShutdown);
  EXPECT_EQ(h.flags, kShutdownBoth);
  // The guest never answers: RST after the close timeout.
  c_->on_timer(now_ + VsockConnection::kCloseTimeoutMs);
  EXPECT_EQ(next().op, kOpRst);
  EXPECT_TRUE(c_->finished());
}

TEST_F(VsockConnectionTest, WriteErrorResets) {
  open_guest_initiated();
  s_->write_error = EPIPE;
  send_data("x");
  EXPECT_EQ(next().op, kOpRst);
  EXPECT_TRUE(destroyed_);
}

TEST_F(VsockConnectionTest, GuestRstClosesEverything) {
  open_guest_initiated();
  EXPECT_TRUE(send(kOpRst));
  EXPECT_TRUE(destroyed_);
  EXPECT_TRUE(c_->finished());
  EXPECT_FALSE(c_->has_rx());
  EXPECT_TRUE(send_data("after"));  // ignored
}

TEST_F(VsockConnectionTest, DuplicateRequestResets) {
  open_guest_initiated();
  EXPECT_FALSE(send(kOpRequest));
  EXPECT_EQ(next().op, kOpRst);
}

TEST_F(VsockConnectionTest, GuestShutRcvStopsReading) {
  open_guest_initiated();
  EXPECT_TRUE(send(kOpShutdown, kShutdownRcv));
  s_->input = "unwanted";
  c_->on_stream_events(EPOLLIN, now_);
  EXPECT_FALSE(c_->has_rx());
  EXPECT_EQ(c_->epoll_events(), 0u);
}

TEST(VsockByteRing, WrapsAround) {
  ByteRing r(8);
  EXPECT_EQ(r.push({reinterpret_cast<const uint8_t*>("abcdef"), 6}), 6u);
  r.pop(4);
  EXPECT_EQ(r.push({reinterpret_cast<const uint8_t*>("ghijklm"), 7}), 6u);  // 8 - 2 queued
  auto p = r.peek();
  std::string s(p[0].begin(), p[0].end());
  s.append(p[1].begin(), p[1].end());
  EXPECT_EQ(s, "efghijkl");
  r.clear();
  EXPECT_TRUE(r.empty());
}

}  // namespace
}  // namespace wisp
