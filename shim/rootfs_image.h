// The container root's read-only ext4 image (issue 16 item 2), made once per rootfs_key and
// kept in a cache directory that `wisp serve` lets templates use (serve --allow-dir): the
// image is attached to the container's VMs as a read-only drive, and the agent puts a
// writable layer in guest RAM over it (agent/container_root.h).
//
// Made with e2fsprogs' `mkfs.ext4 -d DIR` (owners, modes, links and device nodes as in the
// tree) into a temporary file, published by rename: a reader sees a whole image or none. One
// builder per key at a time (a lock file beside it); a second Create of the same root waits for
// it and reuses the image. Images are never changed or removed by the shim while it runs: a
// template's clones keep reading theirs. The cache is capped: an image that would take it over
// its cap is refused with an error saying so (remove unused images, or raise the cap).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shim/rootfs_key.h"
#include "shim/rootfs_mounts.h"

namespace wisp::shim {

struct RootfsCache {
  std::string dir;
  uint64_t max_bytes = 0;  // the *.ext4 files' sizes together
};

// $WISP_SHIM_ROOTFS_CACHE (default /var/lib/wisp/shim-rootfs) and $WISP_SHIM_ROOTFS_CACHE_MAX
// (bytes, with an optional K/M/G suffix; default 16G). Throws wisp::Error naming the variable.
RootfsCache rootfs_cache_from_env();

struct RootfsImage {
  std::string path;  // <cache>/<key>.ext4
  std::string key;
  bool built = false;  // false: it was in the cache
};

// The image size for a tree: its bytes, a block per entry, 10% and 16 MiB of room, in MiB.
uint64_t rootfs_image_bytes(const TreeStats& stats);

// The image of `source`, made if the cache lacks it. Blocking (a tree walk, maybe mkfs).
// Throws wisp::Error: an unreadable tree, mkfs's own message, the cap.
RootfsImage ensure_rootfs_image(const RootfsSource& source, const RootfsCache& cache);

}  // namespace wisp::shim
