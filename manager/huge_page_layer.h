// Copies of templates' memory files on a tmpfs of 2 MiB pages, for the restores of a service
// (issue 13, part 2: huge pages "where they pay" on restore).
//
// A clone maps its snapshot's memory file MAP_PRIVATE (GuestMemory::map_file_private). From a
// regular file (an ext4 store, a plain tmpfs) the host maps it 4 KiB at a time, so KVM maps
// the guest 4 KiB at a time too: every first touch of a page is a nested page fault (EPT/NPT
// violation), about 1 400 of them in an exec call of the testbed's 6.1 kernel, which has no
// KVM_PRE_FAULT_MEMORY. From a tmpfs mounted huge=within_size the same private mapping is
// PMD-mapped (ShmemPmdMapped in smaps, on 6.1 too), KVM maps each 2 MiB block the guest only
// reads with one fault, and the page cache stays one copy shared by every clone (what the
// density of MAP_PRIVATE clones rests on). A guest write still copies 4 KiB (the PMD mapping of
// that block is split, the huge page is not), so a block the guest writes goes back to 4 KiB
// faults: the gain is the blocks a call only reads (kernel text, the agent's and libraries'
// page cache).
//
// The tmpfs is a detached mount (fsopen/fsmount: no path, in no mount namespace), so nothing
// of it outlives serve, not even after a SIGKILL: it goes with its last descriptor. Mounting
// needs CAP_SYS_ADMIN (serve runs as root); without it, or with a kernel that refuses
// huge=within_size, create() says why and restores map the store's file as before.
//
// Threads: copy_of() and bytes() from any thread; copies run one at a time on a thread of the
// layer's own at SCHED_IDLE (a copy reads and writes memory files: no reason to have several,
// nor to let one compete with calls for the few CPUs of a small host), joined by the
// destructor.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/unique_fd.h"

namespace wisp::manager {

class HugePageLayer {
 public:
  // Mounts the tmpfs, at most `max_mib` MiB (> 0). nullptr, with `why` set, when it cannot.
  static std::unique_ptr<HugePageLayer> create(uint64_t max_mib, std::string* why);
  ~HugePageLayer();
  HugePageLayer(const HugePageLayer&) = delete;
  HugePageLayer& operator=(const HugePageLayer&) = delete;

  // The copy of the memory file `path` (a regular file), open read-only, when it is there and
  // `path` is still the file it was copied from (same inode, size and modification time).
  // Otherwise an invalid fd, and a copy is started in the background (once; not when it would
  // take the layer past its size): the restore maps `path` itself this time, and a later one
  // gets the copy. A caller may ask ahead of any restore, to have the copy made early. A stale
  // copy is dropped (clones that map it keep it until they end).
  UniqueFd copy_of(const std::string& path);
  // Bytes the layer's files hold (whole 2 MiB pages) and their number.
  uint64_t bytes() const;
  size_t copies() const;
  // Blocks until no copy is in progress (tests).
  void wait_idle();

 private:
  struct Identity {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Identity&) const = default;
  };
  struct Copy {
    Identity of;
    UniqueFd fd;          // read-only; invalid while the copy is made
    std::string name;     // in the mount
    uint64_t bytes = 0;   // while made: the file's size (what it may take); then what it holds
    bool failed = false;  // copying failed: not tried again for this identity
  };

  struct Job {
    std::string path;
    Identity of;
    std::string name;
  };

  HugePageLayer(UniqueFd mount, uint64_t max_bytes);
  void work();
  void make_copy(const Job& job);
  void drop_locked(std::map<std::string, Copy>::iterator it);
  // Bytes over the copies: every one (those being made count their file's size), or the made.
  uint64_t bytes_locked(bool made_only) const;

  UniqueFd mount_;
  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::map<std::string, Copy> copies_;  // by the store file's path
  uint64_t next_name_ = 0;
  std::deque<Job> jobs_;
  size_t pending_ = 0;  // jobs queued or running
  bool stop_ = false;
  std::condition_variable cv_;
  std::thread worker_;  // last: started once the rest is made
};

}  // namespace wisp::manager
