// The bodies the gateway reads and writes: a request body read up to a limit (checked against
// Content-Length before reading, and against the bytes as they stream in), Cap'n Proto structs
// to and from JSON with capnp's codec ($Json.base64 Data fields, unknown fields rejected), and
// the {"error": "..."} body of every error reply.
#pragma once

#include <capnp/compat/json.h>
#include <kj/async-io.h>

#include <cstdint>
#include <string>

namespace wisp::http_gateway {

// A codec for api/wisp.capnp's structs: honours their $Json annotations, rejects unknown
// fields (a misspelt "timeoutMs" is an error, not a silent default), bounds nesting.
kj::Own<capnp::JsonCodec> make_codec();

// Reads the whole body, failing with "too-large" once it is over `limit` bytes (before reading
// anything when the declared length already is). `what` names the body in the message.
kj::Promise<kj::Array<kj::byte>> read_body(kj::AsyncInputStream& body, uint64_t limit,
                                           std::string what);

// Decodes `json` into `out`, failing with "bad-request: `what` is not valid JSON ..." naming
// the codec's complaint.
void decode_json(const capnp::JsonCodec& codec, kj::ArrayPtr<const kj::byte> json,
                 capnp::DynamicStruct::Builder out, const std::string& what);

// {"error": message}, encoded by the codec (so the message is escaped properly).
std::string error_json(const capnp::JsonCodec& codec, const std::string& message);

}  // namespace wisp::http_gateway
