#include "manager/criu_drive.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "base/file_io.h"
#include "base/run_tool.h"
#include "base/unique_fd.h"
#include "manager/criu_image_store.h"
#include "snapshot/crc64.h"

namespace wisp::manager {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kMiB = 1ull << 20;

std::string hex16(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string path_in(const std::string& dir, const char* name) { return dir + "/" + name; }

// The CRC-64 of the whole file behind `fd` (`size` bytes), read through a private mapping.
uint64_t file_crc64(int fd, uint64_t size, const std::string& path) {
  if (size == 0) return 0;
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) throw_errno("mmap " + path);
  // Read once, front to back.
  madvise(map, size, MADV_SEQUENTIAL);
  uint64_t crc = snapshot::crc64(std::span<const uint8_t>(static_cast<const uint8_t*>(map), size));
  munmap(map, size);
  return crc;
}

// Writes `data` to a new file `path` (0600, as criu wrote the image's files).
void write_new_file(const std::string& path, std::span<const uint8_t> data) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw_errno("create " + path);
  if (!write_all(fd.get(), data)) throw_errno("write " + path);
}

// A temporary path that is removed unless released.
struct RemoveOnExit {
  std::string path;
  bool tree = false;
  ~RemoveOnExit() {
    if (path.empty()) return;
    try {
      if (tree)
        remove_tree(path);
      else
        unlink(path.c_str());
    } catch (const Error&) {
      // Best effort: the error that brought us here is the one to report.
    }
  }
};

// `dir`'s drive record, checked against the archive's .sum (made from it) and the drive's
// identity (size, modification time, the digest of its ends). Throws Error naming the file.
CriuDriveRecord checked_record(const std::string& dir) {
  std::string drive = path_in(dir, kCriuDriveFile);
  std::string record_path = path_in(dir, kCriuDriveRecordFile);
  CriuDriveRecord want = parse_criu_drive_record(read_file(record_path), record_path);
  StoredCriuImage image = read_criu_image_sum(dir);
  if (want.image_crc64 != image.crc64)
    throw Error(record_path + ": made from another CRIU image (image_crc64 " +
                hex16(want.image_crc64) + ", the archive's " + hex16(image.crc64) + ")");
  snapshot::DriveIdentity now = snapshot::identify_drive(drive);
  if (now.size_bytes != want.identity.size_bytes || now.mtime_ns != want.identity.mtime_ns ||
      now.digest != want.identity.digest)
    throw Error(drive + ": not the drive its record describes (its size, modification time " +
                "or the digest of its first and last 4 KiB differ)");
  return want;
}

// What a make_criu_drive that died (killed, a crash) left in `dir`: its unpacked tree (unless
// a live one holds its lock) and its unpublished image. Called with `dir` locked (no other
// make runs there). Best effort.
void remove_leftovers(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> trees, files;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.starts_with(".criu-drive-")) trees.push_back(dir + "/" + name);
    if (name.starts_with(".criu-image.ext4.tmp-")) files.push_back(dir + "/" + name);
  }
  closedir(d);
  try {
    for (const std::string& t : trees) remove_if_unlocked(t);
  } catch (const Error&) {
    // Left for the next time: the drive can be made beside it.
  }
  for (const std::string& f : files) unlink(f.c_str());
}

}  // namespace

uint64_t criu_drive_bytes(uint64_t file_bytes, uint64_t files) {
  uint64_t data = file_bytes + files * (2 * kBlock);  // rounding up, and an extent/dir block
  // The superblock, group descriptors, bitmaps, inode table (few inodes) and the root
  // directory; ext4 wants a few MiB more for a small file system.
  uint64_t need = data + data / 32 + 8 * kMiB;
  return (need + kMiB - 1) / kMiB * kMiB;
}

