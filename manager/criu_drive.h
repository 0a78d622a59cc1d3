// A template's CRIU image as a read-only drive (issue 17): the archive (criu_image_store.h)
// unpacked on the host into an ext4 image that the CRIU fallback attaches to the template's
// cold-booted guest, so that the agent restores straight from it (agent/criu_drive.h) instead
// of receiving the archive over vsock and unpacking it. In the snapshot directory:
//
//   criu-image.ext4       the drive (no journal, 4 KiB blocks; the image's files, 0600)
//   criu-image.ext4.sum   its record:
//                           wisp-criu-drive 1
//                           bytes N            its identity, as snapshot_trust's DriveIdentity:
//                           mtime_ns N         size, modification time and the digest of its
//                           digest HEX16       first and last 4 KiB
//                           crc64 HEX16        the whole drive's CRC-64
//                           image_crc64 HEX16  the archive's (its .sum) it was made from
//
// The archive stays the source of truth: a drive that is missing, whose record does not parse,
// whose identity differs from its record or that was made from another archive is made again
// from the (CRC-checked) archive before a guest boots with it. The drive is made at template
// creation and kept by rebuilds; its full CRC is checked by `wisp snapshot verify`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "manager/criu_drive_record.h"

namespace wisp::manager {

// The ext4 image's size for files of `file_bytes` bytes in all, `files` of them: every file
// rounded to whole blocks, a block of metadata each, and room for the file system's own.
uint64_t criu_drive_bytes(uint64_t file_bytes, uint64_t files);

struct CriuDriveMade {
  CriuDriveRecord record;
  uint32_t files = 0;
  double ms = 0;  // unpack, mkfs, checksum and publication
};

// Makes `dir`/criu-image.ext4 and its record from `dir`'s archive (its CRC and names checked
// first): unpacked into a private temporary directory in `dir`, mkfs.ext4 -d, fsynced,
// published by rename, the record written atomically. Throws Error naming the file; leaves no
// temporary behind.
CriuDriveMade make_criu_drive(const std::string& dir);

// Why `dir`'s drive cannot be used as it is ("" when it can): no drive or no record, a record
// that does not parse, an identity that differs from its record, or a record made from
// another archive than `dir`'s .sum names. Cheap: the drive's ends only.
std::string criu_drive_unfit_reason(const std::string& dir);

// The drive of `dir`, made again first when criu_drive_unfit_reason says so (after `log`
// says why, "CRIU image drive REASON: making it again from the archive"). Serialised with
// other processes doing the same on `dir` (a lock on the directory). Returns its path; sets
// `*remade` (may be null). Throws Error when it cannot be made.
std::string ensure_criu_drive(const std::string& dir,
                              const std::function<void(const std::string&)>& log,
                              bool* remade = nullptr);

// Whether `dir` has a drive record.
bool has_criu_drive(const std::string& dir);

// Full check: the identity and the whole drive's CRC-64 against the record, and the record
// against the archive's .sum. Throws Error naming the file and the fault.
CriuDriveRecord verify_criu_drive(const std::string& dir);

}  // namespace wisp::manager
