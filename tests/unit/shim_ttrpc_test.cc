// shim/ttrpc_*: the frame header's byte layout, the incremental decoder (split reads, several
// frames in one read, an oversized frame skipped without buffering it), and the server over a
// real socketpair (KJ's two-way pipe): dispatch by service and method, and the status every
// kind of bad input gets (Unimplemented, InvalidArgument, ResourceExhausted, Internal) while
// the connection keeps serving.
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <stdexcept>
#include <string>

#include "base/error.h"
#include "shim/ttrpc_client.h"
#include "shim/ttrpc_envelope.pb.h"
#include "shim/ttrpc_frame.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim::ttrpc {
namespace {

std::string request_bytes(const std::string& service, const std::string& method,
                          const std::string& payload) {
  wire::Request r;
  r.set_service(service);
  r.set_method(method);
  r.set_payload(payload);
  std::string out;
  r.SerializeToString(&out);
  return out;
}

TEST(TtrpcFrame, HeaderIsBigEndianLengthStreamTypeFlags) {
  std::string frame = encode_frame(0x01020304, MessageType::kResponse, "abc");
  ASSERT_EQ(frame.size(), kHeaderBytes + 3);
  EXPECT_EQ(frame.substr(0, kHeaderBytes), std::string("\0\0\0\3\1\2\3\4\2\0", 10));
  EXPECT_EQ(frame.substr(kHeaderBytes), "abc");
  FrameHeader h = decode_header(reinterpret_cast<const uint8_t*>(frame.data()));
  EXPECT_EQ(h.length, 3u);
  EXPECT_EQ(h.stream_id, 0x01020304u);
  EXPECT_EQ(h.type, 2);
  EXPECT_EQ(h.flags, 0);
}

TEST(TtrpcFrame, EncodeRefusesMoreThanTheLimit) {
  EXPECT_THROW(encode_frame(1, MessageType::kRequest, std::string(kMaxMessageBytes + 1, 'x')),
               Error);
  EXPECT_NO_THROW(encode_frame(1, MessageType::kRequest, std::string(kMaxMessageBytes, 'x')));
}

TEST(TtrpcFrame, DecoderAssemblesAFrameFedByteByByte) {
  std::string frame = encode_frame(7, MessageType::kRequest, "payload");
  FrameDecoder d;
  for (size_t i = 0; i + 1 < frame.size(); ++i) {
    d.feed(&frame[i], 1);
    ASSERT_FALSE(d.next()) << "a frame before byte " << i;
  }
  d.feed(&frame.back(), 1);
  auto f = d.next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->header.stream_id, 7u);
  EXPECT_EQ(f->payload, "payload");
  EXPECT_FALSE(f->oversized);
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.pending_bytes(), 0u);
}

TEST(TtrpcFrame, DecoderSplitsSeveralFramesInOneRead) {
  std::string bytes = encode_frame(1, MessageType::kRequest, "one") +
                      encode_frame(3, MessageType::kRequest, "") +
                      encode_frame(5, MessageType::kRequest, "three");
  bytes += encode_frame(7, MessageType::kRequest, "four").substr(0, 12);  // a partial fourth
  FrameDecoder d;
  d.feed(bytes.data(), bytes.size());
  std::vector<std::string> got;
  while (auto f = d.next()) got.push_back(f->payload);
  EXPECT_EQ(got, (std::vector<std::string>{"one", "", "three"}));
  EXPECT_EQ(d.pending_bytes(), 12u);
}

TEST(TtrpcFrame, OversizedFrameIsReportedAndItsBodySkipped) {
  const uint32_t claimed = kMaxMessageBytes + 100;
  uint8_t header[kHeaderBytes];
  encode_header(FrameHeader{claimed, 9, 1, 0}, header);
  FrameDecoder d;
  d.feed(header, sizeof(header));
  auto f = d.next();
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->oversized);
  EXPECT_EQ(f->header.stream_id, 9u);
  EXPECT_TRUE(f->payload.empty());
  // The body arrives in pieces, then a good frame right behind it in the same read.
  std::string chunk(64 * 1024, 'z');
  uint64_t left = claimed;
  while (left > chunk.size()) {
    d.feed(chunk.data(), chunk.size());
    left -= chunk.size();
    ASSERT_FALSE(d.next());
    ASSERT_EQ(d.pending_bytes(), 0u) << "the oversized body is being buffered";
  }
  std::string tail(left, 'z');
  tail += encode_frame(11, MessageType::kRequest, "after");
  d.feed(tail.data(), tail.size());
  auto g = d.next();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->header.stream_id, 11u);
  EXPECT_EQ(g->payload, "after");
}

// A server on one end of a socketpair, a client on the other, one event loop.
class TtrpcServerTest : public ::testing::Test {
 protected:
  TtrpcServerTest() : io_(kj::setupAsyncIo()), pipe_(io_.provider->newTwoWayPipe()) {
    router_.add("test.Echo", "Echo", [](std::string payload) -> kj::Promise<Result> {
      return Result::ok("echo:" + payload);
    });
    router_.add("test.Echo", "Fail", [](std::string) -> kj::Promise<Result> {
      return Result::error(Code::kNotFound, "no such thing");
    });
    router_.add("test.Echo", "Throw", [](std::string) -> kj::Promise<Result> {
      throw std::runtime_error("handler broke");
    });
    router_.add("test.Echo", "ThrowLater", [](std::string) -> kj::Promise<Result> {
      return kj::evalLater([]() -> Result { throw std::runtime_error("async handler broke"); });
    });
    serving_ =
        serve_connection(router_, kj::mv(pipe_.ends[0])).eagerlyEvaluate([](kj::Exception&& e) {
          ADD_FAILURE() << "server: " << e.getDescription().cStr();
        });
  }

