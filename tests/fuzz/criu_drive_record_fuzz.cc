// libFuzzer target for a CRIU image drive's record file (manager/criu_drive_record.h), read
// from a template's snapshot directory before the drive is attached to a guest. Checks:
// nothing crashes, a refusal is a wisp::Error, and what parses formats back to the input byte
// for byte (the format has one spelling).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "manager/criu_drive_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  wisp::manager::CriuDriveRecord record;
  try {
    record = wisp::manager::parse_criu_drive_record(text, "fuzz");
  } catch (const wisp::Error&) {
    return 0;
  }
  if (wisp::manager::format_criu_drive_record(record) != text) std::abort();
  return 0;
}
