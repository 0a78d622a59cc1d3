#include "snapshot/snapshot_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"
#include "snapshot/memory_file.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/snapshot_test_state.h"

namespace wisp::snapshot {
namespace {

namespace fs = std::filesystem;
using testing::sample_state;
using testutil::expect_error;

mode_t current_umask() {
  mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

class SnapshotDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("wisp-snapdir-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    state_ = sample_state();
    // Guest memory: mostly zero, a few written pages.
    for (const MemoryFileRegion& r : state_.memory) ram_.emplace_back(r.size, 0);
    std::memset(ram_[0].data() + 0x3000, 0xab, kPageSize);
    std::memset(ram_[0].data() + 0x10000, 0xcd, 3 * kPageSize);
    ram_[0][0xfffff] = 1;  // last byte of region 0
    ram_[1][5] = 2;
    for (size_t i = 0; i < ram_.size(); ++i) contents_.push_back({state_.memory[i], ram_[i]});
  }
  void TearDown() override { fs::remove_all(root_); }

  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(root_)) out.push_back(e.path().filename());
    return out;
  }

  fs::path root_;
  SnapshotState state_;
  std::vector<Bytes> ram_;
  std::vector<RegionContents> contents_;
};

TEST_F(SnapshotDirTest, RoundTripsStateAndMemory) {
  std::string dir = root_ / "snap";
  write_snapshot_dir(dir, state_, contents_);
  EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
  SnapshotReport report = verify_snapshot(dir);
  EXPECT_EQ(report.vcpus, 2u);
  EXPECT_EQ(report.regions, 2u);
  EXPECT_EQ(report.devices, 5u);  // the serial port and four virtio slots (one per kind)
  EXPECT_EQ(report.memory_file_bytes, memory_file_size(state_.memory));
  EXPECT_NE(report.to_string().find("2 vCPU(s)"), std::string::npos);
  EXPECT_FALSE(report.portable);
  EXPECT_EQ(report.to_string().find("portable"), std::string::npos);

  SnapshotState back = read_state_file(dir + "/" + kStateFileName);
  EXPECT_EQ(back, state_);
  state_.machine.cpu_model = CpuModel::kX86_64_v2;  // --portable: verify says so
  write_snapshot_dir(root_ / "portable", state_, contents_);
  SnapshotReport portable = verify_snapshot(root_ / "portable");
  EXPECT_TRUE(portable.portable);
  EXPECT_NE(portable.to_string().find("(portable: the x86-64-v2 baseline CPU)"), std::string::npos);
  MappedMemoryFile mem = map_memory_file(dir + "/" + kMemoryFileName, back.memory);
  for (size_t i = 0; i < back.memory.size(); ++i) {
    auto bytes = mem.region(back.memory[i]);
    ASSERT_EQ(bytes.size(), ram_[i].size());
    EXPECT_EQ(std::memcmp(bytes.data(), ram_[i].data(), bytes.size()), 0) << "region " << i;
  }
  // MAP_PRIVATE: writes stay in this mapping.
  mem.data()[0] = 0x55;
  MappedMemoryFile again = map_memory_file(dir + "/" + kMemoryFileName, back.memory);
  EXPECT_EQ(again.data()[0], 0);
}

TEST_F(SnapshotDirTest, ZeroPagesAreHoles) {
  std::string dir = root_ / "snap";
  write_snapshot_dir(dir, state_, contents_);
  struct stat st;
  ASSERT_EQ(::stat((dir + "/" + kMemoryFileName).c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), memory_file_size(state_.memory));
  // 6 non-zero pages written; allow filesystem slack (indirect blocks, preallocation), but far
  // below the 272 pages of the logical size.
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 32 * kPageSize);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 6 * kPageSize);
  // A hole right at the start (page 0 is zero) where SEEK_DATA finds the first written page.
  int fd = ::open((dir + "/" + kMemoryFileName).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::lseek(fd, 0, SEEK_DATA), 0x3000);
  ::close(fd);
}

