// virtio-net driven through guest-memory queues (the mock driver), first against a stand-in
// back-end (frames in vectors: hostile chains, mergeable buffers, running out of buffers), then
// against a real TAP inside a network namespace the test makes for itself (root only; nothing
// touches the host's own network): a TX frame comes out of the TAP's kernel side and a frame
// sent into it lands in the guest's RX buffers.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <thread>

#include "base/error.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/net/net.h"
#include "vmm/virtio/net/tap_backend.h"

namespace wisp {
namespace {

using testing::DeviceHarness;
using testing::readable;
using testing::writable;
using namespace virtio_net;  // NOLINT

constexpr uint16_t kEtherTypeTest = 0x88b5;  // IEEE "local experimental"
constexpr uint64_t kMac = 0x02'00'00'00'00'2a;

// Frames in vectors: what the device sent, what it is to receive.
class FakeBackend final : public NetBackend {
 public:
  std::vector<std::vector<uint8_t>>* sent;
  std::deque<std::vector<uint8_t>>* inbox;
  NetOffloads* offloads;
  FakeBackend(std::vector<std::vector<uint8_t>>* s, std::deque<std::vector<uint8_t>>* in,
              NetOffloads* o)
      : sent(s), inbox(in), offloads(o) {}
  int poll_fd() const override { return -1; }
  ssize_t send(std::span<const iovec> frame) override {
    std::vector<uint8_t> f;
    for (const iovec& v : frame)
      f.insert(f.end(), static_cast<uint8_t*>(v.iov_base),
               static_cast<uint8_t*>(v.iov_base) + v.iov_len);
    sent->push_back(f);
    return static_cast<ssize_t>(f.size());
  }
  ssize_t receive(std::span<uint8_t> out) override {
    if (inbox->empty()) return -EAGAIN;
    std::vector<uint8_t> f = std::move(inbox->front());
    inbox->pop_front();
    size_t n = std::min(f.size(), out.size());
    std::memcpy(out.data(), f.data(), n);
    return static_cast<ssize_t>(n);
  }
  int set_offloads(const NetOffloads& o) override {
    *offloads = o;
    return 0;
  }
};

// An Ethernet frame of `payload` bytes (pattern from `seed`) behind a zero virtio header.
std::vector<uint8_t> test_frame(size_t payload, uint8_t seed) {
  std::vector<uint8_t> f(kHeaderBytes + 14 + payload, 0);
  uint8_t* eth = f.data() + kHeaderBytes;
  std::memset(eth, 0xff, 6);  // broadcast
  for (int i = 0; i < 6; ++i) eth[6 + i] = static_cast<uint8_t>(kMac >> (40 - 8 * i));
  eth[12] = kEtherTypeTest >> 8;
  eth[13] = kEtherTypeTest & 0xff;
  for (size_t i = 0; i < payload; ++i) eth[14 + i] = static_cast<uint8_t>(seed + i * 7);
  return f;
}

class VirtioNetFake : public ::testing::Test {
 protected:
  std::vector<std::vector<uint8_t>> sent_;
  std::deque<std::vector<uint8_t>> inbox_;
  NetOffloads offloads_;
  VirtioNet net_{std::make_unique<FakeBackend>(&sent_, &inbox_, &offloads_), kMac};

