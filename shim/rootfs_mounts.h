// The container's root filesystem as containerd hands it to Create: a list of mounts from its
// snapshotter (api/types/mount.proto), not layer digests. Two shapes are understood:
//   native snapshotter: one bind mount ("bind", or "none" with the bind option) of a directory;
//   overlayfs snapshotter: one "overlay" mount with lowerdir=L1:L2:...[,upperdir=U,workdir=W]
//   (L1 the topmost image layer; U the container's own, usually empty, layer).
// The mounts come from containerd, but their paths are checked as any host input.
#pragma once

#include <string>
#include <vector>

namespace wisp::shim {

struct RootfsMount {
  std::string type, source, target;
  std::vector<std::string> options;
};

struct RootfsSource {
  enum class Kind { kDirectory, kOverlay };
  Kind kind = Kind::kDirectory;
  std::string directory;               // kDirectory: the tree
  std::vector<std::string> lowerdirs;  // kOverlay: topmost first
  std::string upperdir;                // kOverlay: "" when the mount is read-only
};

// Throws wisp::Error naming the field ("rootfs[0].type", "rootfs[0].options lowerdir") and what
// is wrong: no mounts, more than one, an unsupported type, a relative or ".." path.
RootfsSource parse_rootfs_mounts(const std::vector<RootfsMount>& mounts);

}  // namespace wisp::shim
