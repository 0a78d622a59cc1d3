// ttrpc's wire framing, as containerd and its shims speak it over a Unix socket: each message is
// a 10-byte header (big-endian payload length, big-endian stream id, message type, flags)
// followed by the payload, a protobuf Request or Response (shim/ttrpc_envelope.proto). A client
// opens a stream per call on an odd id; the answer comes back on the same id.
//
// The decoder is incremental (bytes arrive however the socket splits them) and holds at most
// one frame of kMaxMessageBytes: a longer frame is reported as oversized and its body skipped
// as it streams past, never buffered, so a peer cannot make the shim allocate what it claims.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wisp::shim::ttrpc {

constexpr size_t kHeaderBytes = 10;
// ttrpc's own limit (messageLengthMax): containerd sends nothing longer and accepts nothing
// longer.
constexpr uint32_t kMaxMessageBytes = 4u << 20;

enum class MessageType : uint8_t { kRequest = 1, kResponse = 2 };

struct FrameHeader {
  uint32_t length = 0;  // of the payload, without this header
  uint32_t stream_id = 0;
  uint8_t type = 0;  // a MessageType; others are ignored (ttrpc's forward compatibility)
  uint8_t flags = 0;
};

void encode_header(const FrameHeader& header, uint8_t out[kHeaderBytes]);
FrameHeader decode_header(const uint8_t in[kHeaderBytes]);

// Header and payload. Throws wisp::Error when the payload is over kMaxMessageBytes.
std::string encode_frame(uint32_t stream_id, MessageType type, std::string_view payload);

struct Frame {
  FrameHeader header;
  std::string payload;     // empty when oversized
  bool oversized = false;  // header.length > kMaxMessageBytes: the body was skipped
};

class FrameDecoder {
 public:
  // Appends bytes read from the connection.
  void feed(const void* data, size_t size);
  // The next complete frame, if the bytes fed so far hold one. An oversized frame is returned
  // as soon as its header is read (so the caller can answer it); its body is then dropped as
  // it arrives.
  std::optional<Frame> next();
  // Bytes of a frame begun but not finished: nonzero at end of stream means a truncated frame.
  size_t pending_bytes() const { return buffer_.size() - consumed_; }

 private:
  void compact();

  std::string buffer_;
  size_t consumed_ = 0;  // bytes of buffer_ already handed out
  uint64_t skip_ = 0;    // body bytes of an oversized frame still to drop
};

}  // namespace wisp::shim::ttrpc
