// A template's stored CRIU image (manager/criu_image_store.h): verify accepts the archive its
// .sum describes and refuses a damaged, truncated or mis-described one, naming the file.
#include "manager/criu_image_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <span>
#include <string>

#include "api/criu_image.h"
#include "snapshot/crc64.h"
#include "tests/unit/expect_error.h"

namespace wisp::manager {
namespace {

class CriuImageStore : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wisp-criu-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    image_ = std::string(api::kCriuImageMagic) + api::criu_record_header("core-1.img", 5) +
             "hello" + api::criu_image_end();
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  void write(const std::string& name, const std::string& data) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << data;
  }
  std::string sum(uint64_t bytes, uint64_t crc) {
    char line[64];
    snprintf(line, sizeof(line), "crc64 %016llx\n", static_cast<unsigned long long>(crc));
    return "wisp-criu-image 1\nbytes " + std::to_string(bytes) + "\n" + line;
  }
  uint64_t crc(const std::string& s) {
    return snapshot::crc64(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  std::string dir_, image_;
};

TEST_F(CriuImageStore, VerifiesAnIntactImage) {
  EXPECT_FALSE(has_criu_image(dir_));
  write(kCriuImageFile, image_);
  write(kCriuImageSumFile, sum(image_.size(), crc(image_)));
  ASSERT_TRUE(has_criu_image(dir_));
  StoredCriuImage v = verify_criu_image(dir_);
  EXPECT_EQ(v.bytes, image_.size());
  EXPECT_EQ(v.files, 1u);
}

TEST_F(CriuImageStore, RefusesADamagedImageNamingTheFile) {
  using testutil::expect_error;
  std::string damaged = image_;
  damaged[damaged.size() - 6] ^= 1;  // a byte of the file's data
  write(kCriuImageFile, damaged);
  write(kCriuImageSumFile, sum(image_.size(), crc(image_)));
  expect_error([&] { verify_criu_image(dir_); }, {kCriuImageFile, "checksum mismatch"});
  write(kCriuImageFile, image_.substr(0, 20));
  expect_error([&] { verify_criu_image(dir_); }, {kCriuImageFile, "truncated"});
  // A .sum that matches an archive that does not parse (a wrong writer, not a bit flip).
  std::string bad = image_ + "x";
  write(kCriuImageFile, bad);
  write(kCriuImageSumFile, sum(bad.size(), crc(bad)));
  expect_error([&] { verify_criu_image(dir_); }, {kCriuImageFile, "bytes after the end marker"});
  write(kCriuImageSumFile, "wisp-criu-image 1\nbytes x\ncrc64 0000000000000000\n");
  expect_error([&] { verify_criu_image(dir_); }, {kCriuImageSumFile, "not a number"});
  write(kCriuImageSumFile, "something else\n");
  expect_error([&] { verify_criu_image(dir_); }, {kCriuImageSumFile, "not a wisp-criu-image"});
}

}  // namespace
}  // namespace wisp::manager
