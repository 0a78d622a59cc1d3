// The worker sandbox's mounts that its CRIU image does not carry (issue 17).
//
// criu copies every tmpfs of the dumped mount namespace into the image with tar, and a restore
// runs tar and gzip again for each: a few hundred milliseconds apiece in the nested testbed,
// about a third of a small worker's restore. What it would copy is mostly known already: /dev
// is read-only and always holds the same nodes (sandbox.h), and /dev/shm and /tmp are usually
// empty. So the dump marks /dev, and /dev/shm and /tmp when they hold nothing, as external
// mounts, and the restore binds fresh ones the agent builds exactly as the sandbox's own set-up
// does; criu re-applies the dumped mount flags (read-only, nosuid, ...) to each bind. A /dev/shm
// or /tmp holding files stays in the image, contents and all. The agent's shared /scratch is
// external too: the new guest's own is bound in its place.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wisp::agent {

// `criu dump` arguments for worker `pid`'s mounts (reads its mountinfo and, through
// /proc/PID/root, whether its /dev/shm and /tmp are empty). The worker is idle between calls
// while it is dumped, so what was empty stays empty.
std::vector<std::string> criu_dump_externals(pid_t pid);

// The mounts a restore may bind, built under `base` (a path that does not exist yet): a /dev,
// a /dev/shm, and a /tmp of `scratch_bytes`. Throws kj::Exception when a mount fails.
class CriuRestoreMounts {
 public:
  CriuRestoreMounts(std::string base, uint64_t scratch_bytes);
  // Detaches them (once criu ended, the restored namespace holds its own binds).
  ~CriuRestoreMounts();
  CriuRestoreMounts(const CriuRestoreMounts&) = delete;
  CriuRestoreMounts& operator=(const CriuRestoreMounts&) = delete;

  // `criu restore` arguments for all of them and /scratch; criu uses the ones the image names,
  // so an image dumped before the dump marked them (it carries its tmpfs) restores as before.
  std::vector<std::string> args() const;

 private:
  void detach_all();
  void mount_tmpfs(const std::string& path, unsigned long flags, const std::string& options);

  std::string base_;
  std::vector<std::string> mounted_;  // in mount order
};

}  // namespace wisp::agent
