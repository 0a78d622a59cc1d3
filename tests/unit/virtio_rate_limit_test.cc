// The rate-limit hooks of virtio-blk and virtio-net (vmm/virtio/queue_throttle.h) with a fake
// clock: a request over the limit stays in its ring, nothing is failed, and the limiter's timer
// (called here by hand, as the event loop would) resumes the queue once time has passed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <vector>

#include "base/rate_limit_option.h"
#include "tests/unit/memory_disk.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/block/block.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/net/net.h"

namespace wisp {
namespace {

using testing::DeviceHarness;
using testing::readable;
using testing::writable;

constexpr uint64_t kMs = 1'000'000;

using testing::MemoryDisk;

// The handler the device gave the event loop for its limiter's timer (the last fd it lists).
void fire_timer(VirtioDevice& dev) { dev.backend_fds().back().on_readable(); }

RateLimitConfig bytes_per_100ms(uint64_t size) { return {{size, 0, 100}, {}}; }

class BlockRateLimit : public ::testing::Test {
 protected:
  uint64_t now_ = 1000 * kMs;
  VirtioBlock blk_{std::make_unique<MemoryDisk>(), bytes_per_100ms(8192), [this] { return now_; }};
  DeviceHarness h_{blk_};

  // Posts a read of `sectors` sectors (not kicked).
  void post_read(uint32_t sectors) {
    auto& q = h_.q();
    uint64_t hdr = q.alloc(16);
    struct {
      uint32_t type, ioprio;
      uint64_t sector;
    } hd{virtio_blk::kTypeIn, 0, 0};
    q.put(hdr, &hd, 16);
    q.add_chain({readable(hdr, 16), writable(q.alloc(sectors * 512), sectors * 512),
                 writable(q.alloc(1), 1)});
  }
};

TEST_F(BlockRateLimit, OverTheLimitWaitsForTheTimerNeverFails) {
  ASSERT_TRUE(h_.activated());
  EXPECT_EQ(h_.signals().requeued, std::vector<uint16_t>{0});  // looks at a restored ring once
  // 8 KiB per 100 ms: two 4 KiB reads fit the full bucket, the third waits.
  for (int i = 0; i < 3; ++i) post_read(8);
  h_.kick();
  EXPECT_EQ(h_.q().used_idx(), 2);
  EXPECT_TRUE(blk_.rate_limited());
  // A kick meanwhile changes nothing (the timer resumes the queue).
  h_.kick();
  EXPECT_EQ(h_.q().used_idx(), 2);
  // Early timer (a spurious wake-up): still 2, and the limiter waits again.
  now_ += 10 * kMs;
  fire_timer(blk_);
  EXPECT_EQ(h_.q().used_idx(), 2);
  EXPECT_TRUE(blk_.rate_limited());
  now_ += 40 * kMs;  // 50 ms: 4 KiB refilled
  fire_timer(blk_);
  EXPECT_EQ(h_.q().used_idx(), 3);
  EXPECT_FALSE(blk_.rate_limited());
  auto [head, len] = h_.q().used_elem(2);
  EXPECT_EQ(len, 8u * 512 + 1);  // served whole, status OK
  EXPECT_EQ(blk_.bad_requests(), 0u);
}

TEST_F(BlockRateLimit, ALargerRequestThanTheBucketGoesThenPaysItsDebt) {
  post_read(64);  // 32 KiB through an 8 KiB bucket: goes, 24 KiB of debt = 300 ms
  post_read(1);
  h_.kick();
  EXPECT_EQ(h_.q().used_idx(), 1);
  now_ += 299 * kMs;
  fire_timer(blk_);
  EXPECT_EQ(h_.q().used_idx(), 1);
  now_ += 8 * kMs;  // 307 ms: the debt and 512 bytes (306.25 ms)
  fire_timer(blk_);
  EXPECT_EQ(h_.q().used_idx(), 2);
}

TEST_F(BlockRateLimit, ResetForgetsTheWait) {
  for (int i = 0; i < 3; ++i) post_read(8);
  h_.kick();
  EXPECT_TRUE(blk_.rate_limited());
  blk_.reset();
  EXPECT_FALSE(blk_.rate_limited());
  fire_timer(blk_);  // a timer left armed finds an inactive device: nothing happens
}

TEST(BlockRateLimitUnlimited, NoTimerAndNoRequeue) {
  VirtioBlock blk(std::make_unique<MemoryDisk>());
  EXPECT_EQ(blk.backend_fds().size(), 1u);
  DeviceHarness h(blk);
  EXPECT_TRUE(h.signals().requeued.empty());
}

// A net back-end that records what the device sent and serves an inbox.
class ListBackend final : public NetBackend {
 public:
  std::vector<size_t> sent;
  std::deque<std::vector<uint8_t>> inbox;
  int poll_fd() const override { return -1; }
  ssize_t send(std::span<const iovec> frame) override {
    size_t n = 0;
    for (const iovec& v : frame) n += v.iov_len;
    sent.push_back(n);
    return static_cast<ssize_t>(n);
  }
  ssize_t receive(std::span<uint8_t> out) override {
    if (inbox.empty()) return -EAGAIN;
    std::vector<uint8_t> f = std::move(inbox.front());
    inbox.pop_front();
    size_t n = std::min(f.size(), out.size());
    std::memcpy(out.data(), f.data(), n);
    return static_cast<ssize_t>(n);
  }
  int set_offloads(const NetOffloads&) override { return 0; }
};

constexpr uint64_t kNetMac = 0x02'00'00'00'00'2a;
constexpr uint32_t kFrame = 1000;  // Ethernet bytes per test frame

class NetRateLimit : public ::testing::Test {
 protected:
  uint64_t now_ = 1000 * kMs;
  ListBackend* backend_ = new ListBackend;
  // RX: 2 frames per 100 ms; TX: 2000 bytes per 100 ms.
  VirtioNet net_{std::unique_ptr<NetBackend>(backend_), kNetMac, RateLimitConfig{{}, {2, 0, 100}},
                 bytes_per_100ms(2 * kFrame), [this] { return now_; }};
  DeviceHarness h_{net_};

