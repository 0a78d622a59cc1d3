#include "agent/root_overlay.h"

#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "agent/pid1.h"

namespace wisp::agent {
namespace {

bool root_is_read_only() {
  struct statvfs s;
  return statvfs("/", &s) == 0 && (s.f_flag & ST_RDONLY) != 0;
}

bool is_directory(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fail(const char* step, const std::string& path) {
  console_log("root overlay: %s %s: %s; staying on the read-only root", step, path.c_str(),
              strerror(errno));
  return false;
}

// Builds the overlay on `scratch` (already a tmpfs) and switches into it.
bool overlay_and_pivot(const std::string& scratch) {
  const std::string upper = scratch + "/upper", work = scratch + "/work", root = scratch + "/root";
  for (const std::string& dir : {upper, work, root}) {
    if (mkdir(dir.c_str(), 0755) < 0) return fail("mkdir", dir);
  }
  // lowerdir=/ is the read-only root's own mount only, not the mounts below it (the kernel's
  // devtmpfs on /dev, the scratch itself). Without xattrs on the tmpfs (TMPFS_XATTR is off in
  // the wisp kernel) overlayfs still works, minus opaque directories: a directory of the image
  // that is removed cannot be created again (EIO). Good enough for a function's scratch.
  const std::string options = "lowerdir=/,upperdir=" + upper + ",workdir=" + work;
  if (mount("overlay", root.c_str(), "overlay", 0, options.c_str()) < 0)
    return fail("mount overlay on", root);
  // pivot_root(".", "."): the old root ends up mounted on top of the new one, and the detach
  // takes it (with everything mounted under it) away. Unlike chroot, the overlay becomes the
  // mount namespace's real root, which handler sandboxes (CLONE_NEWNS) inherit.
  if (chdir(root.c_str()) < 0) return fail("chdir", root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) {
    int err = errno;
    (void)!chdir("/");
    umount2(root.c_str(), MNT_DETACH);
    errno = err;
    return fail("pivot_root into", root);
  }
  if (umount2(".", MNT_DETACH) < 0)
    console_log("root overlay: detach the old root: %s", strerror(errno));
  (void)!chdir("/");
  return true;
}

}  // namespace

bool mount_root_overlay() {
  if (!root_is_read_only()) return false;
  const char* base = nullptr;
  for (const char* candidate : {"/run", "/tmp", "/mnt"}) {
    if (is_directory(candidate)) {
      base = candidate;
      break;
    }
  }
  if (base == nullptr) {
    errno = ENOENT;
    return fail("no mount point for the scratch tmpfs: none of /run /tmp /mnt in", "/");
  }
  // No nosuid/nodev: through the overlay this tmpfs is the root's upper layer.
  if (mount("wisp-scratch", base, "tmpfs", 0, "mode=755") < 0) return fail("mount tmpfs on", base);
  if (!overlay_and_pivot(base)) {
    umount2(base, MNT_DETACH);
    return false;
  }
  return true;
}

}  // namespace wisp::agent
