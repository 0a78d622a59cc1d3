#include "agent/criu_kdat.h"

#include <sys/stat.h>
#include <unistd.h>

#include "agent/pid1.h"
#include "base/error.h"
#include "base/file_io.h"

namespace wisp::agent {
namespace {

// Where criu 3.17 keeps its cache (criu/include/kerndat.h: KDAT_RUNDIR "/run"). Only on a tmpfs,
// which the agent's /run is.
constexpr char kCriuCache[] = "/run/criu.kdat";
// The cache is a fixed-size struct of a few KiB; anything much larger is not one.
constexpr off_t kMaxCacheBytes = 1 << 20;

// The running kernel's identity: its ELF notes (the build id of that exact vmlinux) and its
// command line. "" when either cannot be read: then no cache is saved or installed.
std::string kernel_identity() {
  try {
    std::string notes = read_file("/sys/kernel/notes");
    std::string cmdline = read_file("/proc/cmdline");
    if (notes.empty() || cmdline.empty()) return "";
    return "notes " + std::to_string(notes.size()) + "\n" + notes + "\ncmdline " + cmdline;
  } catch (const Error&) {
    return "";
  }
}

bool small_regular_file(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
         st.st_size <= kMaxCacheBytes;
}

}  // namespace

void save_criu_kdat(const std::string& image_dir) {
  std::string identity = kernel_identity();
  if (identity.empty() || !small_regular_file(kCriuCache)) return;
  try {
    write_file_atomic(image_dir + "/" + kCriuKdatFile, read_file(kCriuCache), 0600);
    write_file_atomic(image_dir + "/" + kCriuKdatKernelFile, identity, 0600);
  } catch (const Error& e) {
    console_log("criu: kernel feature cache not kept in the image: %s", e.what());
    unlink((image_dir + "/" + kCriuKdatFile).c_str());
  }
}

bool install_criu_kdat(const std::string& image_dir) {
  std::string cache = image_dir + "/" + kCriuKdatFile;
  std::string recorded = image_dir + "/" + kCriuKdatKernelFile;
  if (access(kCriuCache, F_OK) == 0) return false;  // this boot's criu made its own
  if (!small_regular_file(cache) || !small_regular_file(recorded)) return false;
  try {
    std::string identity = kernel_identity();
    if (identity.empty() || read_file(recorded) != identity) return false;
    write_file_atomic(kCriuCache, read_file(cache), 0600);
    return true;
  } catch (const Error& e) {
    console_log("criu: kernel feature cache not installed: %s", e.what());
    return false;
  }
}

}  // namespace wisp::agent
