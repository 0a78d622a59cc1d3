// The one payload rule of `wisp exec` and `wisp invoke`, tried on the stdins a person and a
// script give it: a pipe, /dev/null, a terminal (a pty), a file, a pipe left open.
#include "cli/payload.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "tests/unit/expect_error.h"

namespace wisp::cli {
namespace {

using wisp::testutil::expect_error;

// A pipe holding `data`; its write end is closed unless `keep_open` (a script that never
// closes its end).
struct Pipe {
  explicit Pipe(const std::string& data, bool keep_open = false) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
    EXPECT_EQ(::write(fds[1], data.data(), data.size()), static_cast<ssize_t>(data.size()));
    if (!keep_open) write_end.reset();
  }
  UniqueFd read_end, write_end;
};

PayloadSource from_file(const std::string& f) { return PayloadSource{f, false}; }
PayloadSource no_stdin() { return PayloadSource{"", true}; }

TEST(PayloadRule, APipeIsReadToItsEnd) {
  Pipe p("hi\n");
  EXPECT_EQ(read_payload({}, p.read_end.get()), "hi\n");
  Pipe q("all of it");
  EXPECT_EQ(read_payload(from_file("-"), q.read_end.get()), "all of it");
}

TEST(PayloadRule, NoStdinSendsNothingAndLeavesStdinUnread) {
  Pipe p("not for the handler", /*keep_open=*/true);  // would block if it were read
  EXPECT_EQ(read_payload(no_stdin(), p.read_end.get()), "");
  char c;
  EXPECT_EQ(::read(p.read_end.get(), &c, 1), 1);  // still there
}

TEST(PayloadRule, DevNullIsAnEmptyPayload) {
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null);
  EXPECT_EQ(read_payload({}, null.get()), "");
}

TEST(PayloadRule, ATerminalGivesAnEmptyPayloadWithoutWaiting) {
  int master = -1, slave = -1;
  // Every Linux host wisp supports has devpts; a failure here is a broken host, not a skip.
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0) << std::strerror(errno);
  UniqueFd m(master), s(slave);
  ASSERT_TRUE(::isatty(s.get()));
  ASSERT_EQ(::write(m.get(), "typed\n", 6), 6);  // even with input waiting, no end-of-file
  EXPECT_EQ(read_payload({}, s.get()), "");
  // --payload - asks for the terminal's input explicitly: read up to end-of-file (^D).
  ASSERT_EQ(::write(m.get(), "\x04", 1), 1);
  EXPECT_EQ(read_payload(from_file("-"), s.get()), "typed\n");
}

TEST(PayloadRule, AFileIsReadWhateverStdinIs) {
  std::string path = ::testing::TempDir() + "/payload-" + std::to_string(::getpid());
  std::ofstream(path) << "from a file";
  Pipe p("from stdin", /*keep_open=*/true);
  EXPECT_EQ(read_payload(from_file(path), p.read_end.get()), "from a file");
  ::unlink(path.c_str());
  expect_error([&] { read_payload(from_file(path), p.read_end.get()); }, {path});
}

TEST(PayloadRule, ACancelledWaitOnAnOpenPipeStops) {
  Pipe p("partial", /*keep_open=*/true);
  UniqueFd cancel(::eventfd(1, EFD_CLOEXEC));
  expect_error([&] { read_payload({}, p.read_end.get(), cancel.get()); }, {"interrupted"});
}

TEST(PayloadRule, OptionsParseAndContradictionsAreUsageErrors) {
  PayloadSource src;
  OptionParser parser("wisp invoke");
  add_payload_options(parser, &src);
  parser.parse(std::vector<std::string>{"-n"});
  EXPECT_TRUE(src.no_stdin);
  parser.parse(std::vector<std::string>{"--payload", "in.json"});
  EXPECT_EQ(src.file, "in.json");
  EXPECT_NO_THROW(check_payload_options(src));  // -n with a file: stdin is not read anyway
  src.file = "-";
  EXPECT_THROW(check_payload_options(src), UsageError);
  EXPECT_THROW(parser.parse(std::vector<std::string>{"--payload"}), UsageError);
}

}  // namespace
}  // namespace wisp::cli
