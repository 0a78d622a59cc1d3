#include "vmm/jail/uid_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/error.h"
#include "base/log.h"

namespace wisp::jail {
namespace {

constexpr uint32_t kNobody = 65534;

// $WISP_JAIL_LOCK_DIR or /run/wisp/uids, not created.
std::string lock_dir_path() {
  const char* env = std::getenv("WISP_JAIL_LOCK_DIR");
  return env && *env ? env : "/run/wisp/uids";
}

// Takes the lease on `uid` when it is free: an flock on LOCK_DIR/<uid>, held as long as the
// returned fd stays open (in any process that inherited it). An invalid fd when it is taken.
UniqueFd try_lock(const std::string& dir, uint32_t uid) {
  std::string path = dir + "/" + std::to_string(uid);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw_errno("cannot open the uid lease " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
  if (errno != EWOULDBLOCK) throw_errno("cannot lock the uid lease " + path);
  return UniqueFd();
}

}  // namespace

// Chosen outside every range that something else hands out: system and regular users
// (0-60000), systemd-homed and DynamicUser (60001-65519), nobody (65534), the /etc/subuid
// blocks useradd gives each user (Debian's login.defs: 65536 each from 100000 up to 600100000),
// systemd-nspawn's --private-users=pick (524288-1879048191) and systemd's foreign range
// (2147352576-2147418111); and below 2^31, which some tools mishandle as a negative number.
UidRange default_uid_range() { return {2000000000, 2000065535}; }

std::string uid_lock_dir() {
  std::string dir = lock_dir_path();
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return dir;
  // The usual case on a fresh boot: /run/wisp itself is missing too.
  std::string parent = dir.substr(0, dir.find_last_of('/'));
  if (errno == ENOENT && !parent.empty() && ::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    throw_errno("cannot create " + parent + " (wisp needs root)");
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw_errno("cannot create the uid lease directory " + dir + " (wisp needs root)");
  }
  return dir;
}

UidLease lease_uid(const UidRange& range) {
  std::string dir = uid_lock_dir();
  uint64_t size = uint64_t{range.last} - range.first + 1;
  uint64_t offset = static_cast<uint64_t>(::getpid()) % size;
  for (uint64_t i = 0; i < size; ++i) {
    uint32_t uid = static_cast<uint32_t>(range.first + (offset + i) % size);
    if (uid == kNobody) continue;
    UniqueFd lock = try_lock(dir, uid);
    if (lock) return UidLease(uid, std::move(lock));
  }
  throw Error("every uid of the jail's range " + std::to_string(range.first) + "-" +
              std::to_string(range.last) + " is leased to a running VM (locks in " + dir +
              "): stop a VM or give a wider --jail-uid-range");
}

bool uid_is_free(uid_t uid) {
  std::string path = lock_dir_path() + "/" + std::to_string(uid);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return true;  // never leased
    LOG_WARN("%s", errno_message("cannot open the uid lease " + path).c_str());
    return false;  // unknown: keep what belongs to it
  }
  // The probe's own lock goes with `fd`; flock locks belong to the open file, so this one
  // conflicts with a lease held by this very process too.
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return true;
  if (errno != EWOULDBLOCK) LOG_WARN("%s", errno_message("cannot lock " + path).c_str());
  return false;
}

}  // namespace wisp::jail
