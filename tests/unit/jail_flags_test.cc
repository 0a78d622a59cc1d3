// The jail options every VM-starting command shares: parsed once, passed on to wisp-vmm as
// the same arguments.
#include "api/jail_flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/expect_error.h"

namespace wisp {
namespace {

JailFlags parse(const std::vector<std::string>& args) {
  JailFlags flags;
  OptionParser p("wisp run");
  add_jail_options(p, &flags);
  std::vector<std::string> argv = {"wisp"};
  argv.insert(argv.end(), args.begin(), args.end());
  p.parse(argv);
  return flags;
}

TEST(JailFlags, DefaultIsFullyJailedAndPassesNothingOn) {
  JailFlags f = parse({});
  EXPECT_TRUE(f.jail);
  EXPECT_TRUE(f.cgroup);
  EXPECT_TRUE(jail_args(f).empty());
}

TEST(JailFlags, RoundTripsThroughWispVmmArguments) {
  std::vector<std::string> args = {"--no-cgroup", "--jail-uid-range",  "3000-3999", "--cpu-quota",
                                   "150",         "--jail-memory-max", "96"};
  JailFlags f = parse(args);
  EXPECT_FALSE(f.cgroup);
  EXPECT_EQ(*f.uid_first, 3000u);
  EXPECT_EQ(*f.uid_last, 3999u);
  EXPECT_EQ(*f.cpu_quota_percent, 150u);
  EXPECT_EQ(*f.memory_max, 96ull << 20);
  JailFlags again = parse(jail_args(f));
  EXPECT_EQ(jail_args(again), jail_args(f));
  // The flag's own parsing test: the one place a unit test names --no-jail.
  EXPECT_EQ(jail_args(parse({"--no-jail"})), std::vector<std::string>{"--no-jail"});
}

TEST(UidRange, Parses) {
  uint32_t first = 0, last = 0;
  parse_uid_range("2000000000-2000065535", &first, &last);
  EXPECT_EQ(first, 2000000000u);
  EXPECT_EQ(last, 2000065535u);
  parse_uid_range("1-1", &first, &last);
  EXPECT_EQ(first, 1u);
  EXPECT_EQ(last, 1u);
  parse_uid_range("70000-4294967294", &first, &last);
  EXPECT_EQ(last, 4294967294u);
}

TEST(UidRange, RejectsBadRanges) {
  for (std::string bad : {"", "5", "5-", "-5", "0-10", "10-5", "a-b", "1-2-3", " 1-2", "1 -2",
                          "+1-2", "1-0x10", "1-4294967295", "1-99999999999", "100000-165535 "}) {
    testutil::expect_error<UsageError>(
        [&] {
          uint32_t f, l;
          parse_uid_range(bad, &f, &l);
        },
        {"--jail-uid-range " + bad + ":", "FIRST-LAST"});
  }
}

TEST(UidRange, RejectsNobody) {
  testutil::expect_error<UsageError>(
      [] {
        uint32_t f, l;
        parse_uid_range("60000-70000", &f, &l);
      },
      {"--jail-uid-range 60000-70000", "65534", "nobody"});
}

TEST(JailFlags, BadValuesAreUsageErrorsNamingTheOption) {
  using testutil::expect_error;
  expect_error<UsageError>(
      [] {
        parse({"--jail-uid-range", "5"});
      },
      {"--jail-uid-range", "FIRST-LAST"});
  expect_error<UsageError>([] { parse({"--cpu-quota", "0"}); }, {"--cpu-quota"});
}

}  // namespace
}  // namespace wisp
