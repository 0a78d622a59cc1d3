#include "agent/worker_frame.h"

namespace wisp::agent {
namespace {

void put_le32(uint8_t* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint32_t get_le32(const uint8_t* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(in[i]) << (8 * i);
  return v;
}

}  // namespace

std::array<uint8_t, kRequestHeaderBytes> encode_request_header(uint32_t payload_length) {
  std::array<uint8_t, kRequestHeaderBytes> out{};
  put_le32(out.data(), payload_length);
  return out;
}

uint32_t decode_request_header(const std::array<uint8_t, kRequestHeaderBytes>& bytes) {
  return get_le32(bytes.data());
}

ResponseHeader decode_response_header(const std::array<uint8_t, kResponseHeaderBytes>& bytes) {
  return ResponseHeader{get_le32(bytes.data()), bytes[4]};
}

std::array<uint8_t, kResponseHeaderBytes> encode_response_header(ResponseHeader header) {
  std::array<uint8_t, kResponseHeaderBytes> out{};
  put_le32(out.data(), header.length);
  out[4] = header.status;
  return out;
}

}  // namespace wisp::agent
