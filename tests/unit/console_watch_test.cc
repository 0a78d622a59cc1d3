#include "vmm/machine/console_watch.h"

#include <gtest/gtest.h>

#include <string>

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

}  // namespace
}  // namespace wisp
