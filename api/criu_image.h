// A CRIU image directory as one byte stream: what Agent.checkpointWorker sends, the host
// stores in a template, and Agent.restoreWorker's upload takes back (issue 17). Read as
// untrusted input on both sides: the agent unpacks what the host sends into a directory, the
// host verifies what it stored.
//
//   "WISPCRI1"                                       magic and format version
//   record*:  u32 name_len | name | u64 size | size bytes          (little-endian)
//   u32 0                                            the end; nothing may follow it
//
// A name is a plain file name (CRIU writes no subdirectories): 1..kCriuImageMaxName bytes of
// [A-Za-z0-9._-], not starting with '.', each name once.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wisp::api {

inline constexpr std::string_view kCriuImageMagic = "WISPCRI1";
inline constexpr size_t kCriuImageMaxName = 128;
inline constexpr size_t kCriuImageMaxFiles = 16384;

struct CriuImageEntry {
  std::string name;
  uint64_t offset = 0;  // of the file's bytes in the archive
  uint64_t size = 0;
};

// The bytes before a record's data.
std::string criu_record_header(std::string_view name, uint64_t size);
// The end marker.
std::string criu_image_end();

// Whether `name` is a valid record name (above).
bool criu_image_name_ok(std::string_view name);

// Parses and checks a whole archive: the magic, every record within the bytes, names, the end
// marker last. Throws wisp::Error saying what is wrong and at which offset; `what` (a file
// name, "upload") starts the message.
std::vector<CriuImageEntry> parse_criu_image(std::span<const uint8_t> bytes,
                                             const std::string& what);

}  // namespace wisp::api
