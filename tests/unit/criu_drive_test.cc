// A template's CRIU image as a read-only drive (manager/criu_drive.h): its record file's text
// (round trip, refusals naming the file and the line), the drive made from a real archive with
// mkfs.ext4 (its files read back with debugfs), the identity check that decides when the
// fallback makes it again (missing, damaged in its first 4 KiB, made from another archive) and
// the full CRC check of `wisp snapshot verify`.
#include "manager/criu_drive.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "api/criu_image.h"
#include "base/file_io.h"
#include "base/run_tool.h"
#include "manager/criu_image_store.h"
#include "snapshot/crc64.h"
#include "tests/unit/expect_error.h"

namespace wisp::manager {
namespace {

using testutil::expect_error;

CriuDriveRecord sample_record() {
  CriuDriveRecord r;
  r.identity.size_bytes = 12582912;
  r.identity.mtime_ns = 1764815000123456789;
  r.identity.digest = 0x0123456789abcdefull;
  r.crc64 = 0xfedcba9876543210ull;
  r.image_crc64 = 0x00000000000000ffull;
  return r;
}

TEST(CriuDriveRecord, RoundTrips) {
  CriuDriveRecord r = sample_record();
  std::string text = format_criu_drive_record(r);
  EXPECT_EQ(text,
            "wisp-criu-drive 1\nbytes 12582912\nmtime_ns 1764815000123456789\n"
            "digest 0123456789abcdef\ncrc64 fedcba9876543210\nimage_crc64 00000000000000ff\n");
  CriuDriveRecord back = parse_criu_drive_record(text, "R");
  EXPECT_EQ(back.identity.size_bytes, r.identity.size_bytes);
  EXPECT_EQ(back.identity.mtime_ns, r.identity.mtime_ns);
  EXPECT_EQ(back.identity.digest, r.identity.digest);
  EXPECT_EQ(back.crc64, r.crc64);
  EXPECT_EQ(back.image_crc64, r.image_crc64);
}

TEST(CriuDriveRecord, RefusesWhatItDidNotWrite) {
  std::string good = format_criu_drive_record(sample_record());
  auto with = [&good](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  struct Case {
    std::string text, why;
  } cases[] = {
      {"", "no 'wisp-criu-drive 1' line"},
      {with("wisp-criu-drive 1", "wisp-criu-drive 2"), "no 'wisp-criu-drive 1' line"},
      {good.substr(0, good.size() - 1), "not terminated"},
      {good + "extra 1\n", "7 lines, expected 6"},
      {with("bytes 12582912\n", ""), "5 lines"},
      {with("mtime_ns", "mtime"), "line 3: expected 'mtime_ns '"},
      {with("bytes 12582912", "bytes -1"), "bytes: not a number"},
      {with("bytes 12582912", "bytes 0"), "bytes: 0 or over"},
      {with("bytes 12582912", "bytes 99999999999999"), "bytes: 0 or over"},
      {with("bytes 12582912", "bytes 99999999999999999999"), "bytes: not a number"},
      {with("digest 0123456789abcdef", "digest 0123456789ABCDEF"), "digest: not 16"},
      {with("crc64 fedcba9876543210", "crc64 fedcba987654321"), "crc64: not 16"},
      {with("image_crc64 00000000000000ff", "image_crc64 0x000000000000ff"), "image_crc64"},
      {good + std::string(600, '\n'), "over 512 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    expect_error([&] { parse_criu_drive_record(c.text, "dir/criu-image.ext4.sum"); },
                 {"dir/criu-image.ext4.sum", "not a valid CRIU drive record", c.why});
  }
}

TEST(CriuDriveRecord, SizeFitsTheFiles) {
  EXPECT_EQ(criu_drive_bytes(0, 0) % (1 << 20), 0u);
  EXPECT_GE(criu_drive_bytes(52 << 20, 30), (52u << 20) + 30 * 4096);
  EXPECT_LE(criu_drive_bytes(52 << 20, 30), 64u << 20);  // not much more than it holds
}

class CriuDrive : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wisp-criu-drive-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store({{"core-1.img", "hello"},
           {"pages-1.img", std::string(3 * 4096 + 7, 'p')},
           {"wisp-worker.txt", "stdin 1\n"}});
  }
  void TearDown() override { remove_tree(dir_); }

