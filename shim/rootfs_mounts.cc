#include "shim/rootfs_mounts.h"

#include "base/error.h"
#include "base/split.h"

namespace wisp::shim {

namespace {

constexpr size_t kMaxLayers = 500;  // containerd's overlay snapshotter stacks at most this many

// An absolute path without "." or ".." components, of sane length.
void check_path(const std::string& path, const std::string& field) {
  if (path.empty() || path[0] != '/')
    throw Error(field + ": '" + path.substr(0, 200) + "' is not an absolute path");
  if (path.size() > 4096) throw Error(field + ": longer than 4096 bytes");
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part == "." || part == "..")
      throw Error(field + ": '" + path.substr(0, 200) + "' has a '" + part + "' component");
    start = end + 1;
  }
  if (path.find('\0') != std::string::npos) throw Error(field + ": has a NUL byte");
}

}  // namespace

RootfsSource parse_rootfs_mounts(const std::vector<RootfsMount>& mounts) {
  if (mounts.empty()) {
    throw Error(
        "rootfs: no mounts in the Create request (the bundle has no root filesystem from a "
        "snapshotter; containerd-shim-wisp-v2 needs the native or overlayfs snapshotter's)");
  }
  if (mounts.size() > 1) {
    throw Error("rootfs: " + std::to_string(mounts.size()) +
                " mounts; containerd-shim-wisp-v2 takes one (a bind of a directory or an overlay)");
  }
  const RootfsMount& m = mounts[0];
  const std::string field = "rootfs[0]";
  RootfsSource out;
  bool bind = m.type == "bind" || m.type == "rbind";
  if (m.type == "none" || m.type.empty()) {
    for (const std::string& o : m.options) bind = bind || o == "bind" || o == "rbind";
  }
  if (bind) {
    check_path(m.source, field + ".source");
    out.kind = RootfsSource::Kind::kDirectory;
    out.directory = m.source;
    return out;
  }
  if (m.type != "overlay") {
    throw Error(field + ".type: '" + m.type.substr(0, 64) +
                "' is not supported (containerd-shim-wisp-v2 takes a bind mount of a directory, "
                "as the native snapshotter gives, or an overlay)");
  }
  out.kind = RootfsSource::Kind::kOverlay;
  for (const std::string& o : m.options) {
    if (o.rfind("lowerdir=", 0) == 0) {
      if (!out.lowerdirs.empty()) throw Error(field + ".options: lowerdir given twice");
      out.lowerdirs = split(o.substr(9), ':');
      if (out.lowerdirs.size() > kMaxLayers)
        throw Error(field + ".options lowerdir: " + std::to_string(out.lowerdirs.size()) +
                    " layers; at most " + std::to_string(kMaxLayers));
      for (size_t i = 0; i < out.lowerdirs.size(); ++i)
        check_path(out.lowerdirs[i], field + ".options lowerdir[" + std::to_string(i) + "]");
    } else if (o.rfind("upperdir=", 0) == 0) {
      out.upperdir = o.substr(9);
      check_path(out.upperdir, field + ".options upperdir");
    }
    // workdir and the rest (index=off, userxattr, ...) matter only to a kernel mount.
  }
  if (out.lowerdirs.empty())
    throw Error(field + ".options: an overlay without lowerdir (no image layers)");
  return out;
}

}  // namespace wisp::shim