  // KJ's members may throw from their destructors; gtest's base destructor may not.
  ~TtrpcServerTest() noexcept override {}

  Result call(const std::string& service, const std::string& method,
              const std::string& payload = "") {
    return client_.call(service, method, payload).wait(io_.waitScope);
  }

  void write_raw(const std::string& bytes) {
    pipe_.ends[1]->write(bytes.data(), bytes.size()).wait(io_.waitScope);
  }

  // The next frame the server sends.
  Frame read_frame() {
    while (true) {
      if (auto f = raw_decoder_.next()) return *f;
      char buf[4096];
      size_t n = pipe_.ends[1]->tryRead(buf, 1, sizeof(buf)).wait(io_.waitScope);
      if (n == 0) throw std::runtime_error("server closed the connection");
      raw_decoder_.feed(buf, n);
    }
  }

  Result read_result(uint32_t expected_stream) {
    Frame f = read_frame();
    EXPECT_EQ(f.header.stream_id, expected_stream);
    EXPECT_EQ(f.header.type, static_cast<uint8_t>(MessageType::kResponse));
    Result r;
    EXPECT_TRUE(decode_response(f.payload, &r));
    return r;
  }

  kj::AsyncIoContext io_;
  kj::TwoWayPipe pipe_;
  Router router_;
  kj::Promise<void> serving_ = nullptr;
  Client client_{*pipe_.ends[1]};
  FrameDecoder raw_decoder_;
};

TEST_F(TtrpcServerTest, DispatchesByServiceAndMethod) {
  Result r = call("test.Echo", "Echo", "hello");
  EXPECT_EQ(r.code, Code::kOk);
  EXPECT_EQ(r.payload, "echo:hello");
  r = call("test.Echo", "Fail");
  EXPECT_EQ(r.code, Code::kNotFound);
  EXPECT_EQ(r.message, "no such thing");
}

TEST_F(TtrpcServerTest, UnknownServiceOrMethodIsUnimplemented) {
  Result r = call("test.Echo", "Nope");
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_EQ(r.message, "method Nope");
  r = call("containerd.task.v2.Task", "Create");
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_EQ(r.message, "service containerd.task.v2.Task");
  EXPECT_EQ(call("test.Echo", "Echo", "still").payload, "echo:still");
}

TEST_F(TtrpcServerTest, HandlerExceptionsBecomeInternal) {
  Result r = call("test.Echo", "Throw");
  EXPECT_EQ(r.code, Code::kInternal);
  EXPECT_NE(r.message.find("handler broke"), std::string::npos) << r.message;
  r = call("test.Echo", "ThrowLater");
  EXPECT_EQ(r.code, Code::kInternal);
  EXPECT_NE(r.message.find("async handler broke"), std::string::npos) << r.message;
  EXPECT_EQ(call("test.Echo", "Echo", "x").payload, "echo:x");
}

TEST_F(TtrpcServerTest, GarbageRequestIsInvalidArgument) {
  write_raw(encode_frame(1, MessageType::kRequest, std::string("\xff\xff\xff\xff\x0f", 5)));
  Result r = read_result(1);
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find("unmarshal request error"), std::string::npos) << r.message;
}

TEST_F(TtrpcServerTest, EvenStreamIdIsInvalidArgument) {
  write_raw(encode_frame(2, MessageType::kRequest, request_bytes("test.Echo", "Echo", "x")));
  Result r = read_result(2);
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_EQ(r.message, "StreamID must be odd for client initiated streams");
}

TEST_F(TtrpcServerTest, UnknownFrameTypeIsIgnored) {
  write_raw(encode_frame(1, static_cast<MessageType>(7), "whatever"));
  write_raw(encode_frame(3, MessageType::kResponse, "a response sent to the server"));
  write_raw(encode_frame(5, MessageType::kRequest, request_bytes("test.Echo", "Echo", "y")));
  Result r = read_result(5);  // the first frame answered is the request's
  EXPECT_EQ(r.payload, "echo:y");
}

TEST_F(TtrpcServerTest, RequestSplitAcrossManyWritesIsAnswered) {
  std::string frame =
      encode_frame(1, MessageType::kRequest, request_bytes("test.Echo", "Echo", "z"));
  for (char c : frame) write_raw(std::string(1, c));
  Result r = read_result(1);
  EXPECT_EQ(r.payload, "echo:z");
}

TEST_F(TtrpcServerTest, OversizedFrameIsResourceExhaustedAndTheConnectionGoesOn) {
  const uint32_t claimed = kMaxMessageBytes + 1;
  uint8_t header[kHeaderBytes];
  encode_header(FrameHeader{claimed, 3, 1, 0}, header);
  write_raw(std::string(reinterpret_cast<char*>(header), sizeof(header)));
  std::string body(claimed, 'q');
  auto writing = pipe_.ends[1]->write(body.data(), body.size());
  Result r = read_result(3);
  EXPECT_EQ(r.code, Code::kResourceExhausted);
  EXPECT_NE(r.message.find("exceed maximum message size of 4194304"), std::string::npos)
      << r.message;
  writing.wait(io_.waitScope);
  write_raw(encode_frame(5, MessageType::kRequest, request_bytes("test.Echo", "Echo", "ok")));
  EXPECT_EQ(read_result(5).payload, "echo:ok");
}

TEST_F(TtrpcServerTest, ServerEndsWhenThePeerCloses) {
  EXPECT_EQ(call("test.Echo", "Echo", "a").payload, "echo:a");
  pipe_.ends[1]->shutdownWrite();
  serving_.wait(io_.waitScope);
}

}  // namespace
}  // namespace wisp::shim::ttrpc
