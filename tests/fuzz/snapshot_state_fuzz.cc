// libFuzzer target for the snapshot state file parser (snapshot/state_file.h), in two halves
// chosen by the first input byte:
//  - even: the rest is a whole state file: the frame checks (size, magic, version, length,
//    checksum) must reject it with a wisp::Error or accept it, never crash.
//  - odd: the rest is a payload, framed here with a correct header and CRC64, so the fuzzer
//    reaches the Cap'n Proto decoder and the state validation behind the checksum.
// Whatever is accepted must survive an encode/decode round trip unchanged.
#include <cstdint>
#include <cstring>
#include <span>

#include "snapshot/crc64.h"
#include "snapshot/state_file.h"
#include "vmm/base/error.h"

namespace {

using namespace wisp::snapshot;  // NOLINT: a fuzz target

void check(bool ok) {
  if (!ok) __builtin_trap();
}

Bytes frame(std::span<const uint8_t> payload) {
  Bytes out(kStateHeaderBytes + payload.size() + kStateTrailerBytes);
  std::memcpy(out.data(), kStateMagic, sizeof kStateMagic);
  out[8] = kFormatMajor;
  for (int i = 0; i < 8; ++i) out[16 + i] = static_cast<uint8_t>(payload.size() >> (8 * i));
  if (!payload.empty()) std::memcpy(&out[kStateHeaderBytes], payload.data(), payload.size());
  size_t body = kStateHeaderBytes + payload.size();
  uint64_t crc = crc64(std::span(out.data(), body));
  for (int i = 0; i < 8; ++i) out[body + i] = static_cast<uint8_t>(crc >> (8 * i));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  Bytes file = (data[0] & 1) ? frame(rest) : Bytes(rest.begin(), rest.end());
  SnapshotState state;
  try {
    state = decode_state_file(file, "fuzz.state");
  } catch (const wisp::Error&) {
    return 0;
  }
  SnapshotState again = decode_state_file(encode_state_file(state), "fuzz.state");
  check(again == state);
  return 0;
}
