#include "shim/rootfs_key.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "base/error.h"
#include "base/hex.h"
#include "base/unique_fd.h"

namespace wisp::shim {

namespace {

// Bumped whenever rootfs_image.cc makes images differently.
constexpr const char* kFormat = "wisp-rootfs-ext4-v1\n";
constexpr uint64_t kMaxEntries = 4u << 20;
constexpr int kMaxDepth = 256;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
      throw Error("rootfs key: sha256 (libcrypto) failed");
  }
  void add(const std::string& s) {
    // Length-prefixed: no two sequences of fields hash alike.
    uint64_t n = s.size();
    EVP_DigestUpdate(ctx_.get(), &n, sizeof(n));
    EVP_DigestUpdate(ctx_.get(), s.data(), s.size());
  }
  std::string hex() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), d, &size) != 1)
      throw Error("rootfs key: sha256 (libcrypto) failed");
    return hex_bytes(std::span<const uint8_t>(d, size));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

std::vector<std::string> sorted_names(int dir_fd, const std::string& path) {
  int fd = ::dup(dir_fd);
  if (fd < 0) throw_errno("rootfs: " + path);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    throw_errno("rootfs: " + path);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

void walk(int dir_fd, const std::string& rel, const std::string& root, int depth, Sha256& h,
          TreeStats* stats) {
  if (depth > kMaxDepth)
    throw Error("rootfs: " + root + rel + ": deeper than " + std::to_string(kMaxDepth));
  for (const std::string& name : sorted_names(dir_fd, root + rel)) {
    std::string path = rel + "/" + name;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      throw_errno("rootfs: " + root + path);
    if (++stats->entries > kMaxEntries)
      throw Error("rootfs: " + root + ": over " + std::to_string(kMaxEntries) + " entries");
    std::string link;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlinkat(dir_fd, name.c_str(), buf, sizeof(buf));
      if (n < 0) throw_errno("rootfs: " + root + path);
      link.assign(buf, static_cast<size_t>(n));
      stats->bytes += link.size();
    } else if (S_ISREG(st.st_mode)) {
      stats->bytes += static_cast<uint64_t>(st.st_size);
    }
    // A directory's mtime and size are left out: a copy of the same tree (the native
    // snapshotter copies its parent per container) sets them as it fills the directory, and
    // what a directory holds is digested entry by entry anyway.
    bool dir = S_ISDIR(st.st_mode);
    h.add(path);
    h.add(std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
          std::to_string(st.st_gid) + " " + std::to_string(dir ? 0 : st.st_size) + " " +
          (dir ? std::string("-")
               : std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec)) +
          " " + std::to_string(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? st.st_rdev : 0));
    h.add(link);
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) throw_errno("rootfs: " + root + path);
      walk(sub.get(), path, root, depth + 1, h, stats);
    }
  }
}

}  // namespace

std::string tree_metadata_digest(const std::string& dir, TreeStats* stats) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("rootfs: " + dir);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("rootfs: " + dir);
  Sha256 h;
  h.add(kFormat);
  // The root directory's own owner and mode become the image root's.
  h.add(std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
        std::to_string(st.st_gid));
  stats->entries = 1;
  stats->bytes = 0;
  walk(fd.get(), "", dir, 0, h, stats);
  return h.hex();
}

std::string rootfs_key(const RootfsSource& source, TreeStats* stats) {
  *stats = TreeStats{};
  if (source.kind == RootfsSource::Kind::kDirectory)
    return tree_metadata_digest(source.directory, stats);
  Sha256 h;
  h.add(kFormat);
  h.add("overlay");
  for (const std::string& l : source.lowerdirs) h.add(l);
  if (!source.upperdir.empty()) {
    // The container's own layer is usually empty at Create; when it is not (a snapshot reused
    // with files in it), what it holds is part of the image.
    TreeStats upper;
    std::string digest = tree_metadata_digest(source.upperdir, &upper);
    if (upper.entries > 1) {
      h.add("upper");
      h.add(digest);
      *stats = upper;
    }
  }
  return h.hex();
}

}  // namespace wisp::shim