CriuDriveMade make_criu_drive(const std::string& dir) {
  uint64_t t0 = now_ns();
  CriuDriveMade out;
  std::string tree;
  UniqueFd tree_lock = make_locked_temp_dir(dir + "/.criu-drive-XXXXXX", &tree);
  RemoveOnExit tree_cleanup{tree, /*tree=*/true};
  // The directory mkfs copies: only ours (0700 by mkdtemp); files as criu wrote them.
  uint64_t file_bytes = 0;
  StoredCriuImage image = read_verified_criu_image(
      dir, [&](std::span<const uint8_t> bytes, const std::vector<api::CriuImageEntry>& entries) {
        for (const api::CriuImageEntry& e : entries) {
          // Names are plain file names (parse_criu_image checked them).
          write_new_file(tree + "/" + e.name, bytes.subspan(e.offset, e.size));
          file_bytes += e.size;
        }
      });
  out.files = image.files;
  std::string tmp = dir + "/.criu-image.ext4.tmp-XXXXXX";
  UniqueFd fd(mkstemp(tmp.data()));
  if (!fd) throw_errno("create " + tmp);
  RemoveOnExit tmp_cleanup{tmp};
  if (fchmod(fd.get(), 0600) != 0) throw_errno("chmod " + tmp);
  uint64_t size = criu_drive_bytes(file_bytes, image.files);
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) throw_errno("size " + tmp);
  // No journal (nothing writes it after this), no reserved blocks, 4 KiB blocks, as few
  // inodes as it needs.
  run_tool({"mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-O", "^has_journal",
            "-N", std::to_string(image.files + 64), "-L", "wisp-criu", "-d", tree, tmp},
           "mkfs.ext4 -d (the CRIU image drive of " + dir + ")", "e2fsprogs");
  if (fsync(fd.get()) != 0) throw_errno("fsync " + tmp);
  out.record.identity = snapshot::identify_drive(tmp);
  out.record.crc64 = file_crc64(fd.get(), out.record.identity.size_bytes, tmp);
  out.record.image_crc64 = image.crc64;
  std::string drive = path_in(dir, kCriuDriveFile);
  if (rename(tmp.c_str(), drive.c_str()) != 0) throw_errno("publish " + drive);
  tmp_cleanup.path.clear();
  write_file_atomic(path_in(dir, kCriuDriveRecordFile), format_criu_drive_record(out.record), 0600);
  fsync_dir(dir);
  out.ms = ms_since(t0);
  return out;
}

bool has_criu_drive(const std::string& dir) {
  struct stat st;
  return lstat(path_in(dir, kCriuDriveRecordFile).c_str(), &st) == 0;
}

std::string criu_drive_unfit_reason(const std::string& dir) {
  std::string drive = path_in(dir, kCriuDriveFile);
  std::string record_path = path_in(dir, kCriuDriveRecordFile);
  struct stat st;
  if (lstat(drive.c_str(), &st) != 0) return drive + ": missing";
  if (lstat(record_path.c_str(), &st) != 0) return record_path + ": missing";
  try {
    checked_record(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string ensure_criu_drive(const std::string& dir,
                              const std::function<void(const std::string&)>& log, bool* remade) {
  if (remade) *remade = false;
  UniqueFd lock = lock_dir(dir);
  std::string why = criu_drive_unfit_reason(dir);
  if (!why.empty()) {
    remove_leftovers(dir);
    if (log) log("CRIU image drive " + why + ": making it again from the archive");
    make_criu_drive(dir);
    if (remade) *remade = true;
  }
  return path_in(dir, kCriuDriveFile);
}

CriuDriveRecord verify_criu_drive(const std::string& dir) {
  std::string drive = path_in(dir, kCriuDriveFile);
  CriuDriveRecord want = checked_record(dir);
  UniqueFd fd = snapshot::open_drive_image(drive);
  uint64_t crc = file_crc64(fd.get(), want.identity.size_bytes, drive);
  if (crc != want.crc64)
    throw Error(drive + ": checksum mismatch (CRC-64 " + hex16(crc) + ", its record says " +
                hex16(want.crc64) + "): the drive is damaged");
  return want;
}

}  // namespace wisp::manager
