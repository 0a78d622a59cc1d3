#include "vmm/machine/console.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "tests/unit/expect_error.h"

namespace wisp {
namespace {

ConsoleWatch::Event feed(ConsoleWatch& w, const std::string& s) {
  return w.feed({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

TEST(ConsoleWatch, RecognisesPanicAcrossChunks) {
  ConsoleWatch w;
  EXPECT_EQ(feed(w, "[    1.0] Kernel pan"), ConsoleWatch::Event::kNone);
  EXPECT_EQ(feed(w, "ic - not syncing: Attempted to kill init!\r\n"), ConsoleWatch::Event::kPanic);
  EXPECT_EQ(w.panic_line(), "Kernel panic - not syncing: Attempted to kill init!");
  EXPECT_EQ(feed(w, "---[ end Kernel panic - not syncing: Attempted ]---\n"),
            ConsoleWatch::Event::kPanicEnd);
}

TEST(ConsoleWatch, RecognisesHaltAndPowerDown) {
  ConsoleWatch w;
  EXPECT_EQ(feed(w, "[   2.0] reboot: System halted\n"), ConsoleWatch::Event::kHalt);
  EXPECT_EQ(feed(w, "reboot: Power down\n"), ConsoleWatch::Event::kHalt);
}

TEST(ConsoleWatch, OrdinaryOutputAndHugeLinesAreHarmless) {
  ConsoleWatch w;
  EXPECT_EQ(feed(w, "hello\nreboot: Restarting system\n"), ConsoleWatch::Event::kNone);
  EXPECT_EQ(feed(w, std::string(100000, 'x') + "\n"), ConsoleWatch::Event::kNone);
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Pipe {
  UniqueFd read, write;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    read = UniqueFd(fds[0]);
    write = UniqueFd(fds[1]);
  }
  std::string drain() const {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = ::read(read.get(), buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
};

// A console on pipes, with a stop request that counts how often it was asked.
class ConsoleTest : public ::testing::Test {
 protected:
  ConsoleConfig config(ConsoleOutput output) {
    ConsoleConfig c;
    c.output = output;
    c.in_fd = in.read.get();
    c.out_fd = out.write.get();
    return c;
  }
  // Typed input reaches `to_guest` only once input has started (on a pipe: no terminal).
  void start(Console& console) {
    console.start_input(
        loop, [this](std::span<const uint8_t> b) { to_guest.append(b.begin(), b.end()); });
  }

  Pipe in, out;
  EventLoop loop;
  int requests = 0;
  StopRequest stop{[this] { ++requests; }};
  std::string to_guest;
};

TEST_F(ConsoleTest, StdioOutputGoesToOutFd) {
  Console console(config(ConsoleOutput::kStdio), stop);
  console.output(bytes("hello\r\n"));
  EXPECT_EQ(out.drain(), "hello\r\n");
  EXPECT_EQ(requests, 0);
}

TEST_F(ConsoleTest, NoneWritesNothingAndFileTruncatesThenAppends) {
  Console none(config(ConsoleOutput::kNone), stop);
  none.output(bytes("lost"));
  EXPECT_EQ(out.drain(), "");

  std::string path = ::testing::TempDir() + "wisp-console-" + std::to_string(getpid()) + ".log";
  std::ofstream(path) << "old contents";
  ConsoleConfig c = config(ConsoleOutput::kFile);
  c.file = path;
  {
    Console file(c, stop);
    file.output(bytes("one "));
    file.output(bytes("two"));
  }
  std::stringstream got;
  got << std::ifstream(path).rdbuf();
  EXPECT_EQ(got.str(), "one two");
  EXPECT_EQ(out.drain(), "") << "a file console does not also write to stdout";
  unlink(path.c_str());
}

TEST_F(ConsoleTest, AConsoleFileIsOwnerOnly) {
  std::string path = ::testing::TempDir() + "wisp-console-mode-" + std::to_string(getpid());
  unlink(path.c_str());
  ConsoleConfig c = config(ConsoleOutput::kFile);
  c.file = path;
  mode_t old = ::umask(0);  // whatever the umask: the guest's output is the owner's alone
  { Console file(c, stop); }
  ::umask(old);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  unlink(path.c_str());
}

TEST_F(ConsoleTest, FileStopsAtItsCapWithANote) {
  std::string path = ::testing::TempDir() + "wisp-console-cap-" + std::to_string(getpid());
  ConsoleConfig c = config(ConsoleOutput::kFile);
  c.file = path;
  c.file_max_bytes = 10;
  {
    Console file(c, stop);
    file.output(bytes("0123456"));
    file.output(bytes("789abc"));
    file.output(bytes("more, dropped"));
  }
  std::stringstream got;
  got << std::ifstream(path).rdbuf();
  EXPECT_EQ(got.str().substr(0, 11), "0123456789\n");
  EXPECT_NE(got.str().find("cap of 10 bytes (--console-max-bytes)"), std::string::npos);
  EXPECT_EQ(got.str().find("abc"), std::string::npos);
  EXPECT_EQ(got.str().find("dropped"), got.str().rfind("dropped")) << "one note only";
  unlink(path.c_str());
}

TEST_F(ConsoleTest, DefaultFileCapIsSixteenMiB) {
  EXPECT_EQ(ConsoleConfig{}.file_max_bytes, 16u << 20);
}

TEST_F(ConsoleTest, TerminalOutputIsFilteredPipesAreNot) {
  const std::string guest = "\x1b]0;title\x07\x1b[31mred\x1b[0m\x1b[6n\n";
  {
    Console console(config(ConsoleOutput::kStdio), stop);  // out_fd is a pipe
    console.output(bytes(guest));
    EXPECT_EQ(out.drain(), guest);
  }
  ConsoleConfig c = config(ConsoleOutput::kStdio);
  c.filter = ConsoleFilter::kAlways;  // as on a terminal
  Console console(c, stop);
  console.output(bytes(guest));
  EXPECT_EQ(out.drain(), "\x1b[31mred\x1b[0m\n");
}

TEST_F(ConsoleTest, OnARealTerminalOutputIsFiltered) {
  UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(master) << "posix_openpt";
  ASSERT_EQ(grantpt(master.get()), 0);
  ASSERT_EQ(unlockpt(master.get()), 0);
  UniqueFd tty(::open(ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(tty);
  ConsoleConfig c = config(ConsoleOutput::kStdio);
  c.out_fd = tty.get();  // the default filter: kIfTerminal
  Console console(c, stop);
  console.output(bytes("a\x1b]52;c;Zm9v\x07\x1b[1mb\x1b[5n."));
  std::string got;
  char buf[64];
  while (got.find('.') == std::string::npos) {
    ssize_t n = ::read(master.get(), buf, sizeof(buf));
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got, "a\x1b[1mb.");
}

TEST_F(ConsoleTest, UnopenableFileIsAnErrorNamingIt) {
  ConsoleConfig c = config(ConsoleOutput::kFile);
  c.file = "/nonexistent-dir/console.log";
  testutil::expect_error([&] { Console console(c, stop); },
                         {"console file", "/nonexistent-dir/console.log"});
}

TEST_F(ConsoleTest, PanicMarksTheOutcomeAndItsEndStopsTheMachine) {
  Console console(config(ConsoleOutput::kNone), stop);
  console.output(bytes("Kernel panic - not syncing: Attempted to kill init!\r\n"));
  EXPECT_EQ(requests, 0) << "the backtrace is still to come";
  console.output(bytes("Call Trace:\n---[ end Kernel panic - not syncing: Attempted ]---\n"));
  EXPECT_EQ(requests, 1);
  StopRequest::Outcome o = stop.outcome();
  EXPECT_EQ(o.reason, StopReason::kCrash);
  EXPECT_TRUE(o.panicked);
  EXPECT_EQ(o.detail, "Kernel panic - not syncing: Attempted to kill init!");
}

TEST_F(ConsoleTest, HaltLineIsAPowerOff) {
  Console console(config(ConsoleOutput::kNone), stop);
  console.output(bytes("[    3.1] reboot: System halted\n"));
  EXPECT_EQ(requests, 1);
  EXPECT_EQ(stop.outcome().reason, StopReason::kPowerOff);
  EXPECT_EQ(stop.outcome().detail, "guest halted");
}

TEST_F(ConsoleTest, TypedBytesGoToTheGuestCtrlAIncluded) {
  Console console(config(ConsoleOutput::kStdio), stop);
  console.input(bytes("before start"));
  start(console);
  console.input(bytes("ls\r"));
  console.input(bytes("\001a"));
  EXPECT_EQ(to_guest, "ls\r\001a");
  EXPECT_EQ(requests, 0);
  console.stop_input();
}

TEST_F(ConsoleTest, CtrlAXStopsTheMachineEvenAcrossChunks) {
  Console console(config(ConsoleOutput::kStdio), stop);
  start(console);
  console.input(bytes("ab\x01"));
  EXPECT_EQ(requests, 0);
  console.input(bytes("Xtrailing"));
  EXPECT_EQ(requests, 1);
  EXPECT_EQ(to_guest, "ab\x01") << "the chunk that ends the escape is dropped";
  EXPECT_EQ(stop.outcome().reason, StopReason::kPowerOff);
  EXPECT_EQ(stop.outcome().detail, "Ctrl-A x on the console");
}

TEST_F(ConsoleTest, ReadsInFdThroughTheLoopUntilEndOfInput) {
  Console console(config(ConsoleOutput::kStdio), stop);
  start(console);
  ASSERT_EQ(::write(in.write.get(), "hi", 2), 2);
  in.write = UniqueFd();  // end of input
  loop.add_timer(100, [this] { loop.stop(); });
  loop.run();
  EXPECT_EQ(to_guest, "hi");
  // The console stopped watching in_fd at end of input, so it can be added again.
  EXPECT_NO_THROW(loop.add(in.read.get(), [](uint32_t) {}));
  console.stop_input();
}

TEST_F(ConsoleTest, NoInputUnlessStdio) {
  Console console(config(ConsoleOutput::kNone), stop);
  start(console);
  console.input(bytes("ignored"));
  EXPECT_EQ(to_guest, "");
  EXPECT_NO_THROW(loop.add(in.read.get(), [](uint32_t) {})) << "in_fd was never watched";
}

TEST(StopRequest, FirstRequestWinsAndEveryRequestIsPassedOn) {
  int requests = 0;
  StopRequest stop([&] { ++requests; });
  EXPECT_EQ(stop.outcome().reason, StopReason::kNone);
  stop.request(StopReason::kReset, "i8042 reset");
  stop.request(StopReason::kError, "vCPU 0: later");
  EXPECT_EQ(requests, 2);
  EXPECT_EQ(stop.outcome().reason, StopReason::kReset);
  EXPECT_EQ(stop.outcome().detail, "i8042 reset");
  EXPECT_FALSE(stop.outcome().panicked);
}

TEST(StopRequest, SignalIsRecordedEvenAfterAnotherReason) {
  StopRequest stop([] {});
  stop.request_by_signal(SIGTERM);
  EXPECT_EQ(stop.outcome().reason, StopReason::kSignal);
  EXPECT_EQ(stop.outcome().signal, SIGTERM);
  EXPECT_EQ(stop.outcome().detail, std::string("stopped by ") + strsignal(SIGTERM));

  StopRequest late([] {});
  late.request(StopReason::kPowerOff, "ACPI S5 (power off)");
  late.request_by_signal(SIGINT);
  EXPECT_EQ(late.outcome().reason, StopReason::kPowerOff);
  EXPECT_EQ(late.outcome().signal, SIGINT);
}

TEST(StopRequest, APanicMakesAnyStopACrashWithThePanicLine) {
  StopRequest stop([] {});
  stop.note_panic("Kernel panic - not syncing: VFS");
  stop.request(StopReason::kReset, "triple fault");  // panic=-1 reboots
  StopRequest::Outcome o = stop.outcome();
  EXPECT_EQ(o.reason, StopReason::kCrash);
  EXPECT_TRUE(o.panicked);
  EXPECT_EQ(o.detail, "Kernel panic - not syncing: VFS");
}

}  // namespace
}  // namespace wisp
