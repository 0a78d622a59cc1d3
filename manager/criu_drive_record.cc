#include "manager/criu_drive_record.h"

#include <cstdint>
#include <cstdio>
#include <vector>

#include "base/error.h"

namespace wisp::manager {
namespace {

constexpr char kRecordHeader[] = "wisp-criu-drive 1";
constexpr size_t kMaxRecordBytes = 512;

std::string hex16(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string format_criu_drive_record(const CriuDriveRecord& r) {
  return std::string(kRecordHeader) + "\nbytes " + std::to_string(r.identity.size_bytes) +
         "\nmtime_ns " + std::to_string(r.identity.mtime_ns) + "\ndigest " +
         hex16(r.identity.digest) + "\ncrc64 " + hex16(r.crc64) + "\nimage_crc64 " +
         hex16(r.image_crc64) + "\n";
}

CriuDriveRecord parse_criu_drive_record(const std::string& text, const std::string& file) {
  auto bad = [&file](const std::string& why) -> void {
    throw Error(file + ": not a valid CRIU drive record: " + why);
  };
  if (text.size() > kMaxRecordBytes) bad("over " + std::to_string(kMaxRecordBytes) + " bytes");
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) bad("its last line is not terminated");
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.empty() || lines[0] != kRecordHeader)
    bad("no '" + std::string(kRecordHeader) + "' line");
  static const char* const kKeys[] = {"bytes", "mtime_ns", "digest", "crc64", "image_crc64"};
  constexpr size_t kFields = sizeof(kKeys) / sizeof(kKeys[0]);
  if (lines.size() != kFields + 1)
    bad(std::to_string(lines.size()) + " lines, expected " + std::to_string(kFields + 1));
  std::string values[kFields];
  for (size_t i = 0; i < kFields; ++i) {
    const std::string& line = lines[i + 1];
    std::string key = std::string(kKeys[i]) + " ";
    if (!line.starts_with(key))
      bad("line " + std::to_string(i + 2) + ": expected '" + kKeys[i] + " '");
    values[i] = line.substr(key.size());
  }
  auto decimal = [&bad](const std::string& v, const char* key) {
    // One spelling per number: no sign, no leading zero.
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos ||
        (v.size() > 1 && v[0] == '0'))
      bad(std::string(key) + ": not a number");
    return std::stoull(v);
  };
  auto hex = [&bad](const std::string& v, const char* key) {
    if (v.size() != 16 || v.find_first_not_of("0123456789abcdef") != std::string::npos)
      bad(std::string(key) + ": not 16 lower-case hex digits");
    return std::stoull(v, nullptr, 16);
  };
  CriuDriveRecord r;
  r.identity.size_bytes = decimal(values[0], "bytes");
  uint64_t mtime = decimal(values[1], "mtime_ns");
  if (mtime > static_cast<uint64_t>(INT64_MAX)) bad("mtime_ns: out of range");
  r.identity.mtime_ns = static_cast<int64_t>(mtime);
  r.identity.digest = hex(values[2], "digest");
  r.crc64 = hex(values[3], "crc64");
  r.image_crc64 = hex(values[4], "image_crc64");
  if (r.identity.size_bytes == 0 || r.identity.size_bytes > kMaxCriuDriveBytes)
    bad("bytes: 0 or over " + std::to_string(kMaxCriuDriveBytes >> 30) + " GiB");
  return r;
}

}  // namespace wisp::manager
