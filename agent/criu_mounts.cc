#include "agent/criu_mounts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "agent/sandbox.h"
#include "agent/scratch_files.h"

namespace wisp::agent {
namespace {

// An external mount: where it is in the sandbox, and the key that names it in the image.
struct External {
  const char* mountpoint;
  const char* key;
  const char* source;  // under the restore's base directory ("" for /scratch: the guest's own)
  bool only_when_empty;
};
constexpr External kExternals[] = {
    {kScratchDir, "wisp-scratch", "", false},
    {"/dev", "wisp-dev", "dev", false},
    {"/dev/shm", "wisp-shm", "shm", true},
    {"/tmp", "wisp-tmp", "tmp", true},
};

// True when `path` is a mount point in `pid`'s mount namespace.
bool has_mount(pid_t pid, const char* path) {
  std::string file = "/proc/" + std::to_string(pid) + "/mountinfo";
  FILE* f = fopen(file.c_str(), "re");
  if (f == nullptr) return false;
  KJ_DEFER(fclose(f));
  // "ID PARENT MAJ:MIN ROOT MOUNT-POINT ...": the fifth field.
  std::string want = std::string(" ") + path + " ";
  char line[4096];
  while (fgets(line, sizeof(line), f) != nullptr) {
    const char* p = line;
    for (int field = 0; field < 4 && p != nullptr; ++field) p = strchr(p + 1, ' ');
    if (p != nullptr && strncmp(p, want.c_str(), want.size()) == 0) return true;
  }
  return false;
}

// True when directory `path` of `pid`'s root holds no entry. Any doubt (it cannot be read)
// answers false: criu then carries it as before.
bool is_empty_dir(pid_t pid, const char* path) {
  std::string full = "/proc/" + std::to_string(pid) + "/root" + path;
  DIR* d = opendir(full.c_str());
  if (d == nullptr) return false;
  KJ_DEFER(closedir(d));
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> criu_dump_externals(pid_t pid) {
  std::vector<std::string> args;
  for (const External& e : kExternals) {
    if (!has_mount(pid, e.mountpoint)) continue;
    if (e.only_when_empty && !is_empty_dir(pid, e.mountpoint)) continue;
    args.push_back("--external");
    args.push_back("mnt[" + std::string(e.mountpoint) + "]:" + e.key);
  }
  return args;
}

CriuRestoreMounts::CriuRestoreMounts(std::string base, uint64_t scratch_bytes)
    : base_(std::move(base)) {
  if (mkdir(base_.c_str(), 0700) < 0) KJ_FAIL_SYSCALL("mkdir", errno, base_);
  try {
    std::string dev = base_ + "/dev";
    mount_tmpfs(dev, kSandboxDevFlags, kSandboxDevOptions);
    int fd = open(dev.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) KJ_FAIL_SYSCALL("open", errno, dev);
    const char* step = nullptr;
    int err = populate_sandbox_dev(fd, &step);
    close(fd);
    if (err != 0) KJ_FAIL_SYSCALL("build the sandbox's /dev for criu restore", err, step);
    mount_tmpfs(base_ + "/shm", kSandboxShmFlags, kSandboxShmOptions);
    mount_tmpfs(base_ + "/tmp", kSandboxTmpFlags, sandbox_tmp_options(scratch_bytes));
  } catch (...) {
    detach_all();
    throw;
  }
}

CriuRestoreMounts::~CriuRestoreMounts() { detach_all(); }

void CriuRestoreMounts::detach_all() {
  for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) {
    umount2(it->c_str(), MNT_DETACH);
    rmdir(it->c_str());
  }
  mounted_.clear();
  rmdir(base_.c_str());
}

void CriuRestoreMounts::mount_tmpfs(const std::string& path, unsigned long flags,
                                    const std::string& options) {
  if (mkdir(path.c_str(), 0700) < 0) KJ_FAIL_SYSCALL("mkdir", errno, path);
  if (mount("tmpfs", path.c_str(), "tmpfs", flags, options.c_str()) < 0) {
    int err = errno;
    rmdir(path.c_str());
    KJ_FAIL_SYSCALL("mount tmpfs for criu restore", err, path);
  }
  mounted_.push_back(path);
}

std::vector<std::string> CriuRestoreMounts::args() const {
  std::vector<std::string> out;
  for (const External& e : kExternals) {
    std::string source = *e.source == '\0' ? std::string(e.mountpoint) : base_ + "/" + e.source;
    out.push_back("--external");
    out.push_back("mnt[" + std::string(e.key) + "]:" + source);
  }
  return out;
}

}  // namespace wisp::agent
