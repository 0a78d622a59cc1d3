#include "vmm/virtio/vsock/vsock_packet.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "base/error.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {
namespace {

using namespace vsock;  // NOLINT: op codes
using testing::MockQueue;
using testing::readable;
using testing::writable;

constexpr uint64_t kCid = 3;

VsockHeader tx_header(uint16_t op, uint32_t len = 0) {
  VsockHeader h;
  h.src_cid = kCid;
  h.dst_cid = kHostCid;
  h.src_port = 1234;
  h.dst_port = 5000;
  h.type = kTypeStream;
  h.op = op;
  h.len = len;
  h.buf_alloc = 65536;
  h.fwd_cnt = 7;
  return h;
}

class VsockPacketTest : public ::testing::Test {
 protected:
  VsockPacketTest()
      : mem_(GuestMemory::create(1 << 20)), q_(mem_, 0x1000, 16, 0x10000), live_(q_.make_queue()) {}

  uint64_t put_header(const VsockHeader& h) {
    uint8_t raw[kHeaderBytes];
    encode_vsock_header(h, raw);
    uint64_t a = q_.alloc(kHeaderBytes);
    q_.put(a, raw, kHeaderBytes);
    return a;
  }
  // Posts `bufs` and pops them back as the device would.
  TxPacket parse(const std::vector<testing::Buf>& bufs) {
    q_.add_chain(bufs);
    auto chain = live_.pop(mem_);
    EXPECT_TRUE(chain && chain->ok());
    return parse_tx_packet(mem_, *chain, kCid);
  }

