// The scratch space's files (api/agent.capnp putFile/getFile): /scratch in the guest, a tmpfs
// the agent mounts at boot and every handler sandbox sees. Handlers write there too, so its
// contents are hostile: a request's path is checked as text first (relative, no "." or ".."
// components, no NUL), then opened one component at a time beneath the scratch directory
// without following any symlink, and only regular files are read or replaced.
#pragma once

#include <kj/io.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wisp::agent {

inline constexpr char kScratchDir[] = "/scratch";
inline constexpr size_t kMaxScratchPathBytes = 4096;  // PATH_MAX
inline constexpr size_t kMaxScratchNameBytes = 255;   // NAME_MAX
// putFile's mode when the caller gives none (0): a file the handler can read and write.
inline constexpr uint32_t kDefaultScratchFileMode = 0644;

// Splits a request's path into its components, or throws kj::Exception naming what is wrong
// (empty, too long, NUL byte, absolute, empty component, "." or "..", component too long).
std::vector<std::string> split_scratch_path(std::string_view path);

class ScratchDir {
 public:
  // `root` is an O_DIRECTORY fd of the scratch directory; files and directories created get
  // `owner`/`group` (-1: left as the agent's) so the handlers that share the space can use them.
  ScratchDir(kj::AutoCloseFd root, uid_t owner, gid_t group, uint64_t max_file_bytes);

  // Opens kScratchDir, owned by the handler user (throws if it is not mounted).
  static ScratchDir open_default(uint64_t max_file_bytes);

  // Writes `data` to `path`, replacing an existing file atomically (a temporary file renamed
  // over it), creating missing parent directories (0755). `mode` is masked to 0777; 0 means
  // kDefaultScratchFileMode. Throws kj::Exception on a bad path, a symlink or non-directory on
  // the way, a target that is a directory, or data over the size cap.
  void put(std::string_view path, kj::ArrayPtr<const kj::byte> data, uint32_t mode);

  // Reads the regular file at `path` (throws on a bad path, a symlink anywhere on the way, a
  // missing or non-regular file, or one larger than the size cap).
  std::string get(std::string_view path);

 private:
  // Opens the directory holding the last component; `create` makes missing ones.
  kj::AutoCloseFd open_parent(const std::vector<std::string>& parts, std::string_view path,
                              bool create);

  kj::AutoCloseFd root_;
  uid_t owner_;
  gid_t group_;
  uint64_t max_file_bytes_;
  uint64_t temp_counter_ = 0;
};

}  // namespace wisp::agent
