#include "shim/ttrpc_frame.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace wisp::shim::ttrpc {

namespace {

void put_be32(uint8_t* out, uint32_t v) {
  out[0] = static_cast<uint8_t>(v >> 24);
  out[1] = static_cast<uint8_t>(v >> 16);
  out[2] = static_cast<uint8_t>(v >> 8);
  out[3] = static_cast<uint8_t>(v);
}

uint32_t get_be32(const uint8_t* in) {
  return static_cast<uint32_t>(in[0]) << 24 | static_cast<uint32_t>(in[1]) << 16 |
         static_cast<uint32_t>(in[2]) << 8 | static_cast<uint32_t>(in[3]);
}

}  // namespace

void encode_header(const FrameHeader& header, uint8_t out[kHeaderBytes]) {
  put_be32(out, header.length);
  put_be32(out + 4, header.stream_id);
  out[8] = header.type;
  out[9] = header.flags;
}

FrameHeader decode_header(const uint8_t in[kHeaderBytes]) {
  return FrameHeader{get_be32(in), get_be32(in + 4), in[8], in[9]};
}

std::string encode_frame(uint32_t stream_id, MessageType type, std::string_view payload) {
  if (payload.size() > kMaxMessageBytes) {
    throw Error("ttrpc: a message of " + std::to_string(payload.size()) +
                " bytes is over the limit of " + std::to_string(kMaxMessageBytes));
  }
  std::string out(kHeaderBytes + payload.size(), '\0');
  FrameHeader header{static_cast<uint32_t>(payload.size()), stream_id, static_cast<uint8_t>(type),
                     0};
  encode_header(header, reinterpret_cast<uint8_t*>(out.data()));
  std::memcpy(out.data() + kHeaderBytes, payload.data(), payload.size());
  return out;
}

void FrameDecoder::feed(const void* data, size_t size) {
  auto* bytes = static_cast<const char*>(data);
  // The tail of an oversized frame's body is dropped here, before it is ever stored.
  uint64_t dropped = std::min<uint64_t>(skip_, size);
  skip_ -= dropped;
  compact();
  buffer_.append(bytes + dropped, size - dropped);
}

void FrameDecoder::compact() {
  if (consumed_ == 0) return;
  buffer_.erase(0, consumed_);
  consumed_ = 0;
}

std::optional<Frame> FrameDecoder::next() {
  if (skip_ > 0) return std::nullopt;  // still dropping an oversized body
  size_t available = buffer_.size() - consumed_;
  if (available < kHeaderBytes) return std::nullopt;
  auto* start = reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_);
  Frame frame;
  frame.header = decode_header(start);
  if (frame.header.length > kMaxMessageBytes) {
    frame.oversized = true;
    consumed_ += kHeaderBytes;
    uint64_t in_buffer = std::min<uint64_t>(buffer_.size() - consumed_, frame.header.length);
    consumed_ += in_buffer;
    skip_ = frame.header.length - in_buffer;
    return frame;
  }
  if (available - kHeaderBytes < frame.header.length) return std::nullopt;
  frame.payload.assign(buffer_.data() + consumed_ + kHeaderBytes, frame.header.length);
  consumed_ += kHeaderBytes + frame.header.length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  return frame;
}

}  // namespace wisp::shim::ttrpc
