// What a snapshot may name (snapshot/snapshot_trust.h): state files edited by hand (re-encoded
// through the codec, so their checksum is valid) that point a drive or a parent somewhere else
// are refused at restore, with a message naming the rule; legitimate ones are admitted.
#include "snapshot/snapshot_trust.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/state_file.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/snapshot_test_state.h"

namespace wisp::snapshot {
namespace {

namespace fs = std::filesystem;
using wisp::testutil::expect_error;

constexpr const char* kDriveRule = "given by the caller at restore";
constexpr const char* kRegularRule = "a snapshot's drive must be a regular file";
constexpr const char* kIdentityRule = "a drive must be the image the snapshot recorded";
constexpr const char* kParentRule =
    "a diff's parent must be a snapshot in the same directory as the diff";

class SnapshotTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("wisp-trust-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "snap");
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string path(const std::string& name) const { return root_ / name; }

  // A snapshot state whose one drive is `drive` (read-only) with `identity`.
  static SnapshotState with_drive(const std::string& drive, const DriveIdentity& identity) {
    SnapshotState s = testing::sample_state();
    auto& spec = std::get<BlockSpec>(s.machine.virtio[0].spec);
    spec.path = drive;
    spec.size_bytes = identity.size_bytes;
    spec.mtime_ns = identity.mtime_ns;
    spec.digest = identity.digest;
    return s;
  }

  // What an attacker does: edit the state and write it back through the codec.
  void write_state(const std::string& dir, const SnapshotState& s) {
    fs::create_directories(dir);
    Bytes bytes = encode_state_file(s);
    std::ofstream(dir + "/" + kStateFileName, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  }

  static std::string make_image(const std::string& file, size_t bytes, char fill) {
    std::ofstream(file, std::ios::binary) << std::string(bytes, fill);
    return file;
  }

  fs::path root_;
};

TEST_F(SnapshotTrustTest, AdmitsADriveInsideTheSnapshotDirectory) {
  std::string image = make_image(path("snap/disk.img"), 3 * kDriveDigestBytes + 5, 'a');
  write_state(path("snap"), with_drive(image, identify_drive(image)));
  SnapshotChain chain = read_snapshot_chain(path("snap"));
  EXPECT_EQ(std::get<BlockSpec>(chain.states[0].machine.virtio[0].spec).path,
            fs::canonical(image).string());
}

TEST_F(SnapshotTrustTest, RefusesADriveAtAHostFile) {
  // A copy of /etc/passwd's identity: only the rule, not the file's contents, may refuse it.
  for (std::string host_file : {"/etc/shadow", "/etc/passwd"}) {
    write_state(path("snap"), with_drive(host_file, {1, 2, 3}));
    expect_error([&] { read_snapshot_chain(path("snap")); },
                 {path("snap") + "/state", "drive 0 (" + host_file + ") is refused", kDriveRule});
  }
}

TEST_F(SnapshotTrustTest, RefusesASymlinkOutOfTheSnapshotDirectory) {
  fs::create_symlink("/etc/passwd", path("snap/disk.img"));
  write_state(path("snap"), with_drive(path("snap/disk.img"), identify_drive("/etc/passwd")));
  expect_error([&] { read_snapshot_chain(path("snap")); }, {"is refused", kDriveRule});
}

TEST_F(SnapshotTrustTest, RefusesADriveThatIsNotARegularFile) {
  // A character device given by the caller, and a FIFO inside the snapshot (opening it must
  // not block).
  write_state(path("snap"), with_drive("/dev/null", {0, 0, 0}));
  BlockSpec dev_null{"/dev/null", true};
  expect_error([&] { read_snapshot_chain(path("snap"), {dev_null}); },
               {path("snap") + "/state", "drive /dev/null is not a regular file", kRegularRule});
  ASSERT_EQ(::mkfifo(path("snap/fifo").c_str(), 0600), 0);
  write_state(path("snap"), with_drive(path("snap/fifo"), {0, 0, 0}));
  expect_error([&] { read_snapshot_chain(path("snap")); }, {"not a regular file", kRegularRule});
  fs::create_directories(path("snap/dir"));
  write_state(path("snap"), with_drive(path("snap/dir"), {0, 0, 0}));
  expect_error([&] { read_snapshot_chain(path("snap")); }, {"not a regular file", kRegularRule});
}

TEST_F(SnapshotTrustTest, RefusesAnImageWithAnotherIdentity) {
  std::string image = make_image(path("snap/disk.img"), 4 * kDriveDigestBytes, 'a');
  DriveIdentity id = identify_drive(image);
  write_state(path("snap"), with_drive(image, id));
  // Same size and modification time, other last block: only the digest tells.
  {
    UniqueFd fd(::open(image.c_str(), O_WRONLY));
    ASSERT_EQ(::pwrite(fd.get(), "b", 1, 4 * kDriveDigestBytes - 1), 1);
  }
  struct timespec times[2] = {{0, UTIME_OMIT},
                              {id.mtime_ns / 1000000000, id.mtime_ns % 1000000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, image.c_str(), times, 0), 0);
  EXPECT_EQ(identify_drive(image).mtime_ns, id.mtime_ns);
  expect_error([&] { read_snapshot_chain(path("snap")); },
               {"drive " + fs::canonical(image).string() + " is refused", kIdentityRule});
}

TEST_F(SnapshotTrustTest, TheCallerGivesDrivesInSlotOrder) {
  std::string image = make_image(path("elsewhere.img"), 100, 'x');
  write_state(path("snap"), with_drive("/var/lib/old-node/disk.img", identify_drive(image)));
  SnapshotChain chain = read_snapshot_chain(path("snap"), {BlockSpec{image, true}});
  EXPECT_EQ(std::get<BlockSpec>(chain.states[0].machine.virtio[0].spec).path, image);
  expect_error(
      [&] {
        read_snapshot_chain(path("snap"), {BlockSpec{image, false}});
      },
      {"drive 0", "given read-write", "read-only"});
  expect_error(
      [&] {
        read_snapshot_chain(path("snap"), {BlockSpec{image, true}, BlockSpec{image, true}});
      },
      {"2 drive(s) given, the snapshot has 1"});
}

TEST_F(SnapshotTrustTest, RefusesAParentInAnotherDirectory) {
  std::string image = make_image(path("snap/disk.img"), 100, 'x');
  SnapshotState base = with_drive(image, identify_drive(image));
  write_state(path("other/base"), base);
  SnapshotState diff = base;
  diff.id = "fedcba9876543210fedcba9876543210";
  diff.diff.parent_id = base.id;
  diff.diff.pages.assign((memory_file_size(diff.memory) / kPageSize + 7) / 8, 0);
  for (const std::string& elsewhere : {path("other/base"), std::string("../other/base"),
                                       path("snap/../other/base"), std::string("..")}) {
    diff.diff.parent_dir = elsewhere;
    write_state(path("snap"), diff);
    expect_error([&] { read_snapshot_chain(path("snap")); },
                 {path("snap") + "/state: parent " + elsewhere + " is refused", kParentRule});
  }
  // A parent next to the diff, by name or by path, is followed.
  write_state(path("base"), base);
  for (const std::string& beside : {path("base"), std::string("base")}) {
    diff.diff.parent_dir = beside;
    write_state(path("snap"), diff);
    SnapshotChain chain = read_snapshot_chain(path("snap"));
    ASSERT_EQ(chain.dirs.size(), 2u);
    EXPECT_EQ(chain.dirs[1], fs::canonical(path("base")).string());
  }
}

TEST_F(SnapshotTrustTest, ADiffIsRefusedWhenMadeAwayFromItsParent) {
  SnapshotState diff = testing::sample_state();
  diff.machine.virtio.erase(diff.machine.virtio.begin());  // no drive
  diff.diff.parent_id = "0123";
  diff.diff.parent_dir = path("base");
  diff.diff.pages.assign((memory_file_size(diff.memory) / kPageSize + 7) / 8, 0);
  write_state(path("snap"), diff);
  std::string state_path = path("snap/state");
  UniqueFd fd(::open(state_path.c_str(), O_RDWR));
  EXPECT_NO_THROW(seal_drive_identities(fd.get(), state_path, path("diff")));
  expect_error([&] { seal_drive_identities(fd.get(), state_path, path("snap/diff")); },
               {"parent " + path("base") + " is refused", kParentRule});
}

TEST_F(SnapshotTrustTest, SealRenamesTheParentToASiblingForAFork) {
  // A fork's VMM records where it was restored from (another generation's snapshot); sealing
  // with a parent name points the diff at the copy beside it instead, which the rule accepts.
  SnapshotState diff = testing::sample_state();
  diff.machine.virtio.erase(diff.machine.virtio.begin());  // no drive
  diff.diff.parent_id = "0123";
  diff.diff.parent_dir = path("elsewhere/snapshot");
  diff.diff.pages.assign((memory_file_size(diff.memory) / kPageSize + 7) / 8, 0);
  write_state(path("snap"), diff);
  fs::create_directories(path("gen"));  // the diff's final directory is not there yet
  fs::create_directories(path("elsewhere/snapshot"));
  std::string state_path = path("snap/state");
  {
    UniqueFd fd(::open(state_path.c_str(), O_RDWR));
    expect_error([&] { seal_drive_identities(fd.get(), state_path, path("gen/snapshot")); },
                 {kParentRule});
    expect_error([&] { seal_drive_identities(fd.get(), state_path, path("gen/snapshot"), "a/b"); },
                 {"not a plain name"});
    seal_drive_identities(fd.get(), state_path, path("gen/snapshot"), "parent-0123");
  }
  SnapshotState sealed = read_state_file(state_path);
  EXPECT_EQ(sealed.diff.parent_dir, "parent-0123");
  EXPECT_EQ(sealed.diff.parent_id, "0123");
  EXPECT_EQ(parent_snapshot_dir(path("gen/snapshot"), sealed.diff.parent_dir, state_path),
            fs::canonical(path("gen")).string() + "/parent-0123");

  write_state(path("full"), testing::sample_state());
  std::string full_path = path("full/state");
  UniqueFd fd(::open(full_path.c_str(), O_RDWR));
  expect_error([&] { seal_drive_identities(fd.get(), full_path, "", "parent-0123"); },
               {"a parent name was given for a full snapshot"});
}

TEST_F(SnapshotTrustTest, SealRecordsTheDigestAndRefusesAnImageThatChanged) {
  std::string image = make_image(path("disk.img"), 10000, 'q');
  DriveIdentity id = identify_drive(image);
  write_state(path("snap"), with_drive(image, {id.size_bytes, id.mtime_ns, 0}));
  std::string state_path = path("snap/state");
  {
    UniqueFd fd(::open(state_path.c_str(), O_RDWR));
    seal_drive_identities(fd.get(), state_path);
  }
  SnapshotState sealed = read_state_file(state_path);
  EXPECT_EQ(std::get<BlockSpec>(sealed.machine.virtio[0].spec).digest, id.digest);
  EXPECT_NE(id.digest, 0u);

  std::ofstream(image, std::ios::app) << "more";
  UniqueFd fd(::open(state_path.c_str(), O_RDWR));
  expect_error([&] { seal_drive_identities(fd.get(), state_path); },
               {state_path, "drive " + image, "changed while the snapshot was taken"});
}

TEST_F(SnapshotTrustTest, AnAdmittedDriveOpensInItsModeAndOnlyWhileUnchanged) {
  std::string image = make_image(path("disk.img"), 10000, 'q');
  std::vector<BlockSpec> given = supplied_drives({image + ",ro", image});
  ASSERT_EQ(given.size(), 2u);
  EXPECT_TRUE(given[0].read_only);
  EXPECT_FALSE(given[1].read_only);
  BlockSpec admitted = given[1];
  DriveIdentity id = identify_drive(image);
  admitted.size_bytes = id.size_bytes;
  admitted.mtime_ns = id.mtime_ns;
  UniqueFd fd = open_admitted_drive(admitted);
  EXPECT_EQ(::fcntl(fd.get(), F_GETFL) & O_ACCMODE, O_RDWR);

  fs::create_symlink(image, path("link.img"));
  BlockSpec linked = admitted;
  linked.path = path("link.img");
  expect_error([&] { open_admitted_drive(linked); }, {"is a symlink", kRegularRule});
  std::ofstream(image, std::ios::app) << "more";
  expect_error([&] { open_admitted_drive(admitted); }, {"changed after it was admitted"});
  expect_error([] { supplied_drives({"disk.img,rx"}); }, {"disk.img,rx"});
}

}  // namespace
}  // namespace wisp::snapshot
