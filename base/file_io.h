// Whole-file and whole-descriptor reads and writes, for the small files and pipes the
// commands handle (payloads, logs, results).
#pragma once

#include <string>

namespace wisp {

// Everything `fd` yields until end of file (or a read error, which ends it early).
std::string read_all_fd(int fd);

// The whole file at `path`. Throws Error naming `path` when it cannot be opened or read.
std::string read_file(const std::string& path);

// Writes all of `data` to `fd`, retrying short writes. False when the reader has gone or the
// write failed (the caller has nothing more to do with the rest).
bool write_all(int fd, const std::string& data);

}  // namespace wisp
