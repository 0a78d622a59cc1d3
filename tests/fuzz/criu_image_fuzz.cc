// libFuzzer target for the CRIU image archive (api/criu_image.h): what the agent unpacks from
// the host's upload and what the host verifies in a template. Checks: nothing crashes, every
// parsed record lies inside the input, in order, with a valid name, and rebuilding the archive
// from the records gives the input back byte for byte.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "api/criu_image.h"
#include "base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<wisp::api::CriuImageEntry> entries;
  try {
    entries = wisp::api::parse_criu_image(std::span<const uint8_t>(data, size), "fuzz");
  } catch (const wisp::Error&) {
    return 0;
  }
  std::string rebuilt(wisp::api::kCriuImageMagic);
  uint64_t last_end = 0;
  for (const auto& e : entries) {
    if (!wisp::api::criu_image_name_ok(e.name)) std::abort();
    if (e.offset > size || e.size > size - e.offset || e.offset < last_end) std::abort();
    last_end = e.offset + e.size;
    rebuilt += wisp::api::criu_record_header(e.name, e.size);
    rebuilt.append(reinterpret_cast<const char*>(data + e.offset), e.size);
  }
  rebuilt += wisp::api::criu_image_end();
  if (rebuilt.size() != size ||
      rebuilt.compare(0, size, reinterpret_cast<const char*>(data), size) != 0)
    std::abort();
  return 0;
}
