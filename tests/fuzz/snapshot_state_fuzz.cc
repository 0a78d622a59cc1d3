// libFuzzer target for the snapshot state file parser (snapshot/state_file.h), in four quarters
// chosen by the first input byte (mod 4):
//  - 0: the rest is a whole state file: the frame checks (size, magic, version, length,
//    checksum) must reject it with a wisp::Error or accept it, never crash.
//  - 1: the rest is a payload, framed here with a correct header and CRC64, so the fuzzer
//    reaches the Cap'n Proto decoder and the state validation behind the checksum.
//  - 2, 3: the rest edits the payload of a valid state (2: a full snapshot, 3: a diff), three
//    bytes per edit (16-bit offset, XOR mask), then it is framed as in 1. A valid state is too
//    big for the fuzzer to find from nothing; this way it explores the values validate_state
//    (and each State's validate() behind it) and the decoder see, accepted and refused,
//    device kinds and their fields included.
// Whatever is accepted must survive an encode/decode round trip unchanged.
#include <cstdint>
#include <cstring>
#include <span>

#include "base/error.h"
#include "snapshot/crc64.h"
#include "snapshot/state_codec.h"
#include "snapshot/state_file.h"
#include "tests/unit/snapshot_test_state.h"

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

// Payloads of a small valid state (one vCPU, one device of each kind), full and diff.
Bytes valid_payload(bool diff) {
  SnapshotState s = testing::sample_state(1);
  if (diff) {
    s.diff.parent_dir = "/snapshots/parent";
    s.diff.parent_id = "0123456789abcdef";
    s.diff.pages = testing::pattern((memory_file_size(s.memory) / kPageSize + 7) / 8, 1);
  }
  validate_state(s, "fuzz seed");
  return encode_state_payload(s);
}

Bytes edited(const Bytes& payload, std::span<const uint8_t> edits) {
  Bytes out = payload;
  for (size_t i = 0; i + 3 <= edits.size(); i += 3) {
    size_t at = (edits[i] | edits[i + 1] << 8) % out.size();
    out[at] ^= edits[i + 2];
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  static const Bytes full = valid_payload(false), diff = valid_payload(true);
  Bytes file;
  switch (data[0] % 4) {
    case 0:
      file.assign(rest.begin(), rest.end());
      break;
    case 1:
      file = frame(rest);
      break;
    default:
      file = frame(edited(data[0] % 4 == 2 ? full : diff, rest));
      break;
  }
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
