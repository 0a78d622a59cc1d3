#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"
#include "snapshot/crc64.h"
#include "snapshot/state_codec.h"
#include "snapshot/state_file.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/snapshot_test_state.h"
#include "vmm/boot/mptable.h"

namespace wisp::snapshot {
namespace {

using testing::pattern;
using testing::sample_state;

using wisp::testutil::expect_error;

void store_le(Bytes& b, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Re-seals a frame after the test edited it, so the checksum is not what rejects it.
void reseal(Bytes& b) {
  size_t body = b.size() - kStateTrailerBytes;
  store_le(b, body, crc64(std::span(b.data(), body)), 8);
}

TEST(SnapshotCrc64, MatchesTheCheckValue) {
  std::string check = "123456789";
  EXPECT_EQ(crc64({reinterpret_cast<const uint8_t*>(check.data()), check.size()}),
            0x995dc9bbdf1939faull);
  EXPECT_EQ(crc64({}), 0u);
  auto* p = reinterpret_cast<const uint8_t*>(check.data());
  EXPECT_EQ(crc64({p + 4, 5}, crc64({p, 4})), 0x995dc9bbdf1939faull);
}

TEST(SnapshotStateFile, RoundTripsInMemory) {
  SnapshotState s = sample_state();
  Bytes file = encode_state_file(s);
  StateFileInfo info;
  EXPECT_EQ(decode_state_file(file, "mem", &info), s);
  EXPECT_EQ(info.major, kFormatMajor);
  EXPECT_EQ(info.minor, kFormatMinor);
  EXPECT_EQ(info.file_bytes, file.size());
  EXPECT_EQ(std::string(file.begin(), file.begin() + 8), "WISPSNAP");
}

TEST(SnapshotStateFile, RoundTripsTheMachineAndDiffFields) {
  SnapshotState s = sample_state();
  s.machine.virtio.push_back(
      {BlockSpec{"/images/rootfs.ext4", false, 1ull << 40, -1700000000123456789},
       testing::running_transport(1), BlockState{1ull << 31, false, 128}});
  std::get<VsockSpec>(s.machine.virtio[2].spec).guest_cid = 0xfffffffe;
  s.machine.cpuid[0].flags = 7;
  s.machine.cpu_model = CpuModel::kX86_64_v2;
  s.id = "id-" + std::string(100, 'x');
  s.diff.parent_dir = "/snapshots/parent";
  s.diff.parent_id = "parent-id";
  s.diff.pages = pattern((memory_file_size(s.memory) / kPageSize + 7) / 8, 42);
  SnapshotState back = decode_state_file(encode_state_file(s), "diff.state");
  EXPECT_EQ(back, s);
  EXPECT_TRUE(back.is_diff());
  ASSERT_EQ(back.machine.virtio.size(), 5u);
  const auto& drive = std::get<BlockSpec>(back.machine.virtio[4].spec);
  EXPECT_EQ(drive.path, "/images/rootfs.ext4");
  EXPECT_FALSE(drive.read_only);
  EXPECT_EQ(drive.size_bytes, 1ull << 40);
  EXPECT_EQ(drive.mtime_ns, -1700000000123456789);
  EXPECT_TRUE(std::get<BlockSpec>(back.machine.virtio[0].spec).read_only);
  EXPECT_EQ(std::get<VsockSpec>(back.machine.virtio[2].spec).guest_cid, 0xfffffffeu);
  EXPECT_EQ(back.machine.cpuid[0].flags, 7u);  // nothing is lost on the way
  EXPECT_EQ(back.machine.cpu_model, CpuModel::kX86_64_v2);
  EXPECT_EQ(back.diff.pages, s.diff.pages);
  // A full snapshot comes back without diff fields.
  SnapshotState full = sample_state();
  SnapshotState full_back = decode_state_file(encode_state_file(full), "full.state");
  EXPECT_EQ(full_back.diff, DiffInfo{});
  EXPECT_EQ(full_back.machine.cpu_model, CpuModel::kHost);
}

// Every device kind, with the transport in front of it, survives the codec unchanged.
TEST(SnapshotStateFile, RoundTripsEachDeviceKind) {
  SnapshotState s = sample_state(1);
  ASSERT_EQ(s.machine.virtio.size(), std::variant_size_v<DeviceSpec>);
  for (size_t kind = 0; kind < s.machine.virtio.size(); ++kind) {
    EXPECT_EQ(s.machine.virtio[kind].spec.index(), kind);
    SnapshotState one = s;
    one.machine.virtio = {s.machine.virtio[kind]};
    EXPECT_EQ(decode_state_file(encode_state_file(one), "one.state"), one)
        << kind_name(one.machine.virtio[0].spec);
  }
  // The socket path belongs to one VMM process: the snapshot does not keep it.
  std::get<VsockSpec>(s.machine.virtio[2].spec).uds_path = "/run/vm1.sock";
  SnapshotState back = decode_state_file(encode_state_file(s), "vsock.state");
  EXPECT_EQ(std::get<VsockSpec>(back.machine.virtio[2].spec), (VsockSpec{"", 3}));
}

TEST(SnapshotStateFile, RoundTripsThroughAFile) {
  std::string path = ::testing::TempDir() + "wisp-state-" + std::to_string(getpid());
  std::remove(path.c_str());
  SnapshotState s = sample_state(3);
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    write_state_file(fd.get(), path, s);
  }
  EXPECT_EQ(read_state_file(path), s);
  {
    UniqueFd read_only(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(read_only);
    expect_error([&] { write_state_file(read_only.get(), path, s); },
                 {"write state file " + path, "Bad file descriptor"});
  }
  std::remove(path.c_str());
  expect_error([&] { read_state_file(path); }, {path, "No such file"});
}

// The header alone (a fit check before a VMM is spawned): read in one small read, with the
// decoder's messages, and the rest of the file not looked at.
TEST(SnapshotStateFile, ReadsTheHeaderAloneWithTheDecodersChecks) {
  std::string path = ::testing::TempDir() + "wisp-state-header-" + std::to_string(getpid());
  auto write = [&](const Bytes& b) {
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  Bytes file = encode_state_file(sample_state());
  write(file);
  StateFileInfo info = read_state_header(path);
  EXPECT_EQ(info.major, kFormatMajor);
  EXPECT_EQ(info.minor, kFormatMinor);
  EXPECT_EQ(info.payload_bytes, file.size() - kStateHeaderBytes - kStateTrailerBytes);
  EXPECT_EQ(info.file_bytes, file.size());
  // A damaged payload is not the header's business (the VMM's full read refuses it).
  Bytes damaged = file;
  damaged[kStateHeaderBytes + 40] ^= 0x10;
  write(damaged);
  EXPECT_EQ(read_state_header(path).major, kFormatMajor);
  Bytes older = file;
  store_le(older, 8, 1, 2);
  store_le(older, 10, 0, 2);
  write(older);
  expect_error([&] { read_state_header(path); },
               {path, "snapshot format version 1.0 was written by an older wisp"});
  Bytes bad_magic = file;
  bad_magic[0] = 'X';
  write(bad_magic);
  expect_error([&] { read_state_header(path); }, {path, "bad magic"});
  write(Bytes(file.begin(), file.begin() + 10));
  expect_error([&] { read_state_header(path); }, {path, "truncated", "10 bytes"});
  std::remove(path.c_str());
  expect_error([&] { read_state_header(path); }, {"open state file " + path, "No such file"});
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);  // refused, not waited on
  expect_error([&] { read_state_header(path); }, {path, "not a regular file"});
  std::remove(path.c_str());
}

TEST(SnapshotStateFile, RejectsTruncationAtEveryLength) {
  SnapshotState s = sample_state(1);
  s.machine.vcpus[0].xsave.resize(64);  // keep the file small: every prefix is tried
  Bytes file = encode_state_file(s);
  for (size_t n = 0; n < file.size(); ++n) {
    Bytes cut(file.begin(), file.begin() + n);
    expect_error([&] { decode_state_file(cut, "cut.state"); }, {"cut.state", "truncated"});
  }
}

TEST(SnapshotStateFile, RejectsEveryFlippedBit) {
  SnapshotState s = sample_state(1);
  s.machine.vcpus[0].xsave.resize(64);  // the frame refuses each flip before validation
  Bytes file = encode_state_file(s);
  for (size_t bit = 0; bit < file.size() * 8; ++bit) {
    Bytes bad = file;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    expect_error([&] { decode_state_file(bad, "flip.state"); }, {"flip.state"});
  }
  Bytes bad = file;
  bad[kStateHeaderBytes + 40] ^= 0x10;
  expect_error([&] { decode_state_file(bad, "flip.state"); }, {"checksum mismatch", "corrupt"});
}

TEST(SnapshotStateFile, RejectsWrongMagic) {
  Bytes file = encode_state_file(sample_state());
  file[0] = 'X';
  expect_error([&] { decode_state_file(file, "m.state"); }, {"m.state", "bad magic"});
}

TEST(SnapshotStateFile, RejectsANewerMajorVersionNamingBoth) {
  Bytes file = encode_state_file(sample_state());
  store_le(file, 8, 3, 2);
  store_le(file, 10, 1, 2);
  reseal(file);
  expect_error([&] { decode_state_file(file, "v3.state"); },
               {"v3.state", "unsupported snapshot format version 3.1", "reads 2.x", "newer wisp"});
}

// Format 1 (wisp before the one state model) laid the machine out differently; such a snapshot
// is refused before its payload is read, with what to do about it.
TEST(SnapshotStateFile, RefusesAnOlderFormatSayingToRecreateIt) {
  Bytes file = encode_state_file(sample_state());
  store_le(file, 8, 1, 2);
  store_le(file, 10, 0, 2);
  reseal(file);
  expect_error([&] { decode_state_file(file, "v1.state"); },
               {"v1.state", "snapshot format version 1.0 was written by an older wisp", "reads 2.x",
                "re-create the snapshot"});
}

TEST(SnapshotStateFile, AcceptsANewerMinorVersion) {
  SnapshotState s = sample_state();
  Bytes file = encode_state_file(s);
  store_le(file, 10, 7, 2);
  reseal(file);
  StateFileInfo info;
  EXPECT_EQ(decode_state_file(file, "v2.7", &info), s);
  EXPECT_EQ(info.minor, 7);
}

TEST(SnapshotStateFile, RejectsAnOversizeLengthBeforeReading) {
  Bytes file = encode_state_file(sample_state());
  store_le(file, 16, kMaxPayloadBytes + 8, 8);
  expect_error([&] { decode_state_file(file, "big.state"); }, {"big.state", "exceeds the limit"});
  store_le(file, 16, ~0ull, 8);
  expect_error([&] { decode_state_file(file, "big.state"); }, {"exceeds the limit"});
}

TEST(SnapshotStateFile, RejectsAnOversizeFileBeforeAllocating) {
  std::string path = ::testing::TempDir() + "wisp-big-" + std::to_string(getpid());
  std::remove(path.c_str());
  { std::ofstream(path) << "WISPSNAP"; }
  ASSERT_EQ(::truncate(path.c_str(), 1ll << 40), 0);  // sparse: costs nothing
  expect_error([&] { read_state_file(path); }, {path, "over the limit"});
  std::remove(path.c_str());
}

TEST(SnapshotStateFile, RejectsTrailingData) {
  Bytes file = encode_state_file(sample_state());
  file.push_back(0);
  expect_error([&] { decode_state_file(file, "t.state"); }, {"t.state", "trailing data"});
}

TEST(SnapshotStateFile, RejectsAMalformedPayloadWithAGoodChecksum) {
  Bytes file = encode_state_file(sample_state());
  // Point the root pointer far outside the message.
  store_le(file, kStateHeaderBytes + 8, (1ull << 32) | (0x1000000ull << 2), 8);
  reseal(file);
  expect_error([&] { decode_state_file(file, "bad.state"); },
               {"bad.state", "malformed state payload"});
  Bytes odd(kStateHeaderBytes + 5 + kStateTrailerBytes);
  std::memcpy(odd.data(), kStateMagic, 8);
  store_le(odd, 8, kFormatMajor, 2);
  store_le(odd, 16, 5, 8);
  reseal(odd);
  expect_error([&] { decode_state_file(odd, "odd.state"); }, {"not a multiple of 8"});
}

TEST(SnapshotStateFile, RefusesHugeListsBeforeDecodingThem) {
  SnapshotState s = sample_state(1);
  s.machine.vcpus.resize(kMpTableMaxCpus + 1);  // invalid: encode_state_file does not validate
  Bytes file = encode_state_file(s);
  expect_error([&] { decode_state_file(file, "many.state"); },
               {"many.state", std::to_string(kMpTableMaxCpus + 1) + " vCPUs (limit"});
}

// The encoder writes text as C strings: a NUL inside one would not survive a save, so the
// decoder refuses it (found by tests/fuzz/snapshot_state_fuzz.cc).
TEST(SnapshotStateFile, RefusesANulInsideText) {
  SnapshotState s = sample_state(1);
  std::get<BlockSpec>(s.machine.virtio[0].spec).path = "/nulXname";
  Bytes file = encode_state_file(s);
  std::string text(file.begin(), file.end());
  size_t at = text.find("nulXname");
  ASSERT_NE(at, std::string::npos);
  file[at + 3] = 0;
  reseal(file);
  expect_error([&] { decode_state_file(file, "nul.state"); },
               {"nul.state", "malformed state payload", "NUL byte"});
}

TEST(SnapshotStateFile, ValidatesTheDecodedState) {
  SnapshotState s = sample_state();
  s.machine.vcpus[1].lapic.resize(10);
  Bytes file = encode_state_file(s);
  expect_error([&] { decode_state_file(file, "v.state"); }, {"v.state", "vCPU 1", "lapic"});
}

}  // namespace
}  // namespace wisp::snapshot
