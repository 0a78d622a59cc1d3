#include "vmm/jail/jail_root.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "base/error.h"
#include "base/unique_fd.h"

namespace wisp::jail {
namespace {

void mount_or_throw(const char* source, const std::string& target, const char* type,
                    unsigned long flags, const char* data, const std::string& what) {
  if (::mount(source, target.c_str(), type, flags, data) != 0) throw_errno("jail: " + what);
}

// mkdir -p of `path`'s directories below `root` (which exists), mode 0755.
void make_parents(const std::string& root, const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string dir = root + path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("jail: mkdir " + dir);
  }
}

// The mount point for `e` inside the root: an empty directory or file at its path.
void make_mount_point(const std::string& target, const Exposed& e) {
  if (e.directory) {
    if (::mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("jail: mkdir " + target);
    return;
  }
  UniqueFd fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) throw_errno("jail: creating the mount point " + target);
}

// Bind-mounts the host's `e.path` at the same path under `root`, read-only unless writable;
// never with set-uid or exec, and with device access only for a device.
void expose(const std::string& root, const Exposed& e) {
  struct stat st;
  // A missing input is left to the VMM, whose open then fails with the message it gives
  // unjailed ("kernel /x: No such file or directory").
  if (::stat(e.path.c_str(), &st) != 0 && errno == ENOENT) return;
  if (e.path.size() < 2 || e.path[0] != '/' || e.path.find("/../") != std::string::npos)
    throw Error("jail: cannot expose '" + e.path + "': not a plain absolute path");
  std::string target = root + e.path;
  make_parents(root, e.path);
  make_mount_point(target, e);
  mount_or_throw(e.path.c_str(), target, nullptr, MS_BIND, nullptr,
                 "bind-mounting " + e.path + " into the VM's root");
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC;
  if (!e.device) flags |= MS_NODEV;
  if (!e.writable) flags |= MS_RDONLY;
  mount_or_throw(nullptr, target, nullptr, flags, nullptr, "restricting " + e.path);
}

// True when `path` lies inside one of the exposed directories: it is visible through that
// directory's mount already (and creating a mount point there would write to the host).
bool under_exposed_directory(const std::string& path, const std::vector<Exposed>& exposed) {
  for (const Exposed& e : exposed)
    if (e.directory && path.size() > e.path.size() && path.compare(0, e.path.size(), e.path) == 0 &&
        path[e.path.size()] == '/')
      return true;
  return false;
}

}  // namespace

void enter_root(const std::string& root, const std::vector<Exposed>& exposed) {
  // Nothing mounted from here on propagates back to the host's namespace.
  mount_or_throw(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr, "making / private");
  mount_or_throw("wisp-root", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 "size=256k,nr_inodes=1024,mode=0755", "mounting the VM's root at " + root);
  std::set<std::string> done;
  for (const Exposed& e : exposed)
    if (!under_exposed_directory(e.path, exposed) && done.insert(e.path).second) expose(root, e);
  // /proc while the VMM sets up (guest memory opens its pagemap), with nothing but this pid
  // namespace's own process in it; drop_privileges() detaches it.
  std::string proc = root + "/proc";
  if (::mkdir(proc.c_str(), 0555) != 0 && errno != EEXIST) throw_errno("jail: mkdir " + proc);
  mount_or_throw("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid",
                 "mounting /proc in the VM's root");
  // The root itself holds nothing the VMM may change.
  mount_or_throw(nullptr, root, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 nullptr, "making the VM's root read-only");
  // pivot_root(".", "."): the old root ends up on top of the new one and is detached at once,
  // so no directory for it is needed in a read-only root.
  if (::chdir(root.c_str()) != 0) throw_errno("jail: chdir " + root);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) throw_errno("jail: pivot_root into " + root);
  if (::umount2(".", MNT_DETACH) != 0) throw_errno("jail: detaching the host's root");
  if (::chdir("/") != 0) throw_errno("jail: chdir /");
}

void leave_proc() {
  if (::umount2("/proc", MNT_DETACH) != 0) throw_errno("jail: detaching /proc");
}

}  // namespace wisp::jail
