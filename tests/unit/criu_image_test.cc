// The CRIU image archive (api/criu_image.h): what the agent sends and unpacks and the host
// stores and verifies. Damaged archives are refused with the offset and the fault.
#include "api/criu_image.h"

#include <gtest/gtest.h>

#include <span>
#include <string>

#include "tests/unit/expect_error.h"

namespace wisp::api {
namespace {

std::string archive(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out(kCriuImageMagic);
  for (const auto& [name, data] : files) out += criu_record_header(name, data.size()) + data;
  return out + criu_image_end();
}

std::vector<CriuImageEntry> parse(const std::string& s) {
  return parse_criu_image(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()), "img");
}

TEST(CriuImage, RoundTripsFilesInOrder) {
  std::string a = archive(
      {{"core-1.img", "abc"}, {"pages-1.img", std::string(5000, 'x')}, {"wisp-worker.txt", ""}});
  auto e = parse(a);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].name, "core-1.img");
  EXPECT_EQ(a.substr(e[0].offset, e[0].size), "abc");
  EXPECT_EQ(e[1].size, 5000u);
  EXPECT_EQ(e[2].size, 0u);
  EXPECT_TRUE(parse(archive({})).empty());
}

TEST(CriuImage, RefusesDamage) {
  using testutil::expect_error;
  std::string good = archive({{"core-1.img", "abc"}});
  expect_error([] { parse("WISPCRI2"); }, {"img", "magic"});
  expect_error([&] { parse(good.substr(0, good.size() - 1)); }, {"img", "truncated"});
  expect_error([&] { parse(good.substr(0, good.size() - 6)); }, {"runs past the end"});
  expect_error([&] { parse(good + "x"); }, {"bytes after the end marker"});
  expect_error([] { parse(archive({{"../etc", "x"}})); }, {"bad file name", "offset 8"});
  expect_error([] { parse(archive({{".hidden", "x"}})); }, {"bad file name"});
  expect_error([] { parse(archive({{"a/b", "x"}})); }, {"bad file name"});
  expect_error([] { parse(archive({{"a", "x"}, {"a", "y"}})); }, {"'a' twice"});
  expect_error([] { parse(archive({{std::string(129, 'a'), "x"}})); }, {"longer than 128"});
  std::string huge = std::string(kCriuImageMagic) + criu_record_header("a", ~0ull) + "x";
  expect_error([&] { parse(huge); }, {"runs past the end"});
}

}  // namespace
}  // namespace wisp::api
