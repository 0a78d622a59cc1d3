// The cache key of a container root's ext4 image (rootfs_image.h): the same key, the same image.
//   overlay: the lowerdir chain (containerd's committed layers never change under a path; a
//     new image gets new snapshot directories), plus the upperdir's tree when it holds anything;
//   a directory (native snapshotter, whose snapshots are copies): a digest of the tree's
//     metadata, every entry's relative path, type and mode, owner, size and mtime (not a
//     directory's: a copy sets those as it fills it), link target and device number, in name
//     order. Contents are not read: an mtime changes with them.
// Either way the key starts with the image format's version, so a change of how images are
// made never reuses an old one.
#pragma once

#include <cstdint>
#include <string>

#include "shim/rootfs_mounts.h"

namespace wisp::shim {

struct TreeStats {
  uint64_t entries = 0;  // inodes the image needs (every entry, the root included)
  uint64_t bytes = 0;    // regular files' sizes and link targets
};

// The digest (hex sha256) of the tree under `dir`, symlinks not followed, `stats` filled.
// Throws wisp::Error naming the path that cannot be read, or a tree over the caps (entries,
// depth).
std::string tree_metadata_digest(const std::string& dir, TreeStats* stats);

// The key (hex sha256) of `source`'s image; `stats` gets the tree sizes when they were walked
// (a directory, an overlay's non-empty upperdir), else stays zero.
std::string rootfs_key(const RootfsSource& source, TreeStats* stats);

}  // namespace wisp::shim
