#include "shim/rootfs_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"
#include "base/run_tool.h"
#include "base/unique_fd.h"

namespace wisp::shim {

namespace {

constexpr const char* kDefaultCacheDir = "/var/lib/wisp/shim-rootfs";
constexpr uint64_t kDefaultCacheMax = 16ull << 30;
constexpr uint64_t kMiB = 1ull << 20;

uint64_t parse_size(const std::string& text, const char* variable) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || errno != 0 || end == text.c_str())
    throw Error(std::string(variable) + "='" + text + "': expected bytes, e.g. 8G");
  std::string unit = end;
  uint64_t scale = unit == ""    ? 1
                   : unit == "K" ? 1ull << 10
                   : unit == "M" ? 1ull << 20
                   : unit == "G" ? 1ull << 30
                                 : 0;
  if (scale == 0 || v > UINT64_MAX / scale)
    throw Error(std::string(variable) + "='" + text + "': expected bytes, e.g. 8G");
  return v * scale;
}

uint64_t cache_bytes(const std::string& dir) {
  uint64_t total = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() < 5 || n.compare(n.size() - 5, 5, ".ext4") != 0) continue;
    struct stat st;
    if (::stat((dir + "/" + n).c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
  }
  ::closedir(d);
  return total;
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// An overlay's layers as one read-only tree: mounted (the shim runs as root, as containerd's
// shims do) on a temporary directory, unmounted and removed on destruction.
class MergedLayers {
 public:
  MergedLayers(const RootfsSource& source, const std::string& cache_dir) {
    if (source.kind == RootfsSource::Kind::kDirectory) {
      path_ = source.directory;
      return;
    }
    std::string lower;
    if (!source.upperdir.empty()) lower = source.upperdir;
    for (const std::string& l : source.lowerdirs) lower += (lower.empty() ? "" : ":") + l;
    if (source.lowerdirs.size() == 1 && source.upperdir.empty()) {
      path_ = source.lowerdirs[0];  // one layer is its own tree (overlay needs two without upper)
      return;
    }
    std::string pattern = cache_dir + "/.layers-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw_errno("rootfs: mkdtemp " + pattern);
    dir_ = pattern;
    std::string options = "lowerdir=" + lower;
    if (::mount("overlay", dir_.c_str(), "overlay", MS_RDONLY, options.c_str()) != 0) {
      int err = errno;
      ::rmdir(dir_.c_str());
      throw Error("rootfs: mounting the overlay's layers read-only on " + dir_ + ": " +
                  std::strerror(err));
    }
    path_ = dir_;
  }
  ~MergedLayers() {
    if (dir_.empty()) return;
    ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  MergedLayers(const MergedLayers&) = delete;
  MergedLayers& operator=(const MergedLayers&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

}  // namespace

RootfsCache rootfs_cache_from_env() {
  RootfsCache c;
  const char* dir = std::getenv("WISP_SHIM_ROOTFS_CACHE");
  c.dir = dir && *dir ? dir : kDefaultCacheDir;
  if (c.dir[0] != '/')
    throw Error("WISP_SHIM_ROOTFS_CACHE='" + c.dir + "': expected an absolute path");
  const char* max = std::getenv("WISP_SHIM_ROOTFS_CACHE_MAX");
  c.max_bytes = max && *max ? parse_size(max, "WISP_SHIM_ROOTFS_CACHE_MAX") : kDefaultCacheMax;
  return c;
}

uint64_t rootfs_image_bytes(const TreeStats& stats) {
  uint64_t need = stats.bytes + stats.entries * 4096;
  need += need / 10 + 16 * kMiB;
  return (need + kMiB - 1) / kMiB * kMiB;
}

RootfsImage ensure_rootfs_image(const RootfsSource& source, const RootfsCache& cache) {
  if (::mkdir(cache.dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw_errno("rootfs cache " + cache.dir);
  RootfsImage out;
  TreeStats stats;
  out.key = rootfs_key(source, &stats);
  out.path = cache.dir + "/" + out.key + ".ext4";
  if (is_file(out.path)) return out;

  // One builder per key: the others wait here, then find the image.
  std::string lock_path = cache.dir + "/." + out.key + ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) throw_errno("rootfs cache lock " + lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_errno("rootfs cache lock " + lock_path);
  }
  if (is_file(out.path)) return out;

  MergedLayers tree(source, cache.dir);
  if (source.kind == RootfsSource::Kind::kOverlay) tree_metadata_digest(tree.path(), &stats);
  uint64_t size = rootfs_image_bytes(stats);
  uint64_t used = cache_bytes(cache.dir);
  if (used + size > cache.max_bytes) {
    throw Error("rootfs cache " + cache.dir + ": an image of " + std::to_string(size >> 20) +
                " MiB would take it over its cap (" + std::to_string(used >> 20) + " of " +
                std::to_string(cache.max_bytes >> 20) +
                " MiB used): remove unused images or raise WISP_SHIM_ROOTFS_CACHE_MAX");
  }
  std::string tmp = cache.dir + "/." + out.key + ".tmp-XXXXXX";
  UniqueFd fd(::mkstemp(tmp.data()));
  if (!fd) throw_errno("rootfs: create " + tmp);
  struct Unlink {
    std::string path;
    ~Unlink() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } cleanup{tmp};
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) throw_errno("rootfs: size " + tmp);
  // No journal (the image is never written once made), no reserved blocks, every inode the
  // tree needs plus room; 4 KiB blocks.
  run_tool(
      {"mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-O", "^has_journal", "-N",
       std::to_string(stats.entries + 1024), "-L", "wisp-rootfs", "-d", tree.path(), tmp},
      "mkfs.ext4 -d " + tree.path(), "e2fsprogs");
  if (::fsync(fd.get()) != 0) throw_errno("rootfs: fsync " + tmp);
  if (::fchmod(fd.get(), 0444) != 0) throw_errno("rootfs: chmod " + tmp);
  if (::rename(tmp.c_str(), out.path.c_str()) != 0) throw_errno("rootfs: publish " + out.path);
  cleanup.path.clear();
  fsync_dir(cache.dir);
  out.built = true;
  LOG_INFO("rootfs image %s: %llu MiB, %llu entries, from %s", out.path.c_str(),
           static_cast<unsigned long long>(size >> 20),
           static_cast<unsigned long long>(stats.entries), tree.path().c_str());
  return out;
}

}  // namespace wisp::shim