  GuestMemory mem_;
  MockQueue q_;
  Queue live_;
};

TEST(VsockHeader, EncodesThePackedLittleEndianLayout) {
  VsockHeader h = tx_header(kOpRw, 0x01020304);
  h.flags = 0xa0b0c0d0;
  uint8_t raw[kHeaderBytes];
  encode_vsock_header(h, raw);
  EXPECT_EQ(raw[0], 3);                     // src_cid
  EXPECT_EQ(raw[8], 2);                     // dst_cid
  EXPECT_EQ(raw[16] | raw[17] << 8, 1234);  // src_port
  EXPECT_EQ(raw[24], 0x04);                 // len, little-endian
  EXPECT_EQ(raw[28], kTypeStream);          // type
  EXPECT_EQ(raw[30], kOpRw);                // op
  EXPECT_EQ(raw[40], 7);                    // fwd_cnt
  VsockHeader back = decode_vsock_header(raw);
  EXPECT_EQ(back.len, h.len);
  EXPECT_EQ(back.flags, h.flags);
  EXPECT_EQ(back.buf_alloc, h.buf_alloc);
  EXPECT_EQ(back.dst_port, h.dst_port);
}

TEST_F(VsockPacketTest, HeaderAndPayloadInSeparateBuffers) {
  uint64_t hdr = put_header(tx_header(kOpRw, 5));
  uint64_t data = q_.alloc(5, 'x');
  TxPacket p = parse({readable(hdr, kHeaderBytes), readable(data, 5)});
  ASSERT_EQ(p.error, PacketError::kNone);
  EXPECT_EQ(p.hdr.len, 5u);
  ASSERT_EQ(p.payload.size(), 1u);
  EXPECT_EQ(std::string(p.payload[0].begin(), p.payload[0].end()), "xxxxx");
}

TEST_F(VsockPacketTest, HeaderSplitAcrossBuffersWithPayloadInline) {
  uint8_t raw[kHeaderBytes + 3];
  encode_vsock_header(tx_header(kOpRw, 3), std::span<uint8_t, kHeaderBytes>(raw, kHeaderBytes));
  std::memcpy(raw + kHeaderBytes, "abc", 3);
  uint64_t a = q_.alloc(10), b = q_.alloc(sizeof(raw) - 10);
  q_.put(a, raw, 10);
  q_.put(b, raw + 10, sizeof(raw) - 10);
  TxPacket p = parse({readable(a, 10), readable(b, sizeof(raw) - 10)});
  ASSERT_EQ(p.error, PacketError::kNone);
  EXPECT_EQ(p.hdr.src_port, 1234u);
  ASSERT_EQ(p.payload.size(), 1u);
  EXPECT_EQ(std::memcmp(p.payload[0].data(), "abc", 3), 0);
}

TEST_F(VsockPacketTest, ShortHeader) {
  uint64_t hdr = put_header(tx_header(kOpRequest));
  EXPECT_EQ(parse({readable(hdr, kHeaderBytes - 1)}).error, PacketError::kShortHeader);
  // Writable bytes do not count as a header.
  EXPECT_EQ(parse({writable(q_.alloc(64), 64)}).error, PacketError::kShortHeader);
}

TEST_F(VsockPacketTest, LengthPastTheBuffers) {
  uint64_t hdr = put_header(tx_header(kOpRw, 100));
  TxPacket p = parse({readable(hdr, kHeaderBytes), readable(q_.alloc(99), 99)});
  EXPECT_EQ(p.error, PacketError::kLenPastChain);
  EXPECT_TRUE(packet_error_wants_rst(p.error));
  EXPECT_TRUE(p.payload.empty());
}

TEST_F(VsockPacketTest, ControlPacketLengthIsIgnored) {
  uint64_t hdr = put_header(tx_header(kOpCreditUpdate, 1000));
  TxPacket p = parse({readable(hdr, kHeaderBytes)});
  EXPECT_EQ(p.error, PacketError::kNone);
  EXPECT_EQ(p.hdr.len, 0u);
}

TEST(VsockValidate, Checks) {
  EXPECT_EQ(validate_tx_header(tx_header(kOpRw, 10), kCid, 10), PacketError::kNone);
  VsockHeader h = tx_header(kOpRw);
  h.type = 2;  // SEQPACKET: not offered
  EXPECT_EQ(validate_tx_header(h, kCid, 0), PacketError::kBadType);
  h = tx_header(kOpRw);
  h.src_cid = 4;  // another guest's CID
  EXPECT_EQ(validate_tx_header(h, kCid, 0), PacketError::kBadSrcCid);
  EXPECT_FALSE(packet_error_wants_rst(PacketError::kBadSrcCid));
  h = tx_header(kOpRw);
  h.dst_cid = 5;
  EXPECT_EQ(validate_tx_header(h, kCid, 0), PacketError::kBadDstCid);
  h.dst_cid = kHostCid | 1ull << 32;  // high bits count
  EXPECT_EQ(validate_tx_header(h, kCid, 0), PacketError::kBadDstCid);
  EXPECT_EQ(validate_tx_header(tx_header(0), kCid, 0), PacketError::kBadOp);
  EXPECT_EQ(validate_tx_header(tx_header(8), kCid, 0), PacketError::kBadOp);
  EXPECT_EQ(validate_tx_header(tx_header(kOpRw, kMaxPayload + 1), kCid, 1 << 20),
            PacketError::kLenTooLarge);
  EXPECT_EQ(validate_tx_header(tx_header(kOpRw, kMaxPayload), kCid, kMaxPayload),
            PacketError::kNone);
}

TEST(VsockConfigParsing, Cid) {
  EXPECT_EQ(parse_vsock_cid("3"), 3u);
  EXPECT_EQ(parse_vsock_cid("4294967294"), 4294967294u);
  for (const char* bad :
       {"0", "1", "2", "4294967295", "4294967296", "", "-3", "3x", " 3", "99999999999999999999999"})
    EXPECT_THROW(parse_vsock_cid(bad), Error) << bad;
}

TEST(VsockConfigParsing, Validate) {
  EXPECT_NO_THROW(validate_vsock_config({"/tmp/v.sock", 3}));
  EXPECT_THROW(validate_vsock_config({"", 3}), Error);
  EXPECT_THROW(validate_vsock_config({"/tmp/v.sock", 2}), Error);
  EXPECT_THROW(validate_vsock_config({"/tmp/" + std::string(100, 'a'), 3}), Error);
}

TEST(VsockConnectLine, Parsing) {
  EXPECT_EQ(parse_connect_line("CONNECT 52"), 52u);
  EXPECT_EQ(parse_connect_line("CONNECT 0"), 0u);
  EXPECT_EQ(parse_connect_line("CONNECT 4294967294"), 4294967294u);
  EXPECT_EQ(parse_connect_line("CONNECT 1024\r"), 1024u);
  for (const char* bad :
       {"", "CONNECT", "CONNECT ", "connect 52", "CONNECT  52", "CONNECT 52 ", "CONNECT -1",
        "CONNECT 4294967295", "CONNECT 99999999999", "CONNECT 0x10", "OK 52", "CONNECT 5a"})
    EXPECT_FALSE(parse_connect_line(bad).has_value()) << bad;
}

}  // namespace
}  // namespace wisp
