#include "agent/criu_drive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "agent/criu_runner.h"
#include "agent/criu_worker.h"
#include "agent/pid1.h"
#include "base/clock.h"

namespace wisp::agent {
namespace {

constexpr char kReadAheadKb[] = "4096";

// The drive mounted read-only on a fresh directory; unmounted (lazily, if it must) and the
// directory removed when dropped, so a failed restore leaves nothing behind.
class DriveMount {
 public:
  DriveMount(const std::string& device, const std::string& dir) : device_(device), dir_(dir) {
    if (mkdir(dir_.c_str(), 0700) < 0) KJ_FAIL_SYSCALL("mkdir", errno, dir_);
    // criu reads the image once, front to back, file by file: larger readahead means fewer,
    // larger virtio-blk requests (each one a VM exit). Best effort.
    std::string ra = "/sys/block/" + device_.substr(5) + "/queue/read_ahead_kb";
    int ra_fd = open(ra.c_str(), O_WRONLY | O_CLOEXEC);
    if (ra_fd >= 0) {
      (void)!write(ra_fd, kReadAheadKb, strlen(kReadAheadKb));
      close(ra_fd);
    }
    // ro and noload: nothing is written to the image, not even a journal replay (it has
    // none); nodev, nosuid, noexec: the image is only data for criu to read.
    if (mount(device_.c_str(), dir_.c_str(), "ext4", MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC,
              "noload") < 0) {
      int err = errno;
      rmdir(dir_.c_str());
      KJ_FAIL_SYSCALL("mount the CRIU image drive read-only", err, device_, dir_);
    }
    mounted_ = true;
  }
  ~DriveMount() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
    rmdir(dir_.c_str());
  }
  KJ_DISALLOW_COPY(DriveMount);

  // Unmounts it now and checks that nothing still holds the device: a busy mount or a device
  // another mount (a copy in the restored worker's mount namespace) still claims means the
  // worker kept something of the image, which is logged (the worker works; the drive cannot
  // be detached from this VM).
  void release() {
    mounted_ = false;
    if (umount2(dir_.c_str(), 0) < 0) {
      console_log("criu drive %s: still busy after the restore (%s); detached lazily",
                  device_.c_str(), strerror(errno));
      umount2(dir_.c_str(), MNT_DETACH);
      return;
    }
    // A block device that any mount still uses refuses an exclusive open (EBUSY).
    int fd = open(device_.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
    if (fd < 0) {
      console_log("criu drive %s: still in use after the restore (%s)", device_.c_str(),
                  strerror(errno));
      return;
    }
    close(fd);
  }

  const std::string& dir() const { return dir_; }

  // Starts reading every file of the image into the page cache (asynchronous readahead), so
  // the drive's reads overlap criu's own start (namespaces, parsing) instead of following it.
  void prefetch() const {
    DIR* d = opendir(dir_.c_str());
    if (d == nullptr) return;
    while (dirent* e = readdir(d)) {
      if (e->d_type != DT_REG) continue;
      int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
      close(fd);
    }
    closedir(d);
  }

 private:
  std::string device_, dir_;
  bool mounted_ = false;
};

}  // namespace

bool is_criu_drive_name(const std::string& device) {
  return device.size() == 8 && device.compare(0, 7, "/dev/vd") == 0 && device[7] >= 'b' &&
         device[7] <= 'z';
}

kj::Promise<DriveRestore> restore_worker_from_drive(AgentServices& services, HandlerConfig config,
                                                    const std::string& device,
                                                    kj::Function<void(kj::Own<Worker>)> adopt) {
  KJ_REQUIRE(is_criu_drive_name(device), "restoreWorkerFromDrive: device: expected /dev/vd[b-z]",
             device.substr(0, 64));
  struct stat st;
  if (stat(device.c_str(), &st) < 0) KJ_FAIL_SYSCALL("restoreWorkerFromDrive: stat", errno, device);
  KJ_REQUIRE(S_ISBLK(st.st_mode), "restoreWorkerFromDrive: device: not a block device", device);
  std::string id = std::to_string(++services.next_id);
  // The work directory (criu's pidfile and anything it writes; .root beside it) is fresh; the
  // mount point is made by DriveMount.
  std::string work = fresh_criu_dir("drive-" + id + ".work");
  std::string mount_dir = std::string(kCriuWorkDir) + "/drive-" + id;
  DriveRestore out;
  uint64_t t0 = now_ns();
  std::unique_ptr<DriveMount> drive;
  try {
    drive = std::make_unique<DriveMount>(device, mount_dir);
    drive->prefetch();
  } catch (...) {
    remove_criu_dir(work);
    throw;
  }
  out.mount_ns = now_ns() - t0;
  auto cleanup = kj::defer([work]() { remove_criu_dir(work); });
  return restore_worker_from_dir(services, kj::mv(config), drive->dir(), work, kj::mv(adopt))
      .then([out, drive = kj::mv(drive)](uint64_t restore_ns) mutable {
        drive->release();
        out.restore_ns = restore_ns;
        return out;
      })
      .attach(kj::mv(cleanup));
}

}  // namespace wisp::agent