  void post_tx() {
    auto& q = h_.q(VirtioNet::kTxQueue);
    uint32_t len = virtio_net::kHeaderBytes + kFrame;
    q.add_chain({readable(q.alloc(len), len)});
  }
  void post_rx(int n) {
    auto& q = h_.q(VirtioNet::kRxQueue);
    for (int i = 0; i < n; ++i) q.add_chain({writable(q.alloc(2048), 2048)});
  }
  void timer(uint16_t queue) {
    // backend_fds(): the epoll set, then the RX timer, then the TX timer.
    net_.backend_fds()[queue == VirtioNet::kRxQueue ? 1 : 2].on_readable();
  }
};

TEST_F(NetRateLimit, TxOverTheLimitStaysInTheRing) {
  ASSERT_TRUE(h_.activated());
  ASSERT_EQ(net_.backend_fds().size(), 3u);
  for (int i = 0; i < 4; ++i) post_tx();
  h_.kick(VirtioNet::kTxQueue);
  EXPECT_EQ(backend_->sent.size(), 2u);
  EXPECT_TRUE(net_.tx_rate_limited());
  now_ += 50 * kMs;  // 1000 bytes back: one frame
  timer(VirtioNet::kTxQueue);
  EXPECT_EQ(backend_->sent.size(), 3u);
  now_ += 50 * kMs;
  timer(VirtioNet::kTxQueue);
  EXPECT_EQ(backend_->sent.size(), 4u);
  EXPECT_EQ(h_.q(VirtioNet::kTxQueue).used_idx(), 4);
  EXPECT_EQ(net_.tx_dropped(), 0u);
  EXPECT_FALSE(net_.rx_rate_limited());
}

TEST_F(NetRateLimit, RxOverTheLimitKeepsTheFrameAndStopsReading) {
  for (int i = 0; i < 5; ++i) backend_->inbox.push_back(std::vector<uint8_t>(12 + kFrame, 0));
  post_rx(8);
  h_.kick(VirtioNet::kRxQueue);
  EXPECT_EQ(net_.rx_frames(), 2u);
  EXPECT_TRUE(net_.rx_rate_limited());
  EXPECT_EQ(backend_->inbox.size(), 2u);  // the third frame is in hand, two in the "TAP"
  // A back-end event or a kick meanwhile delivers nothing.
  net_.handle_backend_event();
  h_.kick(VirtioNet::kRxQueue);
  EXPECT_EQ(net_.rx_frames(), 2u);
  now_ += 50 * kMs;  // one op back
  timer(VirtioNet::kRxQueue);
  EXPECT_EQ(net_.rx_frames(), 3u);
  now_ += 100 * kMs;
  timer(VirtioNet::kRxQueue);
  EXPECT_EQ(net_.rx_frames(), 5u);
  EXPECT_EQ(net_.rx_dropped(), 0u);
}

TEST_F(NetRateLimit, AFrameWaitingForBuffersIsChargedOnce) {
  backend_->inbox.push_back(std::vector<uint8_t>(12 + kFrame, 0));
  backend_->inbox.push_back(std::vector<uint8_t>(12 + kFrame, 0));
  net_.handle_backend_event();  // no buffers: the first frame waits in hand (1 op charged)
  EXPECT_EQ(net_.rx_frames(), 0u);
  post_rx(2);
  h_.kick(VirtioNet::kRxQueue);  // it goes without a second charge, and the next one fits
  EXPECT_EQ(net_.rx_frames(), 2u);
  EXPECT_FALSE(net_.rx_rate_limited());
}

TEST(RateLimitOption, DriveAndNetKeys) {
  BlockSpec d = parse_drive_spec("d.img,ro,bw=1M,bw-burst=4M,ops=100,refill-ms=100");
  EXPECT_TRUE(d.read_only);
  EXPECT_EQ(d.rate_limit.bandwidth, (TokenBucketConfig{(1u << 20) / 10, 4u << 20, 100}));
  EXPECT_EQ(d.rate_limit.ops, (TokenBucketConfig{10, 0, 100}));
  EXPECT_FALSE(parse_drive_spec("d.img").rate_limit.limits());
  NetOption n = parse_net_option("tap=t0,tx-bw=2M,rx-ops=1000,rx-ops-burst=50");
  EXPECT_EQ(n.spec.tx_limit.bandwidth, (TokenBucketConfig{2u << 20, 0, 1000}));
  EXPECT_FALSE(n.spec.tx_limit.ops.limits());
  EXPECT_EQ(n.spec.rx_limit.ops, (TokenBucketConfig{1000, 50, 1000}));
  auto message = [](auto fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { parse_drive_spec("d.img,bw=fast"); }).find("bw fast: expected a size"),
            std::string::npos);
  EXPECT_NE(message([] { parse_drive_spec("d.img,bw-burst=1M"); }).find("bw-burst needs bw"),
            std::string::npos);
  EXPECT_NE(message([] { parse_drive_spec("d.img,bw=1,bw=2"); }).find("twice"), std::string::npos);
  EXPECT_NE(message([] { parse_drive_spec("d.img,refill-ms=10"); }).find("refill-ms without"),
            std::string::npos);
  EXPECT_NE(message([] { parse_drive_spec("d.img,ops=5,refill-ms=100"); }).find("less than one"),
            std::string::npos);
  EXPECT_NE(message([] { parse_net_option("tap=t,rx-bw=0"); }).find("rx-bw"), std::string::npos);
  EXPECT_NE(message([] { parse_net_option("tap=t,up-bw=1M"); }).find("unknown key \"up-bw\""),
            std::string::npos);
}

}  // namespace
}  // namespace wisp
