#include "agent/container_root.h"

#include <errno.h>
#include <kj/debug.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <map>
#include <mutex>

namespace wisp::agent {

namespace {

// Under the agent's own /run (a tmpfs, pid1.cc): invisible to handlers, whose sandboxes either
// detach /run or move the overlay over their root.
constexpr const char* kRootsDir = "/run/wisp-root";

void make_dir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) < 0 && errno != EEXIST)
    KJ_FAIL_SYSCALL("mkdir (container root)", errno, path.c_str());
}

void mount_or_fail(const std::string& source, const std::string& target, const char* type,
                   unsigned long flags, const std::string& options, const std::string& device) {
  if (mount(source.c_str(), target.c_str(), type, flags,
            options.empty() ? nullptr : options.c_str()) < 0) {
    KJ_FAIL_SYSCALL("mount (container root)", errno, device.c_str(), type, target.c_str());
  }
}

}  // namespace

bool is_root_device_name(const std::string& device) {
  constexpr size_t kPrefix = 7;  // "/dev/vd"
  if (device.size() < kPrefix + 1 || device.size() > kPrefix + 2) return false;
  if (device.compare(0, kPrefix, "/dev/vd") != 0) return false;
  for (size_t i = kPrefix; i < device.size(); ++i) {
    if (device[i] < 'a' || device[i] > 'z') return false;
  }
  return true;
}

std::string container_root(const std::string& device) {
  KJ_REQUIRE(is_root_device_name(device), "rootDevice: expected /dev/vdX", device.c_str());
  // The agent serves calls from its event loop and workers' threads: one mount per device.
  static std::mutex lock;
  static std::map<std::string, std::string> made;
  std::lock_guard<std::mutex> hold(lock);
  auto it = made.find(device);
  if (it != made.end()) return it->second;

  std::string dir = std::string(kRootsDir) + "/" + device.substr(5);
  make_dir(kRootsDir);
  make_dir(dir);
  make_dir(dir + "/image");
  make_dir(dir + "/rw");
  make_dir(dir + "/root");
  // The image is read-only twice over: the drive is attached read-only, and ext4 would try to
  // replay a journal on a writable mount.
  mount_or_fail(device, dir + "/image", "ext4", MS_RDONLY | MS_NODEV, "", device);
  // The writable layer lives in guest RAM; tmpfs defaults to half of it at most.
  mount_or_fail("tmpfs", dir + "/rw", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755", device);
  make_dir(dir + "/rw/upper");
  make_dir(dir + "/rw/work");
  mount_or_fail(
      "overlay", dir + "/root", "overlay", MS_NODEV,
      "lowerdir=" + dir + "/image,upperdir=" + dir + "/rw/upper,workdir=" + dir + "/rw/work",
      device);
  made.emplace(device, dir + "/root");
  return dir + "/root";
}

}  // namespace wisp::agent
