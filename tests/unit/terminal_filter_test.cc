#include "vmm/machine/terminal_filter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wisp {
namespace {

std::string run(TerminalFilter& f, const std::string& in) {
  std::string out;
  f.filter({reinterpret_cast<const uint8_t*>(in.data()), in.size()}, out);
  return out;
}

std::string run(const std::string& in) {
  TerminalFilter f;
  return run(f, in);
}

TEST(TerminalFilter, TextAndLayoutControlsPass) {
  EXPECT_EQ(run("hello, world\r\n\tx\by"), "hello, world\r\n\tx\by");
}

TEST(TerminalFilter, ColoursPass) {
  EXPECT_EQ(run("\x1b[1;31mred\x1b[0m \x1b[m \x1b[38:5:208mo\x1b[38;2;1;2;3mt"),
            "\x1b[1;31mred\x1b[0m \x1b[m \x1b[38:5:208mo\x1b[38;2;1;2;3mt");
}

TEST(TerminalFilter, OscDcsApcPmSosAreDroppedWhole) {
  EXPECT_EQ(run("a\x1b]0;owned title\x07" "b"), "ab");
  EXPECT_EQ(run("a\x1b]52;c;cm0gLXJmIH4=\x1b\\b"), "ab") << "clipboard write";
  EXPECT_EQ(run("a\x1bP$q m\x1b\\b"), "ab") << "DECRQSS query";
  EXPECT_EQ(run("a\x1b_Gf=100;AAAA\x1b\\b"), "ab") << "APC (kitty graphics)";
  EXPECT_EQ(run("a\x1b^pm\x1b\\b\x1bXsos\x1b\\c"), "abc");
}

TEST(TerminalFilter, CsiOtherThanSgrIsDropped) {
  EXPECT_EQ(run("a\x1b[2Jb\x1b[Hc\x1b[6nd\x1b[c"), "abcd") << "clear, home, DSR, DA";
  EXPECT_EQ(run("a\x1b[?1049hb\x1b[?25l"), "ab") << "private modes";
  EXPECT_EQ(run("a\x1b[21tb\x1b[8;100;100t"), "ab") << "window title report and resize";
  EXPECT_EQ(run("a\x1b[?1m\x1b[>4;2m\x1b[1 mb"), "ab") << "m with a private marker or "
                                                          "an intermediate is not SGR";
  EXPECT_EQ(run("\x1b[" + std::string(100, '1') + "mx"), "x") << "over-long parameters";
}

TEST(TerminalFilter, OtherEscapesAndC0ControlsAreDropped) {
  EXPECT_EQ(run("a\x1b" "cb\x1b" "7\x1b" "8c\x1b(0d\x1b#8e"), "abcde") << "RIS, DECSC, charset";
  EXPECT_EQ(run(std::string("a\x05\x0e\x0f\x07\x7f" "b", 7)), "ab") << "ENQ, SO, SI, BEL, DEL";
}

TEST(TerminalFilter, C1ControlsAreDroppedUtf8Kept) {
  EXPECT_EQ(run("a\x9b" "2Jb\x9d" "c"), "a2Jbc") << "raw C1: CSI and OSC of 8-bit terminals";
  EXPECT_EQ(run("a\xc2\x9b" "6nb"), "a6nb") << "C1 encoded in UTF-8 (U+009B)";
  EXPECT_EQ(run("caf\xc3\xa9 \xe2\x82\xac \xc2\xa0 \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xc2\xa0 \xf0\x9f\x98\x80")
      << "continuation bytes 0x80..0x9F inside characters are not C1";
}

TEST(TerminalFilter, SequencesSplitAcrossChunksAreRecognised) {
  TerminalFilter f;
  std::string out = run(f, "x\x1b");
  out += run(f, "]0;ti");
  out += run(f, "tle\x1b");
  out += run(f, "\\y\x1b[3");
  out += run(f, "2mz\x1b[");
  out += run(f, "2J\xc2");
  out += run(f, "\x9b\xc2");
  out += run(f, "\xa9.");
  EXPECT_EQ(out, "xy\x1b[32mz\xc2\xa9.");
  EXPECT_EQ(f.dropped(), 3u);
}

TEST(TerminalFilter, CancelAndNewEscapeEndASequence) {
  EXPECT_EQ(run("a\x1b]0;x\x18" "b"), "ab") << "CAN cancels a string";
  EXPECT_EQ(run("a\x1b[12\x1b[1mb"), "a\x1b[1mb") << "ESC restarts";
  EXPECT_EQ(run("a\x1b]0;x\x1b[31mb"), "a\x1b[31mb") << "ESC ends a string, starts a CSI";
  EXPECT_EQ(run("a\x1b[1\nb"), "a\nb") << "a newline stays a newline";
}

TEST(TerminalFilter, UnterminatedStringEndsAfterItsCap) {
  TerminalFilter f;
  std::string out = run(f, "\x1b]0;" + std::string(10000, 'x') + "\nKernel panic\n");
  EXPECT_EQ(out.substr(out.size() - 14), "\nKernel panic\n");
  EXPECT_LT(out.size(), 10000u - 4096u + 20u);
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
}

}  // namespace
}  // namespace wisp