  // Posts `frame` on TX as a header buffer and a data buffer.
  uint16_t post_tx(DeviceHarness& h, const std::vector<uint8_t>& frame) {
    MockQueue& q = h.q(VirtioNet::kTxQueue);
    uint64_t hdr = q.alloc(kHeaderBytes), data = q.alloc(frame.size() - kHeaderBytes);
    q.put(hdr, frame.data(), kHeaderBytes);
    q.put(data, frame.data() + kHeaderBytes, frame.size() - kHeaderBytes);
    return q.add_chain({readable(hdr, kHeaderBytes),
                        readable(data, static_cast<uint32_t>(frame.size() - kHeaderBytes))});
  }
  // Posts `n` RX buffers of `len` bytes; returns their addresses.
  std::vector<uint64_t> post_rx(DeviceHarness& h, int n, uint32_t len) {
    std::vector<uint64_t> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(h.q(VirtioNet::kRxQueue).alloc(len));
      h.q(VirtioNet::kRxQueue).add_chain({writable(out.back(), len)});
    }
    return out;
  }
  using MockQueue = testing::MockQueue;
};

TEST_F(VirtioNetFake, IdentityConfigAndFeatures) {
  EXPECT_EQ(net_.device_type(), 1u);
  EXPECT_EQ(net_.num_queues(), 2);
  uint8_t cfg[8];
  net_.read_config(0, cfg);
  const uint8_t want[8] = {0x02, 0, 0, 0, 0, 0x2a, kStatusLinkUp, 0};
  EXPECT_EQ(std::memcmp(cfg, want, 8), 0);
  uint64_t f = net_.device_features();
  for (uint64_t bit :
       {kFeatureMac, kFeatureMrgRxbuf, kFeatureCsum, kFeatureGuestCsum, kFeatureHostTso4,
        kFeatureHostTso6, kFeatureGuestTso4, kFeatureGuestTso6, kFeatureStatus})
    EXPECT_TRUE(f & bit) << bit;
}

TEST_F(VirtioNetFake, TxFramesGoOutWholeAndOffloadsFollowTheDriver) {
  DeviceHarness h(net_);
  ASSERT_TRUE(h.activated());
  auto a = test_frame(100, 1), b = test_frame(1500, 9);
  post_tx(h, a);
  post_tx(h, b);
  h.kick(VirtioNet::kTxQueue);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[0], a);
  EXPECT_EQ(sent_[1], b);
  EXPECT_EQ(h.q(VirtioNet::kTxQueue).used_idx(), 2);
  EXPECT_EQ(net_.tx_frames(), 2u);
  // The harness acked every offered feature: all guest offloads on.
  EXPECT_EQ(offloads_, (NetOffloads{true, true, true}));
  EXPECT_EQ(net_.bad_requests(), 0u);
}

TEST_F(VirtioNetFake, HostileTxChainsAreRefused) {
  DeviceHarness h(net_);
  MockQueue& q = h.q(VirtioNet::kTxQueue);
  q.add_chain({readable(q.alloc(8), 8)});                               // shorter than a header
  q.add_chain({readable(q.alloc(64), 64), writable(q.alloc(64), 64)});  // writable part
  q.add_chain({readable(q.alloc(kMaxFrameBytes + 1), kMaxFrameBytes + 1)});  // too long
  q.add_chain({readable(DeviceHarness::kMemBytes - 8, 64)});                 // outside guest RAM
  auto good = test_frame(60, 3);
  post_tx(h, good);
  h.kick(VirtioNet::kTxQueue);
  EXPECT_EQ(q.used_idx(), 5);  // every chain went back
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0], good);
  EXPECT_EQ(net_.bad_requests(), 4u);
}

TEST_F(VirtioNetFake, TxServesARingPerKickThenRequeues) {
  DeviceHarness h(net_);
  MockQueue& q = h.q(VirtioNet::kTxQueue);
  auto f = test_frame(20, 0);
  uint64_t addr = q.alloc(f.size());
  q.put(addr, f.data(), f.size());
  // The same descriptor published over and over (a driver outrunning the device).
  uint16_t head = q.add_chain({readable(addr, static_cast<uint32_t>(f.size()))});
  for (int i = 1; i < VirtioNet::kQueueSize; ++i) q.publish(head);  // a full ring
  h.kick(VirtioNet::kTxQueue);
  EXPECT_EQ(sent_.size(), size_t{VirtioNet::kQueueSize});
  EXPECT_EQ(h.signals().requeued, std::vector<uint16_t>{VirtioNet::kTxQueue});
}