  // A CRIU image archive of `files` and its .sum, as store_criu_image leaves them.
  void store(const std::vector<std::pair<std::string, std::string>>& files) {
    std::string image(api::kCriuImageMagic);
    for (const auto& [name, data] : files)
      image += api::criu_record_header(name, data.size()) + data;
    image += api::criu_image_end();
    std::ofstream(dir_ + "/" + kCriuImageFile, std::ios::binary | std::ios::trunc) << image;
    char line[64];
    uint64_t crc = snapshot::crc64(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(image.data()), image.size()));
    snprintf(line, sizeof(line), "crc64 %016llx\n", static_cast<unsigned long long>(crc));
    std::ofstream(dir_ + "/" + kCriuImageSumFile, std::ios::binary | std::ios::trunc)
        << "wisp-criu-image 1\nbytes " << image.size() << "\n"
        << line;
  }
  std::string drive() const { return dir_ + "/" + kCriuDriveFile; }
  // Flips one byte of the drive at `offset`, keeping its modification time (only the digest
  // or the full CRC can tell).
  void flip(off_t offset) {
    struct stat st;
    ASSERT_EQ(stat(drive().c_str(), &st), 0);
    int fd = open(drive().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char c;
    ASSERT_EQ(pread(fd, &c, 1, offset), 1);
    c = static_cast<char>(c ^ 0x5a);
    ASSERT_EQ(pwrite(fd, &c, 1, offset), 1);
    timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(futimens(fd, times), 0);
    close(fd);
  }
  std::string dir_;
};

TEST_F(CriuDrive, MadeFromTheArchiveHoldsItsFiles) {
  CriuDriveMade made = make_criu_drive(dir_);
  EXPECT_EQ(made.files, 3u);
  struct stat st;
  ASSERT_EQ(stat(drive().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), made.record.identity.size_bytes);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(criu_drive_unfit_reason(dir_), "");
  EXPECT_EQ(verify_criu_drive(dir_).crc64, made.record.crc64);
  // The files as criu wrote them (0600), read back without mounting anything.
  std::string cat = run_tool({"debugfs", "-R", "cat /core-1.img", drive()}, "debugfs", "e2fsprogs");
  EXPECT_NE(cat.find("hello"), std::string::npos) << cat;
  std::string ls = run_tool({"debugfs", "-R", "ls -l /", drive()}, "debugfs", "e2fsprogs");
  EXPECT_NE(ls.find("100600"), std::string::npos) << ls;
  EXPECT_NE(ls.find("12295"), std::string::npos) << ls;  // pages-1.img's size
  // No temporary left in the snapshot directory.
  std::string left = run_tool({"ls", "-A", dir_}, "ls", "coreutils");
  EXPECT_EQ(left, "criu-image.ext4\ncriu-image.ext4.sum\ncriu-image.sum\ncriu-image.wci\n");
}

TEST_F(CriuDrive, MissingIsMadeAgain) {
  EXPECT_NE(criu_drive_unfit_reason(dir_).find("criu-image.ext4: missing"), std::string::npos);
  make_criu_drive(dir_);
  unlink(drive().c_str());
  std::vector<std::string> said;
  bool remade = false;
  std::string path = ensure_criu_drive(
      dir_, [&](const std::string& line) { said.push_back(line); }, &remade);
  EXPECT_EQ(path, drive());
  EXPECT_TRUE(remade);
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("criu-image.ext4: missing: making it again from the archive"),
            std::string::npos)
      << said[0];
  EXPECT_EQ(criu_drive_unfit_reason(dir_), "");
  // Fine now: not made again.
  ensure_criu_drive(dir_, nullptr, &remade);
  EXPECT_FALSE(remade);
  // What a make that died left: removed when the drive is made again.
  ASSERT_EQ(mkdir((dir_ + "/.criu-drive-abcdef").c_str(), 0700), 0);
  std::ofstream(dir_ + "/.criu-drive-abcdef/core-1.img") << "x";
  std::ofstream(dir_ + "/.criu-image.ext4.tmp-abcdef") << "x";
  unlink(drive().c_str());
  ensure_criu_drive(dir_, nullptr, &remade);
  EXPECT_TRUE(remade);
  std::string left = run_tool({"ls", "-A", dir_}, "ls", "coreutils");
  EXPECT_EQ(left, "criu-image.ext4\ncriu-image.ext4.sum\ncriu-image.sum\ncriu-image.wci\n");
}

