#include <gtest/gtest.h>

#include "base/split.h"

namespace wisp {
namespace {

TEST(KeyedValue, ACgroupEventsFile) {
  const std::string events = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 3\n";
  EXPECT_EQ(keyed_value(events, "oom_kill"), 3u);
  EXPECT_EQ(keyed_value(events, "oom"), 1u);  // a key that begins another is not taken for it
  EXPECT_EQ(keyed_value(events, "max"), 4u);
  EXPECT_EQ(keyed_value(events, "none"), 0u);
}

TEST(KeyedValue, MeminfosHugePageLines) {
  const std::string meminfo =
      "MemTotal:         125000 kB\nHugePages_Total:       2\nHugePages_Free:        0\n"
      "Hugepagesize:       2048 kB\n";
  EXPECT_EQ(keyed_value(meminfo, "HugePages_Total:"), 2u);
  EXPECT_EQ(keyed_value(meminfo, "HugePages_Free:"), 0u);
  EXPECT_EQ(keyed_value(meminfo, "MemTotal:"), 125000u);
}

TEST(KeyedValue, FindTellsAMissingKeyFromAZero) {
  const std::string meminfo = "MemTotal:         125000 kB\nHugePages_Free:        0\n";
  EXPECT_EQ(find_keyed_value(meminfo, "HugePages_Free:"), std::optional<uint64_t>(0));
  EXPECT_EQ(find_keyed_value(meminfo, "HugePages_Total:"), std::nullopt);
  EXPECT_EQ(find_keyed_value("HugePages_Total: 2\n", "HugePages_Total:"), 2u);  // first line
}

}  // namespace
}  // namespace wisp
