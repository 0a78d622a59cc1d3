// Each jailed VMM runs as a uid/gid of its own, leased from a range: VMs then cannot signal or
// ptrace each other, and RLIMIT_NPROC counts one VM's threads only. A lease is an flock on
// LOCK_DIR/<uid>, held by the jail's supervisor for the VM's life, so a crash frees it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/unique_fd.h"

namespace wisp::jail {

struct UidRange {
  uint32_t first = 0, last = 0;  // inclusive; never 0
};

// The default range when --jail-uid-range is not given.
UidRange default_uid_range();
// (--jail-uid-range FIRST-LAST is parsed with the other jail flags: api/jail_flags.h.)

// $WISP_JAIL_LOCK_DIR (tests) or /run/wisp/uids; created 0700 when missing.
std::string uid_lock_dir();

class UidLease {
 public:
  UidLease() = default;
  UidLease(uid_t uid, UniqueFd lock) : uid_(uid), lock_(std::move(lock)) {}
  uid_t uid() const { return uid_; }
  gid_t gid() const { return static_cast<gid_t>(uid_); }
  int lock_fd() const { return lock_.get(); }

 private:
  uid_t uid_ = 0;
  UniqueFd lock_;
};

// Leases a free uid of `range` (starting the search at a pid-derived offset, so concurrent
// starts rarely collide). Throws Error when every uid of the range is in use.
UidLease lease_uid(const UidRange& range);

// True when nobody holds the lease for `uid` (its VMM is gone).
bool uid_is_free(uid_t uid);

}  // namespace wisp::jail