TEST_F(CriuDrive, DamagedInItsFirst4KiBIsNotTheDriveOfItsRecord) {
  make_criu_drive(dir_);
  flip(1024 + 40);  // inside the superblock
  std::string why = criu_drive_unfit_reason(dir_);
  EXPECT_NE(why.find("not the drive its record describes"), std::string::npos) << why;
  expect_error([&] { verify_criu_drive(dir_); }, {kCriuDriveFile, "not the drive its record"});
  bool remade = false;
  ensure_criu_drive(dir_, nullptr, &remade);
  EXPECT_TRUE(remade);
  EXPECT_EQ(criu_drive_unfit_reason(dir_), "");
  verify_criu_drive(dir_);
}

TEST_F(CriuDrive, DamagedInTheMiddleOnlyTheFullCheckSees) {
  CriuDriveMade made = make_criu_drive(dir_);
  flip(static_cast<off_t>(made.record.identity.size_bytes / 2));
  EXPECT_EQ(criu_drive_unfit_reason(dir_), "");  // the cheap check: its ends are intact
  expect_error([&] { verify_criu_drive(dir_); }, {kCriuDriveFile, "checksum mismatch", "damaged"});
}

TEST_F(CriuDrive, MadeFromAnotherArchiveIsMadeAgain) {
  make_criu_drive(dir_);
  store({{"core-1.img", "other"}});
  std::string why = criu_drive_unfit_reason(dir_);
  EXPECT_NE(why.find("made from another CRIU image"), std::string::npos) << why;
  bool remade = false;
  ensure_criu_drive(dir_, nullptr, &remade);
  EXPECT_TRUE(remade);
  std::string cat = run_tool({"debugfs", "-R", "cat /core-1.img", drive()}, "debugfs", "e2fsprogs");
  EXPECT_NE(cat.find("other"), std::string::npos) << cat;
}

TEST_F(CriuDrive, ADamagedArchiveMakesNoDrive) {
  std::ofstream(dir_ + "/" + kCriuImageFile, std::ios::binary | std::ios::app) << "x";
  expect_error([&] { make_criu_drive(dir_); }, {kCriuImageFile});
  struct stat st;
  EXPECT_NE(stat(drive().c_str(), &st), 0);
  std::string left = run_tool({"ls", "-A", dir_}, "ls", "coreutils");
  EXPECT_EQ(left, "criu-image.sum\ncriu-image.wci\n");
}

TEST_F(CriuDrive, ABadRecordIsARefusalNamingIt) {
  make_criu_drive(dir_);
  std::ofstream(dir_ + "/" + kCriuDriveRecordFile, std::ios::trunc) << "nonsense\n";
  std::string why = criu_drive_unfit_reason(dir_);
  EXPECT_NE(why.find("criu-image.ext4.sum: not a valid CRIU drive record"), std::string::npos)
      << why;
  expect_error([&] { verify_criu_drive(dir_); }, {kCriuDriveRecordFile});
}

}  // namespace
}  // namespace wisp::manager
