#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/exception.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/memory_touch.h"

namespace wisp::agent {
namespace {

// The kj::Exception `f` throws, described.
template <typename F>
std::string failure(F f) {
  try {
    f();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "(no exception)";
}

TEST(AgentMemoryTouchTest, RangesAreCheckedBeforeAnyRead) {
  std::vector<TouchRange> ok = {{0, 2}, {10, 3}};
  EXPECT_EQ(check_touch_ranges(ok, 8, 100), 5u);
  std::vector<TouchRange> empty_range = {{0, 2}, {10, 0}};
  EXPECT_NE(failure([&] { check_touch_ranges(empty_range, 8, 100); }).find("empty range"),
            std::string::npos);
  std::vector<TouchRange> wraps = {{UINT64_MAX - 1, 4}};
  EXPECT_NE(failure([&] { check_touch_ranges(wraps, 8, 100); }).find("physical address space"),
            std::string::npos);
  std::vector<TouchRange> huge_offset = {{UINT64_MAX / 4096, 1}};
  EXPECT_NE(failure([&] { check_touch_ranges(huge_offset, 8, 100); }).find("address space"),
            std::string::npos);
  EXPECT_NE(failure([&] { check_touch_ranges(ok, 1, 100); }).find("too many ranges"),
            std::string::npos);
  EXPECT_NE(failure([&] { check_touch_ranges(ok, 8, 4); }).find("too many pages"),
            std::string::npos);
  EXPECT_EQ(check_touch_ranges(ok, 2, 5), 5u);  // the caps themselves are allowed
}

TEST(AgentMemoryTouchTest, ReadsEveryPageAndRefusesOnesPastTheEnd) {
  // A file laid out like /dev/mem: 8 pages of "RAM".
  std::string path = ::testing::TempDir() + "wisp-touch-" + std::to_string(getpid());
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 8 * kTouchPageBytes), 0);
  std::vector<TouchRange> inside = {{0, 1}, {3, 5}};
  EXPECT_EQ(touch_pages(fd, inside), 6u);
  std::vector<TouchRange> past = {{6, 3}};  // page 8 is past the end
  std::string why = failure([&] { touch_pages(fd, past); });
  EXPECT_NE(why.find("outside guest RAM"), std::string::npos) << why;
  EXPECT_NE(why.find("8"), std::string::npos) << why;
  close(fd);
  unlink(path.c_str());
}

}  // namespace
}  // namespace wisp::agent
