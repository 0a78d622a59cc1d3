// criu's cache of what the running kernel can do, carried in a worker's CRIU image (issue 17).
//
// On every start criu probes the kernel (its "kerndat": sockets, namespaces, tun, userfaultfd,
// the vDSO, ...) unless /run/criu.kdat holds the answers of an earlier run in this boot: about
// 0.7 s of a restore in the nested testbed. The dump's own criu leaves that file in the
// template's guest; it goes into the image with the identity of the kernel that wrote it (its
// build-id notes and command line), and a restore in a guest whose kernel has the same identity
// installs it before criu starts. A fresh boot of the same kernel and command line finds the
// same features: what the file holds is about the kernel, and the probes that depend on the
// boot (hugetlb devices) criu repeats even with a cache. Any other kernel probes as before.
#pragma once

#include <string>

namespace wisp::agent {

// Names in the image directory (plain names: api/criu_image.h).
inline constexpr char kCriuKdatFile[] = "wisp-kdat";
inline constexpr char kCriuKdatKernelFile[] = "wisp-kdat-kernel";

// After a dump into `image_dir`: copies criu's cache and this kernel's identity there, when
// criu left one. Best effort: without them a restore only probes.
void save_criu_kdat(const std::string& image_dir);

// Before a restore from `image_dir`: installs its cache when this guest's criu has none yet
// and the kernel's identity is the one recorded. Returns whether it did.
bool install_criu_kdat(const std::string& image_dir);

}  // namespace wisp::agent
