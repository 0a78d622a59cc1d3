// libFuzzer target for the working-set file parser (snapshot/working_set.h), a file a restore
// reads from the snapshot's directory (host input: untrusted). The first input byte chooses:
//  - even: the rest is a whole file: the frame checks must reject it or accept it, never crash;
//  - odd: the rest is the header's page count (8 bytes) and range bytes, framed here with a
//    correct magic, version, range count and CRC64, so the fuzzer reaches the range checks
//    behind the checksum.
// Whatever is accepted must lie inside its memory and survive an encode/parse round trip.
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "base/error.h"
#include "snapshot/crc64.h"
#include "snapshot/working_set.h"

namespace {

using namespace wisp::snapshot;  // NOLINT: a fuzz target

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<uint8_t> frame(std::span<const uint8_t> rest) {
  uint8_t pages[8] = {};
  std::memcpy(pages, rest.data(), rest.size() < 8 ? rest.size() : 8);
  std::span<const uint8_t> ranges = rest.size() > 8 ? rest.subspan(8) : std::span<const uint8_t>{};
  size_t n = ranges.size() / 16;
  std::vector<uint8_t> out(kWorkingSetHeaderBytes + n * 16 + 8);
  std::memcpy(out.data(), kWorkingSetMagic, sizeof kWorkingSetMagic);
  out[8] = kWorkingSetMajor;
  for (int i = 0; i < 4; ++i) out[12 + i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(&out[16], pages, 8);
  if (n) std::memcpy(&out[kWorkingSetHeaderBytes], ranges.data(), n * 16);
  size_t body = out.size() - 8;
  uint64_t crc = crc64(std::span(out.data(), body));
  for (int i = 0; i < 8; ++i) out[body + i] = static_cast<uint8_t>(crc >> (8 * i));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  std::vector<uint8_t> file =
      data[0] % 2 ? frame(rest) : std::vector<uint8_t>(rest.begin(), rest.end());
  WorkingSet ws;
  try {
    ws = parse_working_set(file, "fuzz.working-set");
  } catch (const wisp::Error&) {
    return 0;
  }
  for (const PageRange& r : ws.ranges)
    check(r.count > 0 && r.first < ws.memory_pages && r.count <= ws.memory_pages - r.first);
  check(encode_working_set(ws) == file);
  return 0;
}
