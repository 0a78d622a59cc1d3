// Who holds a VM's pause on the control channel: the bookkeeping alone.
#include "vmm/control/pause_holds.h"

#include <gtest/gtest.h>

namespace wisp {
namespace {

TEST(PauseHolds, APauseEndsWithTheLastConnectionThatAskedForIt) {
  PauseHolds h;
  h.paused(1, false);
  h.paused(2, false);
  EXPECT_FALSE(h.closed(1));
  EXPECT_TRUE(h.held());
  EXPECT_TRUE(h.closed(2));
  EXPECT_FALSE(h.held());
}

TEST(PauseHolds, ALastingPauseEndsOnlyWithResume) {
  PauseHolds h;
  h.paused(1, false);
  h.paused(2, true);
  EXPECT_FALSE(h.closed(1));
  EXPECT_FALSE(h.closed(2));
  EXPECT_TRUE(h.held());
  h.resumed();
  EXPECT_FALSE(h.held());
}

TEST(PauseHolds, ConnectionsThatHoldNothingEndNothing) {
  PauseHolds h;
  EXPECT_FALSE(h.closed(1));
  h.paused(1, false);
  h.resumed();
  EXPECT_FALSE(h.closed(1));  // its pause was ended by a resume already
  h.paused(2, false);
  EXPECT_FALSE(h.closed(3));
  EXPECT_TRUE(h.held());
}

}  // namespace
}  // namespace wisp
