#include "vmm/devices/terminal_filter.h"

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
  EXPECT_EQ(run("\033[1;31mred\033[0m \033[m \033[38:5:208mo\033[38;2;1;2;3mt"),
            "\033[1;31mred\033[0m \033[m \033[38:5:208mo\033[38;2;1;2;3mt");
}

TEST(TerminalFilter, OscDcsApcPmSosAreDroppedWhole) {
  EXPECT_EQ(run("a\033]0;owned title\007b"), "ab");
  EXPECT_EQ(run("a\033]52;c;cm0gLXJmIH4=\033\\b"), "ab") << "clipboard write";
  EXPECT_EQ(run("a\033P$q m\033\\b"), "ab") << "DECRQSS query";
  EXPECT_EQ(run("a\033_Gf=100;AAAA\033\\b"), "ab") << "APC (kitty graphics)";
  EXPECT_EQ(run("a\033^pm\033\\b\033Xsos\033\\c"), "abc");
}

TEST(TerminalFilter, CsiOtherThanSgrIsDropped) {
  EXPECT_EQ(run("a\033[2Jb\033[Hc\033[6nd\033[c"), "abcd") << "clear, home, DSR, DA";
  EXPECT_EQ(run("a\033[?1049hb\033[?25l"), "ab") << "private modes";
  EXPECT_EQ(run("a\033[21tb\033[8;100;100t"), "ab") << "window title report and resize";
  EXPECT_EQ(run("a\033[?1m\033[>4;2m\033[1 mb"), "ab") << "m with a private marker or "
                                                          "an intermediate is not SGR";
  EXPECT_EQ(run("\033[" + std::string(100, '1') + "mx"), "x") << "over-long parameters";
}

TEST(TerminalFilter, OtherEscapesAndC0ControlsAreDropped) {
  EXPECT_EQ(run("a\033cb\0337\0338c\033(0d\033#8e"), "abcde") << "RIS, DECSC, charset";
  EXPECT_EQ(run(std::string("a\005\016\017\007\177b", 7)), "ab") << "ENQ, SO, SI, BEL, DEL";
}

TEST(TerminalFilter, C1ControlsAreDroppedUtf8Kept) {
  EXPECT_EQ(run("a\2332Jb\235c"), "a2Jbc") << "raw C1: CSI and OSC of 8-bit terminals";
  EXPECT_EQ(run("a\302\2336nb"), "a6nb") << "C1 encoded in UTF-8 (U+009B)";
  EXPECT_EQ(run("caf\303\251 \342\202\254 \302\240 \360\237\230\200"),
            "caf\303\251 \342\202\254 \302\240 \360\237\230\200")
      << "continuation bytes 0x80..0x9F inside characters are not C1";
}

TEST(TerminalFilter, SequencesSplitAcrossChunksAreRecognised) {
  TerminalFilter f;
  std::string out = run(f, "x\033");
  out += run(f, "]0;ti");
  out += run(f, "tle\033");
  out += run(f, "\\y\033[3");
  out += run(f, "2mz\033[");
  out += run(f, "2J\302");
  out += run(f, "\233\302");
  out += run(f, "\251.");
  EXPECT_EQ(out, "xy\033[32mz\302\251.");
  EXPECT_EQ(f.dropped(), 3u);
}

TEST(TerminalFilter, CancelAndNewEscapeEndASequence) {
  EXPECT_EQ(run("a\033]0;x\030b"), "ab") << "CAN cancels a string";
  EXPECT_EQ(run("a\033[12\033[1mb"), "a\033[1mb") << "ESC restarts";
  EXPECT_EQ(run("a\033]0;x\033[31mb"), "a\033[31mb") << "ESC ends a string, starts a CSI";
  EXPECT_EQ(run("a\033[1\nb"), "a\nb") << "a newline stays a newline";
}

TEST(TerminalFilter, UnterminatedStringEndsAfterItsCap) {
  TerminalFilter f;
  std::string out = run(f, "\033]0;" + std::string(10000, 'x') + "\nKernel panic\n");
  EXPECT_EQ(out.substr(out.size() - 14), "\nKernel panic\n");
  EXPECT_LT(out.size(), 10000u - 4096u + 20u);
  EXPECT_EQ(out.find('\033'), std::string::npos);
}

}  // namespace
}  // namespace wisp