TEST_F(VirtioNetFake, RxFrameIsMergedAcrossSmallBuffers) {
  DeviceHarness h(net_);
  auto bufs = post_rx(h, 8, 256);
  auto frame = test_frame(1000, 5);  // 1026 bytes: five buffers of 256
  inbox_.push_back(frame);
  net_.handle_backend_event();
  MockQueue& q = h.q(VirtioNet::kRxQueue);
  ASSERT_EQ(q.used_idx(), 5);
  std::vector<uint8_t> got;
  for (uint16_t i = 0; i < 5; ++i) {
    auto [id, len] = q.used_elem(i);
    EXPECT_EQ(len, i < 4 ? 256u : frame.size() - 4 * 256);
    auto part = q.bytes(bufs[i], len);
    got.insert(got.end(), part.begin(), part.end());
  }
  EXPECT_EQ(got[kNumBuffersOffset], 5);  // num_buffers, le16
  EXPECT_EQ(got[kNumBuffersOffset + 1], 0);
  got[kNumBuffersOffset] = 0;
  EXPECT_EQ(got, frame);
  EXPECT_EQ(h.signals().used, std::vector<uint16_t>{VirtioNet::kRxQueue});
  EXPECT_EQ(net_.rx_frames(), 1u);
}

TEST_F(VirtioNetFake, WithoutBuffersTheFrameWaitsForAKick) {
  DeviceHarness h(net_);
  post_rx(h, 2, 256);  // too few for the frame
  auto frame = test_frame(1000, 6);
  inbox_.push_back(frame);
  inbox_.push_back(test_frame(10, 7));
  net_.handle_backend_event();
  MockQueue& q = h.q(VirtioNet::kRxQueue);
  EXPECT_EQ(q.used_idx(), 0);    // nothing half-delivered
  EXPECT_EQ(inbox_.size(), 1u);  // and no more read than the frame in hand
  EXPECT_EQ(net_.rx_dropped(), 0u);
  post_rx(h, 4, 256);
  h.kick(VirtioNet::kRxQueue);
  EXPECT_EQ(q.used_idx(), 6);  // five for the big frame, one for the small one
  EXPECT_TRUE(inbox_.empty());
  EXPECT_EQ(net_.rx_frames(), 2u);
}

TEST_F(VirtioNetFake, HostileRxBuffersAreRefused) {
  DeviceHarness h(net_);
  MockQueue& q = h.q(VirtioNet::kRxQueue);
  q.add_chain({readable(q.alloc(256), 256)});                  // device-readable
  q.add_chain({writable(q.alloc(8), 8)});                      // shorter than the header
  q.add_chain({writable(DeviceHarness::kMemBytes - 8, 256)});  // outside guest RAM
  uint64_t good = q.alloc(2048);
  q.add_chain({writable(good, 2048)});
  auto frame = test_frame(100, 8);
  inbox_.push_back(frame);
  net_.handle_backend_event();
  EXPECT_EQ(q.used_idx(), 4);
  EXPECT_EQ(q.used_elem(3).second, frame.size());
  EXPECT_EQ(net_.bad_requests(), 3u);
  EXPECT_EQ(net_.rx_frames(), 1u);
}

TEST_F(VirtioNetFake, RxReadsABoundedNumberOfFramesPerWake) {
  DeviceHarness h(net_);
  post_rx(h, 200, 128);
  for (uint32_t i = 0; i < VirtioNet::kRxFramesPerWake + 5; ++i)
    inbox_.push_back(test_frame(20, 0));
  net_.handle_backend_event();
  EXPECT_EQ(net_.rx_frames(), VirtioNet::kRxFramesPerWake);
  EXPECT_EQ(inbox_.size(), 5u);
}

