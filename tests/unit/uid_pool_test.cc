#include "vmm/jail/uid_pool.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "manager/runtime_dir.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/scoped_env.h"

namespace wisp::jail {
namespace {

using testutil::expect_error;
using testutil::ScopedEnv;

// Every test leases from its own lock directory, never from /run/wisp/uids.
class UidPool : public ::testing::Test {
 protected:
  manager::RuntimeDir tmp_{"wisp-uid-test"};
  std::string dir_ = tmp_.path() + "/uids";
  ScopedEnv env_{"WISP_JAIL_LOCK_DIR", dir_.c_str()};
};

TEST_F(UidPool, LockDirIsCreatedPrivate) {
  EXPECT_EQ(uid_lock_dir(), dir_);
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(uid_lock_dir(), dir_);  // already there: fine
}

TEST_F(UidPool, LockDirParentIsCreatedToo) {
  ScopedEnv env("WISP_JAIL_LOCK_DIR", (tmp_.path() + "/wisp/uids").c_str());
  EXPECT_EQ(uid_lock_dir(), tmp_.path() + "/wisp/uids");
  EXPECT_EQ(::access((tmp_.path() + "/wisp/uids").c_str(), W_OK), 0);
}

TEST_F(UidPool, LeaseTakesAUidOfTheRange) {
  UidLease lease = lease_uid({3000, 3009});
  EXPECT_GE(lease.uid(), 3000u);
  EXPECT_LE(lease.uid(), 3009u);
  EXPECT_EQ(lease.gid(), static_cast<gid_t>(lease.uid()));
  EXPECT_GE(lease.lock_fd(), 0);
  EXPECT_EQ(::access((dir_ + "/" + std::to_string(lease.uid())).c_str(), F_OK), 0);
  EXPECT_FALSE(uid_is_free(lease.uid()));
}

TEST_F(UidPool, ConcurrentLeasesGetDifferentUids) {
  UidLease a = lease_uid({3000, 3001});
  UidLease b = lease_uid({3000, 3001});
  EXPECT_NE(a.uid(), b.uid());
  EXPECT_FALSE(uid_is_free(a.uid()));
  EXPECT_FALSE(uid_is_free(b.uid()));
}

TEST_F(UidPool, AFullRangeThrows) {
  std::vector<UidLease> leases;
  for (int i = 0; i < 3; ++i) leases.push_back(lease_uid({3000, 3002}));
  std::set<uid_t> uids;
  for (const UidLease& l : leases) uids.insert(l.uid());
  EXPECT_EQ(uids, (std::set<uid_t>{3000, 3001, 3002}));
  expect_error(
      [] {
        lease_uid({3000, 3002});
      },
      {"every uid", "3000-3002", "--jail-uid-range", dir_});
}

TEST_F(UidPool, ReleasingALeaseFreesItsUid) {
  uid_t uid;
  {
    UidLease lease = lease_uid({3000, 3000});
    uid = lease.uid();
    EXPECT_FALSE(uid_is_free(uid));
    expect_error([] { lease_uid({3000, 3000}); }, {"every uid"});
  }
  EXPECT_TRUE(uid_is_free(uid));
  EXPECT_EQ(lease_uid({3000, 3000}).uid(), uid);
}

TEST_F(UidPool, MovedLeaseKeepsTheLock) {
  UidLease moved;
  {
    UidLease lease = lease_uid({3000, 3000});
    moved = std::move(lease);
  }
  EXPECT_EQ(moved.uid(), 3000u);
  EXPECT_FALSE(uid_is_free(3000));
}

TEST_F(UidPool, NeverLeasedIsFree) {
  EXPECT_TRUE(uid_is_free(4242));
  EXPECT_TRUE(uid_is_free(4242));  // the probe itself leaves no lease behind
  EXPECT_EQ(lease_uid({4242, 4242}).uid(), 4242u);
}

TEST_F(UidPool, ProbingDoesNotTakeTheLease) {
  UidLease first = lease_uid({3000, 3000});
  uid_t uid = first.uid();
  first = UidLease();
  EXPECT_TRUE(uid_is_free(uid));
  UidLease again = lease_uid({3000, 3000});
  EXPECT_EQ(again.uid(), uid);
}

TEST(UidRange, DefaultIsUnprivilegedAndUnassigned) {
  UidRange r = default_uid_range();
  EXPECT_GT(r.first, 1879048191u);  // above systemd-nspawn's and /etc/subuid's ranges
  EXPECT_LT(r.last, 2147352576u);   // below systemd's foreign range and 2^31
  EXPECT_GE(r.last - r.first + 1, 65536u);
}

}  // namespace
}  // namespace wisp::jail
