// Whole-file and whole-descriptor reads and writes, for the small files and pipes the
// commands handle (payloads, logs, results), and the directory operations the stores build on
// (atomic publication, removal that never follows a symlink).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include "base/unique_fd.h"

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

// fsync(2) of the directory `dir`, so an entry made or renamed in it survives a crash.
// Throws Error naming `dir`.
void fsync_dir(const std::string& dir);

// Replaces `path` with a file holding `data` (mode `mode`) atomically: a temp file beside it,
// fsync, rename over `path`, fsync of the directory. A crash leaves the old file or the new
// one, never a part of either. Throws Error naming `path`.
void write_file_atomic(const std::string& path, const std::string& data, mode_t mode);

// How rename_dir_noreplace publishes.
enum class NoReplace {
  kAuto,           // renameat2(RENAME_NOREPLACE); the fallback where the filesystem lacks it
  kForceFallback,  // the fallback only: tests, since NFS and 9p are not at hand
};

// Renames the directory `from` to `to` unless something is at `to`: atomic, and an existing
// `to` is never replaced. Where the filesystem has no RENAME_NOREPLACE (NFS, 9p: EINVAL or
// ENOSYS) it claims `to` with mkdir, which fails when anything is there, then renames `from`
// over that empty directory, which rename(2) replaces atomically (it never replaces a non-empty
// one). Meanwhile `to` is an empty directory, which no reader takes for a complete one; a
// crash there leaves it empty. Throws Error ("... already exists" when `to` exists).
void rename_dir_noreplace(const std::string& from, const std::string& to,
                          NoReplace how = NoReplace::kAuto);

// Removes `path` and everything below it, never following a symlink: the tree is walked by
// descriptors (openat O_NOFOLLOW, unlinkat), so a symlink found inside, or swapped in for a
// directory during the walk, is removed itself and what it points at is left alone. A missing
// `path`, or an entry someone else removed meanwhile, is not an error. Throws Error naming
// what could not be removed.
void remove_tree(const std::string& path);

// Work directories (a snapshot or template being made) are locked (flock LOCK_EX on the
// directory) by the process working in them for as long as it does, so that a later run can
// tell an abandoned one (its owner crashed: the lock went with it) from one in use.
// lock_dir opens `dir` (no symlink) and locks it; throws Error. The lock lasts as long as the
// returned descriptor.
UniqueFd lock_dir(const std::string& dir, bool shared = false);
// mkdtemp(3) on `pattern` (ending in XXXXXX), locked (lock_dir) so that no
// remove_if_unlocked takes it for abandoned. `*path` gets the directory. Throws Error.
UniqueFd make_locked_temp_dir(const std::string& pattern, std::string* path);
// Removes `dir` (remove_tree) unless a process holds a lock on it; true if it was removed.
// Throws Error when it cannot be removed.
bool remove_if_unlocked(const std::string& dir);

}  // namespace wisp
