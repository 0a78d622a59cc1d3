// The record file of a template's CRIU image drive (manager/criu_drive.h): its identity and
// checksums, a small text file read back as untrusted input (fuzzed: criu_drive_record_fuzz).
#pragma once

#include <cstdint>
#include <string>

#include "snapshot/snapshot_trust.h"

namespace wisp::manager {

inline constexpr char kCriuDriveFile[] = "criu-image.ext4";
inline constexpr char kCriuDriveRecordFile[] = "criu-image.ext4.sum";

struct CriuDriveRecord {
  snapshot::DriveIdentity identity;
  uint64_t crc64 = 0;
  uint64_t image_crc64 = 0;
};

// The largest drive a record may describe.
inline constexpr uint64_t kMaxCriuDriveBytes = 4ull << 30;

// The record file's text, and back. parse_criu_drive_record reads untrusted bytes: exactly
// the six lines criu_drive.h shows, in that order, numbers in range. Throws Error naming `file` and
// the line.
std::string format_criu_drive_record(const CriuDriveRecord& record);
CriuDriveRecord parse_criu_drive_record(const std::string& text, const std::string& file);

}  // namespace wisp::manager
