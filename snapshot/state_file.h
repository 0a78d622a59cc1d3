// The state file of a snapshot: a frame around the Cap'n Proto-encoded SnapshotState.
//
//   offset  size  field
//        0     8  magic "WISPSNAP"
//        8     2  format major (little-endian); readers reject any major but kFormatMajor
//       10     2  format minor; newer minors only add schema fields, so they are accepted
//       12     4  reserved, zero
//       16     8  payload length in bytes (<= kMaxPayloadBytes, a multiple of 8)
//       24     n  payload (state.capnp SnapshotState, flat-array serialization)
//     24+n     8  CRC-64/XZ of bytes [0, 24+n)
//
// The format version is independent of wisp's release version. Major 2 stores vmm's State
// types as they are (one machine, its devices as an ordered list of kind, spec and state); a
// major-1 file, from an older wisp, is refused with a message saying to re-create the snapshot.
// Every rejection is a wisp::Error whose message names the file and what is wrong.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "snapshot/snapshot_state.h"

namespace wisp::snapshot {

constexpr char kStateMagic[8] = {'W', 'I', 'S', 'P', 'S', 'N', 'A', 'P'};
constexpr uint16_t kFormatMajor = 2;
// Minor 1 adds Machine.cpuModel (`--portable`). A minor-0 reader ignores it, computes the host
// model's CPUID and so refuses a portable snapshot as from another CPU, which is safe.
constexpr uint16_t kFormatMinor = 1;
constexpr uint64_t kMaxPayloadBytes = 64ull << 20;
constexpr size_t kStateHeaderBytes = 24;
constexpr size_t kStateTrailerBytes = 8;

struct StateFileInfo {
  uint16_t major = 0;
  uint16_t minor = 0;
  uint64_t payload_bytes = 0;
  uint64_t file_bytes = 0;
};

// Frames `state` (header, payload, CRC64). Does not validate it.
Bytes encode_state_file(const SnapshotState& state);

// Checks the frame (size, magic, version, length, checksum), parses the payload and validates
// the state. `file` names the source in error messages. `info` (optional) gets the header.
SnapshotState decode_state_file(std::span<const uint8_t> bytes, const std::string& file,
                                StateFileInfo* info = nullptr);

// Writes the framed state into the empty file `fd` (open for writing) and fsyncs it. `path`
// names the file in error messages.
void write_state_file(int fd, const std::string& path, const SnapshotState& state);

// Checks a state file's header alone (its first kStateHeaderBytes bytes or more): size, magic
// and format major, with decode_state_file's messages. Returns the header's fields.
StateFileInfo check_state_header(std::span<const uint8_t> bytes, const std::string& file);

// Reads `path`'s header and checks it (check_state_header) without reading the rest: whether
// this wisp could read the file at all, in one small read. Throws Error naming the file.
StateFileInfo read_state_header(const std::string& path);

// Reads and decodes `path`; its size is checked against the cap before anything is allocated.
SnapshotState read_state_file(const std::string& path, StateFileInfo* info = nullptr);
// The same for the open file `fd` (read from offset 0); `path` names it in messages.
SnapshotState read_state_fd(int fd, const std::string& path, StateFileInfo* info = nullptr);

}  // namespace wisp::snapshot
