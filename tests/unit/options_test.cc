// The one option parser of every wisp and wisp-vmm command: the value parsers (counts, sizes,
// durations) with their limits and messages, and the command-line walk itself.
#include "base/options.h"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "tests/unit/expect_error.h"

namespace wisp {
namespace {

using std::chrono::milliseconds;
using Args = std::vector<std::string>;

constexpr uint64_t kMiB = 1ull << 20;

// A UsageError (not just any Error) whose message contains each of `parts`.
template <typename Fn>
void expect_usage_error(Fn fn, std::initializer_list<std::string> parts) {
  testutil::expect_error<UsageError>(fn, parts);
}

TEST(ParseCount, AcceptsWholeNumbersInRange) {
  EXPECT_EQ(parse_count("--vcpus", "1", 1, 254), 1u);
  EXPECT_EQ(parse_count("--vcpus", "254", 1, 254), 254u);
  EXPECT_EQ(parse_count("--warmup", "0", 0, 10000), 0u);
  EXPECT_EQ(parse_count("--n", "007", 0, 10), 7u);
  uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(parse_count("--n", "18446744073709551615", 0, max), max);
}

TEST(ParseCount, RefusesWithTheOptionAndTheRange) {
  for (const char* bad : {"0", "255", "-1", "+3", "", " 3", "3 ", "3.0", "0x10", "ten", "1e2"})
    expect_usage_error([&] { parse_count("--vcpus", bad, 1, 254); },
                       {"--vcpus", "expected a count from 1 to 254"});
  expect_usage_error([] { parse_count("--vcpus", "0", 1, 254); }, {"--vcpus 0:"});
  expect_usage_error([] { parse_count("--n", "18446744073709551616", 0, UINT64_MAX); },
                     {"--n 18446744073709551616", "of at least 0"});
}

TEST(ParseSize, PlainNumbersCountInTheUnitAndSuffixesInTheirs) {
  uint64_t lo = 16 * kMiB, hi = 64ull << 30;
  EXPECT_EQ(parse_size("--mem", "256", kMiB, lo, hi), 256 * kMiB);
  EXPECT_EQ(parse_size("--mem", "16", kMiB, lo, hi), 16 * kMiB);
  EXPECT_EQ(parse_size("--mem", "2G", kMiB, lo, hi), 2048 * kMiB);
  EXPECT_EQ(parse_size("--mem", "2GiB", kMiB, lo, hi), 2048 * kMiB);
  EXPECT_EQ(parse_size("--mem", "512m", kMiB, lo, hi), 512 * kMiB);
  EXPECT_EQ(parse_size("--mem", "512MB", kMiB, lo, hi), 512 * kMiB);
  EXPECT_EQ(parse_size("--mem", "65536K", kMiB, lo, hi), 64 * kMiB);
  EXPECT_EQ(parse_size("--mem", "64G", kMiB, lo, hi), hi);
  EXPECT_EQ(parse_size("--buf", "4096", 1, 1, 1ull << 40), 4096u);
  EXPECT_EQ(parse_size("--buf", "1T", 1, 1, 1ull << 40), 1ull << 40);
}

TEST(ParseSize, RefusesOutOfRangeMalformedAndPartialUnits) {
  uint64_t lo = 16 * kMiB, hi = 64ull << 30;
  for (const char* bad : {"8", "15", "65537", "65G", "1T", "0", ""})
    expect_usage_error([&] { parse_size("--mem", bad, kMiB, lo, hi); },
                       {"--mem", "expected a size from 16 MiB to 64 GiB", "a number of MiB"});
  for (const char* bad : {"-1", "2X", "2Gb2", "G", "2 G", "1.5G", "2GiBs", "99999999999999999999T"})
    expect_usage_error([&] { parse_size("--mem", bad, kMiB, lo, hi); },
                       {"--mem", "expected a size"});
  expect_usage_error([&] { parse_size("--mem", "20000K", kMiB, lo, hi); },
                     {"--mem 20000K", "whole number of MiB"});
}

TEST(ParseDuration, SecondsByDefaultAndSuffixes) {
  milliseconds lo(1), hi(7 * 86400000);
  EXPECT_EQ(parse_duration("--timeout", "30", lo, hi), milliseconds(30000));
  EXPECT_EQ(parse_duration("--timeout", "1.5", lo, hi), milliseconds(1500));
  EXPECT_EQ(parse_duration("--timeout", ".25", lo, hi), milliseconds(250));
  EXPECT_EQ(parse_duration("--timeout", "500ms", lo, hi), milliseconds(500));
  EXPECT_EQ(parse_duration("--timeout", "2s", lo, hi), milliseconds(2000));
  EXPECT_EQ(parse_duration("--timeout", "2m", lo, hi), milliseconds(120000));
  EXPECT_EQ(parse_duration("--timeout", "2min", lo, hi), milliseconds(120000));
  EXPECT_EQ(parse_duration("--timeout", "1h", lo, hi), milliseconds(3600000));
  EXPECT_EQ(parse_duration("--timeout", "168h", lo, hi), hi);
  EXPECT_EQ(parse_duration("--timeout", "0.001", lo, hi), lo);
}

TEST(ParseDuration, RefusesZeroTooLongAndMalformed) {
  milliseconds lo(1), hi(7 * 86400000);
  for (const char* bad : {"0", "0.0001", "0ms", "8d", "169h", "604801", "-1", "", ".", "1..2",
                          "1.2.3", "1e3", "inf", "nan", "5 s", "5sec", "ms", "1e400"})
    expect_usage_error([&] { parse_duration("--timeout", bad, lo, hi); },
                       {"--timeout", "expected a duration from 1 ms to 7 days"});
}

TEST(FormatSizeAndDuration, UseTheLargestExactUnit) {
  EXPECT_EQ(format_size(16 * kMiB), "16 MiB");
  EXPECT_EQ(format_size(64ull << 30), "64 GiB");
  EXPECT_EQ(format_size(1ull << 40), "1 TiB");
  EXPECT_EQ(format_size(1536), "1536 bytes");
  EXPECT_EQ(format_size(1), "1 byte");
  EXPECT_EQ(format_duration(milliseconds(1)), "1 ms");
  EXPECT_EQ(format_duration(milliseconds(30000)), "30 s");
  EXPECT_EQ(format_duration(milliseconds(120000)), "2 min");
  EXPECT_EQ(format_duration(milliseconds(86400000)), "1 day");
}

// A parser with one option of each kind, as the commands declare them.
struct Parsed {
  bool flag = false;
  int verbose = 0;
  std::string text;
  uint32_t count = 1;
  uint64_t size = 0;
  milliseconds duration{30000};
  std::vector<std::string> list;
};

OptionParser parser(Parsed* p) {
  OptionParser o("wisp test");
  o.flag("flag", &p->flag)
      .flag(
          "verbose", [p] { ++p->verbose; }, 'v')
      .text("text", &p->text)
      .count("count", &p->count, 1, 254)
      .size("size", &p->size, kMiB, 16 * kMiB, 1ull << 30)
      .duration("duration", &p->duration, milliseconds(1), milliseconds(60000))
      .value("list", [p](const std::string& v) {
        if (v == "bad") throw Error("not a good item");
        p->list.push_back(v);
      });
  return o;
}

TEST(OptionParser, StoresEachKindInBothSpellings) {
  Parsed p;
  auto r = parser(&p).parse(Args{"--flag", "--text", "hello", "--count=8", "--size", "1G",
                                 "--duration=1.5", "--list", "a", "--list=b", "-vv", "-v"});
  EXPECT_FALSE(r.help);
  EXPECT_TRUE(p.flag);
  EXPECT_EQ(p.verbose, 3);
  EXPECT_EQ(p.text, "hello");
  EXPECT_EQ(p.count, 8u);
  EXPECT_EQ(p.size, 1024 * kMiB);
  EXPECT_EQ(p.duration, milliseconds(1500));
  EXPECT_EQ(p.list, (Args{"a", "b"}));
}

TEST(OptionParser, OperandsAnywhereAndEverythingAfterDashDash) {
  Parsed p;
  auto r = parser(&p).parse(Args{"dir", "--flag", "-", "--", "cmd", "--flag", "-v"});
  EXPECT_EQ(r.operands, (Args{"dir", "-"}));
  EXPECT_TRUE(r.dashdash);
  EXPECT_EQ(r.rest, (Args{"cmd", "--flag", "-v"}));
  EXPECT_EQ(p.verbose, 0);  // after "--": not ours
  // A value that looks like an option is still the value.
  parser(&p).parse(Args{"--text", "--flag"});
  EXPECT_EQ(p.text, "--flag");
}

TEST(OptionParser, HelpStopsTheWalkWhereItIs) {
  Parsed p;
  EXPECT_TRUE(parser(&p).parse(Args{"--help", "--bogus"}).help);
  EXPECT_TRUE(parser(&p).parse(Args{"-h"}).help);
  EXPECT_TRUE(parser(&p).parse(Args{"-vh"}).help);
  // An error before it is reported first, as the arguments are read in order.
  expect_usage_error([&] { parser(&p).parse(Args{"--bogus", "--help"}); }, {"'--bogus'"});
}

TEST(OptionParser, RefusesUnknownOptionsAndMissingValues) {
  Parsed p;
  expect_usage_error([&] { parser(&p).parse(Args{"--nope"}); }, {"unknown option '--nope'"});
  expect_usage_error([&] { parser(&p).parse(Args{"--nope=1"}); }, {"unknown option '--nope'"});
  expect_usage_error([&] { parser(&p).parse(Args{"-x"}); }, {"unknown option '-x'"});
  expect_usage_error([&] { parser(&p).parse(Args{"-vx"}); }, {"unknown option '-x'"});
  expect_usage_error([&] { parser(&p).parse(Args{"--fla"}); }, {"unknown option '--fla'"});
  expect_usage_error([&] { parser(&p).parse(Args{"--count"}); }, {"--count: missing its value"});
  expect_usage_error([&] { parser(&p).parse(Args{"--flag=yes"}); }, {"--flag takes no value"});
  expect_usage_error([&] { parser(&p).parse(Args{"--text", ""}); }, {"--text", "not ''"});
}

TEST(OptionParser, BadValuesNameTheOption) {
  Parsed p;
  expect_usage_error(
      [&] {
        parser(&p).parse(Args{"--count", "0"});
      },
      {"--count 0: expected a count from 1 to 254"});
  expect_usage_error([&] { parser(&p).parse(Args{"--size=8"}); },
                     {"--size 8: expected a size from 16 MiB to 1 GiB"});
  expect_usage_error(
      [&] {
        parser(&p).parse(Args{"--duration", "2m"});
      },
      {"--duration 2m: expected a duration from 1 ms to 1 min"});
  // A plain Error from a value's own check becomes a UsageError naming the option and value.
  expect_usage_error(
      [&] {
        parser(&p).parse(Args{"--list", "bad"});
      },
      {"--list bad: not a good item"});
}

TEST(UsageErrorReport, PrintsTheCommandAndTheHelpHint) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(usage_error("wisp run", "--mem 8: expected a size"), 2);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "wisp run: --mem 8: expected a size\nTry 'wisp run --help'.\n");
}

TEST(RunSubcommand, DispatchesHelpVersionAndUnknownNames) {
  std::vector<std::string> seen;
  std::vector<Subcommand> subs = {{"create", [&](int argc, char** argv) {
                                     for (int i = 0; i < argc; ++i) seen.push_back(argv[i]);
                                     return 7;
                                   }}};
  auto run = [&](std::vector<std::string> args, const char* version = nullptr) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return run_subcommand("wisp thing", "USAGE\n", static_cast<int>(argv.size()), argv.data(), subs,
                          version);
  };
  EXPECT_EQ(run({"thing", "create", "x", "--y"}), 7);
  EXPECT_EQ(seen, (Args{"create", "x", "--y"}));
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run({"thing", "--help"}), 0);
  EXPECT_EQ(run({"thing", "version"}, "1.2"), 0);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "USAGE\nwisp thing 1.2\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"thing"}), 2);
  EXPECT_EQ(run({"thing", "version"}), 2);  // no version for this one
  EXPECT_EQ(run({"thing", "bogus"}), 2);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("USAGE"), std::string::npos) << err;
  EXPECT_NE(err.find("wisp thing: unknown command 'bogus' (create)"), std::string::npos) << err;
}

}  // namespace
}  // namespace wisp