TEST_F(VirtioNetFake, SnapshotStateIsTheMac) {
  EXPECT_EQ(net_.save_state(), VirtioDeviceState{NetState{kMac}});
  net_.restore_state(NetState{0x02'11'22'33'44'55});
  EXPECT_EQ(net_.mac(), 0x02'11'22'33'44'55u);
  EXPECT_THROW(net_.restore_state(NetState{0x01'00'00'00'00'01}), Error);  // multicast
  EXPECT_THROW(net_.restore_state(RngState{}), Error);
}

TEST(NetOption, Parses) {
  NetOption o = parse_net_option("tap=tap0,mac=02:AA:bb:cc:dd:01,ip=10.0.0.2/24,gw=10.0.0.1");
  EXPECT_EQ(o.spec.tap_name, "tap0");
  EXPECT_EQ(o.spec.mac, 0x02'aa'bb'cc'dd'01u);
  EXPECT_EQ(o.guest.cmdline_word(), "wisp.net=10.0.0.2/24,10.0.0.1,1500");
  EXPECT_EQ(parse_net_option("tap=t").spec.mac, kDefaultNetMac);
  EXPECT_EQ(parse_net_option("tap=t").guest.cmdline_word(), "");
  EXPECT_EQ(format_mac(0x02'aa'bb'cc'dd'01), "02:aa:bb:cc:dd:01");
}

TEST(NetOption, ErrorsNameTheField) {
  auto error_of = [](const std::string& s) -> std::string {
    try {
      parse_net_option(s);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("mac=02:00:00:00:00:01").find("tap=NAME is missing"), std::string::npos);
  EXPECT_NE(error_of("tap=t,mac=03:00:00:00:00:01").find("--net mac"), std::string::npos);
  EXPECT_NE(error_of("tap=t,mac=03:00:00:00:00:01").find("multicast"), std::string::npos);
  EXPECT_NE(error_of("tap=t,mac=0200:00:00:00:01").find("--net mac"), std::string::npos);
  EXPECT_NE(error_of("tap=t,ip=10.0.0.300/24").find("ip"), std::string::npos);
  EXPECT_NE(error_of("tap=t,ip=10.0.0.3/33").find("prefix"), std::string::npos);
  EXPECT_NE(error_of("tap=t,gw=10.0.0.1").find("gw needs ip"), std::string::npos);
  EXPECT_NE(error_of("tap=t,tap=u").find("given twice"), std::string::npos);
  EXPECT_NE(error_of("tap=t,speed=9").find("unknown key \"speed\""), std::string::npos);
  EXPECT_NE(error_of("tap=this-name-is-too-long").find("longer than 15"), std::string::npos);
}

// ---- a real TAP ------------------------------------------------------------------------------

// A network namespace of the test's own holding the TAP "wtap0", up, IPv6 off (so the kernel
// sends nothing of its own through it), and a packet socket on it: the kernel's side of the
// wire. Made on a thread of its own, which alone enters the namespace; the fds keep it alive.
struct TapInNamespace {
  std::unique_ptr<TapBackend> tap;
  UniqueFd packet;
  int ifindex = 0;
  std::string error;

  TapInNamespace() {
    std::thread([this] {
      try {
        setup();
      } catch (const std::exception& e) {
        error = e.what();
      }
    }).join();
  }

  void setup() {
    if (unshare(CLONE_NEWNET) != 0) throw_errno("unshare(CLONE_NEWNET)");
    UniqueFd creator(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!creator) throw_errno("open /dev/net/tun");
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "wtap0");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(creator.get(), TUNSETIFF, &ifr) != 0) throw_errno("TUNSETIFF (create)");
    if (ioctl(creator.get(), TUNSETPERSIST, 1) != 0) throw_errno("TUNSETPERSIST");
    creator.reset();  // the TAP stays (persist) for open_tap to attach to, as wisp-vmm does
    UniqueFd v6(::open("/proc/sys/net/ipv6/conf/wtap0/disable_ipv6", O_WRONLY | O_CLOEXEC));
    if (v6 && ::write(v6.get(), "1", 1) != 1) throw_errno("disable_ipv6");
    tap = TapBackend::open("wtap0");
    UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) throw_errno("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) throw_errno("SIOCSIFFLAGS");
    ifindex = static_cast<int>(if_nametoindex("wtap0"));
    packet = UniqueFd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kEtherTypeTest)));
    if (!packet) throw_errno("socket(AF_PACKET)");
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(kEtherTypeTest);
    sll.sll_ifindex = ifindex;
    if (bind(packet.get(), reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0)
      throw_errno("bind(AF_PACKET)");
  }
};

bool wait_readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

class VirtioNetTap : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "a TAP needs root";
    ns_ = std::make_unique<TapInNamespace>();
    ASSERT_EQ(ns_->error, "");
    net_ = std::make_unique<VirtioNet>(std::move(ns_->tap), kMac);
  }
  // Sends `frame` (less its virtio header) to the TAP's host side as a broadcast, so it comes
  // out of the TAP's fd for the device to read.
  ssize_t send_into_tap(const std::vector<uint8_t>& frame) {
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ns_->ifindex;
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xff, 6);
    return sendto(ns_->packet.get(), frame.data() + kHeaderBytes, frame.size() - kHeaderBytes, 0,
                  reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  std::unique_ptr<TapInNamespace> ns_;
  std::unique_ptr<VirtioNet> net_;
};

TEST_F(VirtioNetTap, TxFrameComesOutOfTheTap) {
  DeviceHarness h(*net_);
  ASSERT_TRUE(h.activated());
  auto frame = test_frame(300, 11);
  testing::MockQueue& q = h.q(VirtioNet::kTxQueue);
  uint64_t a = q.alloc(frame.size());
  q.put(a, frame.data(), frame.size());
  q.add_chain({readable(a, kHeaderBytes),
               readable(a + kHeaderBytes, static_cast<uint32_t>(frame.size() - kHeaderBytes))});
  h.kick(VirtioNet::kTxQueue);
  EXPECT_EQ(net_->tx_frames(), 1u);
  ASSERT_TRUE(wait_readable(ns_->packet.get(), 2000));
  std::vector<uint8_t> got(4096);
  ssize_t n = recv(ns_->packet.get(), got.data(), got.size(), 0);
  ASSERT_EQ(n, static_cast<ssize_t>(frame.size() - kHeaderBytes));
  got.resize(static_cast<size_t>(n));
  EXPECT_EQ(got, std::vector<uint8_t>(frame.begin() + kHeaderBytes, frame.end()));
}

TEST_F(VirtioNetTap, FrameSentIntoTheTapLandsInRxBuffers) {
  DeviceHarness h(*net_);
  testing::MockQueue& q = h.q(VirtioNet::kRxQueue);
  std::vector<uint64_t> bufs;
  for (int i = 0; i < 8; ++i) {
    bufs.push_back(q.alloc(512));
    q.add_chain({writable(bufs.back(), 512)});
  }
  auto frame = test_frame(1400, 13);  // a full-MTU frame across three buffers
  ASSERT_EQ(send_into_tap(frame), static_cast<ssize_t>(frame.size() - kHeaderBytes));
  std::vector<BackendFd> fds = net_->backend_fds();
  ASSERT_EQ(fds.size(), 1u);
  ASSERT_TRUE(wait_readable(fds[0].fd, 2000));
  fds[0].on_readable();
  ASSERT_EQ(q.used_idx(), 3);
  std::vector<uint8_t> got;
  for (uint16_t i = 0; i < 3; ++i) {
    auto part = q.bytes(bufs[i], q.used_elem(i).second);
    got.insert(got.end(), part.begin(), part.end());
  }
  ASSERT_EQ(got.size(), frame.size());
  EXPECT_EQ(got[kNumBuffersOffset], 3);
  // The frame after the header is what went in (the header's flags are the kernel's).
  EXPECT_TRUE(std::equal(frame.begin() + kHeaderBytes, frame.end(), got.begin() + kHeaderBytes));
  // Nothing more waiting: the device keeps polling the TAP.
  EXPECT_TRUE(net_->rx_polling());
}

TEST_F(VirtioNetTap, NoBuffersStopsPollingUntilTheGuestAddsSome) {
  DeviceHarness h(*net_);
  auto frame = test_frame(200, 17);
  ASSERT_GT(send_into_tap(frame), 0);
  std::vector<BackendFd> fds = net_->backend_fds();
  ASSERT_TRUE(wait_readable(fds[0].fd, 2000));
  fds[0].on_readable();
  EXPECT_FALSE(net_->rx_polling());
  EXPECT_FALSE(wait_readable(fds[0].fd, 50));  // the loop would sleep, not spin
  testing::MockQueue& q = h.q(VirtioNet::kRxQueue);
  uint64_t buf = q.alloc(2048);
  q.add_chain({writable(buf, 2048)});
  h.kick(VirtioNet::kRxQueue);
  EXPECT_EQ(q.used_idx(), 1);
  EXPECT_EQ(q.used_elem(0).second, frame.size());
  EXPECT_TRUE(net_->rx_polling());
}

TEST(TapBackend, NoSuchTapIsAClearError) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  try {
    open_tap("wisp-no-such0");
    FAIL() << "opened a TAP that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("TAP wisp-no-such0: no such network interface"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace wisp