TEST_F(SnapshotDirTest, MemoryWriteStatsCountOnlyData) {
  std::string path = root_ / "mem";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd);
  MemoryWriteStats stats = write_memory_file(fd.get(), path, contents_);
  EXPECT_EQ(stats.file_bytes, memory_file_size(state_.memory));
  EXPECT_EQ(stats.data_bytes, 6 * kPageSize);
}

TEST_F(SnapshotDirTest, RefusesAnExistingTarget) {
  std::string dir = root_ / "snap";
  fs::create_directory(dir);
  EXPECT_THROW(write_snapshot_dir(dir, state_, contents_), Error);
  EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
}

TEST_F(SnapshotDirTest, LeavesNothingOnFailureAtAnyStep) {
  for (const char* failing : {"state", "memory", "sync", "rename"}) {
    std::string dir = root_ / "snap";
    SnapshotWriteOptions options;
    options.before_step = [&](std::string_view step) {
      if (step == failing) throw Error(std::string("injected failure at ") + failing);
    };
    EXPECT_THROW(write_snapshot_dir(dir, state_, contents_, options), Error) << failing;
    EXPECT_TRUE(entries().empty()) << "after a failure at " << failing;
  }
}

TEST_F(SnapshotDirTest, NewDirHoldsTwoEmptyFilesInAHiddenTempDirectory) {
  std::string dir = root_ / "snap";
  NewSnapshotDir out(dir);
  SnapshotFiles files = out.files();
  EXPECT_EQ(files.dir, dir);
  EXPECT_FALSE(fs::exists(dir));
  std::vector<std::string> names = entries();
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0].rfind(".snap.tmp-", 0), 0u) << names[0];
  EXPECT_EQ(root_ / names[0], fs::path(out.temp_dir()));
  // Owner-only memory (guest RAM) and state (its registers, device queues); both new and open
  // for reading (the manager seals the drives' identities into the state) and writing.
  struct stat st;
  ASSERT_EQ(::fstat(files.state_fd, &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u & ~current_umask());
  ASSERT_EQ(::fstat(files.memory_fd, &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u & ~current_umask());
  EXPECT_EQ(::fcntl(files.state_fd, F_GETFL) & O_ACCMODE, O_RDWR);
  EXPECT_EQ(::fcntl(files.memory_fd, F_GETFL) & O_ACCMODE, O_RDWR);
  EXPECT_NE(::fcntl(files.state_fd, F_GETFD) & FD_CLOEXEC, 0);
}

TEST_F(SnapshotDirTest, NewDirLeavesNothingUnlessCommitted) {
  {
    NewSnapshotDir out(root_ / "snap");
    ASSERT_EQ(::write(out.files().state_fd, "partial", 7), 7);
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(SnapshotDirTest, NewDirCommitRenamesIntoPlace) {
  std::string dir = root_ / "snap";
  {
    NewSnapshotDir out(dir);
    ASSERT_EQ(::write(out.files().state_fd, "state", 5), 5);
    ASSERT_EQ(::write(out.files().memory_fd, "memory", 6), 6);
    out.commit();
    EXPECT_EQ(out.temp_dir(), "");
  }
  EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
  EXPECT_EQ(fs::file_size(fs::path(dir) / kStateFileName), 5u);
  EXPECT_EQ(fs::file_size(fs::path(dir) / kMemoryFileName), 6u);
}

TEST_F(SnapshotDirTest, NewDirNeverReplacesATargetThatAppearedMeanwhile) {
  std::string dir = root_ / "snap";
  expect_error([&] { NewSnapshotDir again(root_ / "absent" / "snap"); },
               {"create a directory " + (root_ / "absent").string()});
  // Also where the filesystem has no RENAME_NOREPLACE (NFS, 9p): the fallback's claim.
  for (NoReplace how : {NoReplace::kAuto, NoReplace::kForceFallback}) {
    {
      NewSnapshotDir out(dir);
      fs::create_directory(dir);
      std::ofstream(fs::path(dir) / "theirs") << "x";
      expect_error([&] { out.commit({}, how); }, {"snapshot " + dir + " already exists"});
      expect_error([&] { NewSnapshotDir again(dir); }, {dir, "snapshot target already exists"});
    }
    EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
    EXPECT_TRUE(fs::exists(fs::path(dir) / "theirs"));
    fs::remove_all(dir);
  }
  // An empty directory there is someone's claim too (the fallback's, between its two steps).
  {
    NewSnapshotDir out(dir);
    fs::create_directory(dir);
    expect_error([&] { out.commit({}, NoReplace::kForceFallback); }, {"already exists"});
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST_F(SnapshotDirTest, TheFallbackWithoutRenameNoReplacePublishesAWholeSnapshot) {
  std::string dir = root_ / "snap";
  {
    NewSnapshotDir out(dir);
    ASSERT_EQ(::write(out.files().state_fd, "state", 5), 5);
    out.commit({}, NoReplace::kForceFallback);
  }
  EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
  EXPECT_EQ(fs::file_size(fs::path(dir) / kStateFileName), 5u);
  EXPECT_EQ(fs::file_size(fs::path(dir) / kMemoryFileName), 0u);
}

TEST_F(SnapshotDirTest, ANewDirRemovesWhatACrashedRunLeftButNotWhatIsInUse) {
  std::string dir = root_ / "snap";
  fs::create_directories(root_ / ".snap.tmp-crashd" / "sub");
  std::ofstream(root_ / ".snap.tmp-crashd" / "sub" / "memory") << "x";
  fs::create_symlink("/etc", root_ / ".snap.tmp-crashd" / "etc");
  NewSnapshotDir in_use(dir);  // removes the crashed run's directory (not /etc's contents)
  EXPECT_FALSE(fs::exists(root_ / ".snap.tmp-crashd"));
  EXPECT_TRUE(fs::exists("/etc/passwd"));
  NewSnapshotDir other(root_ / "snap2");
  NewSnapshotDir again(dir);  // leaves the one in use alone
  EXPECT_TRUE(fs::exists(in_use.temp_dir()));
  EXPECT_EQ(entries().size(), 3u);
}

TEST_F(SnapshotDirTest, RefusesMemoryThatDoesNotMatchTheLayout) {
  contents_.pop_back();
  EXPECT_THROW(write_snapshot_dir(root_ / "snap", state_, contents_), Error);
  EXPECT_TRUE(entries().empty());
}

TEST_F(SnapshotDirTest, VerifyRejectsAMemoryFileOfTheWrongSize) {
  std::string dir = root_ / "snap";
  write_snapshot_dir(dir, state_, contents_);
  std::string mem = dir + "/" + kMemoryFileName;
  ASSERT_EQ(::truncate(mem.c_str(), 4096), 0);
  try {
    verify_snapshot(dir);
    ADD_FAILURE() << "accepted a truncated memory file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(mem + ": memory file is 4096 bytes"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(map_memory_file(mem, state_.memory), Error);
}

TEST_F(SnapshotDirTest, VerifyRejectsACorruptStateFile) {
  std::string dir = root_ / "snap";
  write_snapshot_dir(dir, state_, contents_);
  std::string state = dir + "/" + kStateFileName;
  {
    std::fstream f(state, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  try {
    verify_snapshot(dir);
    ADD_FAILURE() << "accepted a corrupt state file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(state + ": checksum mismatch"), std::string::npos)
        << e.what();
  }
  fs::remove(state);
  EXPECT_THROW(verify_snapshot(dir), Error);
  EXPECT_THROW(verify_snapshot(root_ / "absent"), Error);
}

}  // namespace
}  // namespace wisp::snapshot
