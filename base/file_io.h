// Whole-file and whole-descriptor reads and writes, for the small files and pipes the
// commands handle (payloads, logs, results).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace wisp {

// Everything `fd` yields until end of file (or a read error, which ends it early).
std::string read_all_fd(int fd);

// The whole file at `path`. Throws Error naming `path` when it cannot be opened or read.
std::string read_file(const std::string& path);

// `path` made absolute against the working directory (no symlinks resolved, the file need not
// exist), for paths handed to a process that may run elsewhere. Throws Error if getcwd fails.
std::string absolute_path(const std::string& path);

// `path` with every symlink, "." and ".." resolved (realpath(3)); for a path that does not
// exist yet, its directory's resolved path plus its name. Throws Error naming `path` when its
// directory does not exist.
std::string canonical_path(const std::string& path);

// Writes all of `data` to `fd`, retrying short writes and EINTR, and waiting (poll) while a
// non-blocking `fd` is full. False, with errno set, when the reader has gone or the write
// failed (the caller has nothing more to do with the rest).
bool write_all(int fd, std::span<const uint8_t> data);
bool write_all(int fd, const std::string& data);

// Reads exactly out.size() bytes of `fd` at `offset` (pread), retrying short reads and EINTR.
// Returns 0, the failing errno, or EIO when the file ends first.
int pread_exact(int fd, uint64_t offset, std::span<uint8_t> out);

// Writes all of `in` to `fd` at `offset` (pwrite), retrying short writes and EINTR. Returns 0,
// the failing errno, or EIO when nothing more is written.
int pwrite_exact(int fd, uint64_t offset, std::span<const uint8_t> in);

}  // namespace wisp
