#include <gtest/gtest.h>

#include "agent/worker_frame.h"

namespace wisp::agent {
namespace {

TEST(WorkerFrame, RequestHeaderIsLittleEndianLength) {
  auto h = encode_request_header(0x01020304);
  EXPECT_EQ(h, (std::array<uint8_t, 4>{0x04, 0x03, 0x02, 0x01}));
  EXPECT_EQ(decode_request_header(h), 0x01020304u);
  EXPECT_EQ(decode_request_header(encode_request_header(0)), 0u);
  EXPECT_EQ(decode_request_header(encode_request_header(UINT32_MAX)), UINT32_MAX);
}

TEST(WorkerFrame, ResponseHeaderCarriesLengthThenStatus) {
  std::array<uint8_t, 5> wire{0x10, 0x00, 0x00, 0x00, 0x07};
  ResponseHeader h = decode_response_header(wire);
  EXPECT_EQ(h.length, 16u);
  EXPECT_EQ(h.status, 7);
  EXPECT_EQ(encode_response_header(h), wire);
  ResponseHeader big = decode_response_header(encode_response_header({0xfffffffe, 255}));
  EXPECT_EQ(big.length, 0xfffffffeu);
  EXPECT_EQ(big.status, 255);
}

// The notice is the one request header no payload can have: all ones on the wire.
TEST(WorkerFrame, ResumedNoticeIsAllOnes) {
  EXPECT_EQ(encode_request_header(kResumedNotice),
            (std::array<uint8_t, 4>{0xff, 0xff, 0xff, 0xff}));
}

}  // namespace
}  // namespace wisp::agent
