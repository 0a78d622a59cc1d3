// The framing between wisp-agent and a warm worker (api/worker_protocol.md): plain byte
// layouts, no I/O, so they can be tested on their own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace wisp::agent {

// Request: u32 little-endian payload length, then the payload.
inline constexpr size_t kRequestHeaderBytes = 4;
// Response: u32 little-endian result length, u8 status, then the result.
inline constexpr size_t kResponseHeaderBytes = 5;
// A request header whose length is this is the "resumed" notice: no payload follows and no
// response is expected. The agent sends it after a restored clone's kernel generator was
// reseeded, so the worker reseeds its own (api/worker_protocol.md). No request payload can
// have this length (the agent refuses one).
inline constexpr uint32_t kResumedNotice = 0xffffffff;
// Status 0 means success; anything else is the handler's own error code.
inline constexpr uint8_t kWorkerStatusOk = 0;

std::array<uint8_t, kRequestHeaderBytes> encode_request_header(uint32_t payload_length);

struct ResponseHeader {
  uint32_t length;
  uint8_t status;
};
ResponseHeader decode_response_header(const std::array<uint8_t, kResponseHeaderBytes>& bytes);

// The other directions, for workers written in C++ and for tests.
std::array<uint8_t, kResponseHeaderBytes> encode_response_header(ResponseHeader header);
uint32_t decode_request_header(const std::array<uint8_t, kRequestHeaderBytes>& bytes);

}  // namespace wisp::agent
