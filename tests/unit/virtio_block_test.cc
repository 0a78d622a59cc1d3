#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/block/block.h"
#include "vmm/virtio/block/block_backend.h"

namespace wisp {
namespace {

using namespace virtio_blk;  // NOLINT: request types and status values
using testing::Buf;
using testing::DeviceHarness;
using testing::readable;
using testing::writable;

constexpr uint64_t kSectors = 64;

// A temporary raw image of kSectors sectors; sector i is filled with byte i.
class TempImage {
 public:
  explicit TempImage(uint64_t bytes = kSectors * kSectorSize) {
    char tmpl[] = "/tmp/wisp-blk-test-XXXXXX";
    int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    std::vector<uint8_t> data(bytes);
    for (uint64_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i / kSectorSize);
    EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ::close(fd);
  }
  ~TempImage() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  std::vector<uint8_t> read(uint64_t off, size_t len) const {
    std::vector<uint8_t> out(len);
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, out.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    ::close(fd);
    return out;
  }

 private:
  std::string path_;
};

class BlockTest : public ::testing::Test {
 protected:
  void open(bool ro) {
    h_.reset();
    blk_.reset();  // drops the image lock before taking a new one
    blk_ = std::make_unique<VirtioBlock>(RawFileBackend::open({image_.path(), ro}));
    h_ = std::make_unique<DeviceHarness>(*blk_);
    ASSERT_TRUE(h_->activated());
  }
  void SetUp() override { open(false); }
  void TearDown() override { h_.reset(); }

  uint64_t header(uint32_t type, uint64_t sector) {
    uint64_t a = h_->q().alloc(16);
    struct {
      uint32_t type, ioprio;
      uint64_t sector;
    } hdr{type, 0, sector};
    h_->q().put(a, &hdr, 16);
    return a;
  }
  // Posts `bufs` as one request, kicks, and returns the status byte at `status_addr`.
  uint8_t run(const std::vector<Buf>& bufs, uint64_t status_addr) {
    h_->q().put(status_addr, "\xee", 1);
    h_->q().add_chain(bufs);
    h_->kick();
    return h_->q().bytes(status_addr, 1)[0];
  }
  uint8_t read_sectors(uint64_t sector, uint32_t n, uint64_t* data_out) {
    uint64_t data = h_->q().alloc(n * kSectorSize), st = h_->q().alloc(1);
    *data_out = data;
    return run({readable(header(kTypeIn, sector), 16),
                writable(data, n * static_cast<uint32_t>(kSectorSize)), writable(st, 1)},
               st);
  }
  uint8_t write_sectors(uint64_t sector, uint32_t n, uint8_t fill) {
    uint64_t data = h_->q().alloc(n * kSectorSize, fill), st = h_->q().alloc(1);
    return run({readable(header(kTypeOut, sector), 16),
                readable(data, n * static_cast<uint32_t>(kSectorSize)), writable(st, 1)},
               st);
  }
  std::pair<uint32_t, uint32_t> last_used() {
    return h_->q().used_elem(static_cast<uint16_t>(h_->q().used_idx() - 1));
  }

  TempImage image_;
  std::unique_ptr<VirtioBlock> blk_;
  std::unique_ptr<DeviceHarness> h_;
};

TEST_F(BlockTest, ConfigAndFeatures) {
  EXPECT_EQ(blk_->device_type(), 2u);
  EXPECT_EQ(blk_->capacity_sectors(), kSectors);
  uint64_t cap = 0;
  blk_->read_config(0, {reinterpret_cast<uint8_t*>(&cap), 8});
  EXPECT_EQ(cap, kSectors);
  uint32_t seg_max = 0;
  blk_->read_config(12, {reinterpret_cast<uint8_t*>(&seg_max), 4});
  EXPECT_EQ(seg_max, VirtioBlock::kSegMax);
  uint32_t past = 0xffffffff;
  blk_->read_config(200, {reinterpret_cast<uint8_t*>(&past), 4});
  EXPECT_EQ(past, 0u);
  EXPECT_EQ(blk_->device_features(), kFeatureFlush | kFeatureSegMax);
}

TEST_F(BlockTest, ReadReturnsTheImageBytes) {
  uint64_t data;
  EXPECT_EQ(read_sectors(3, 2, &data), kStatusOk);
  auto got = h_->q().bytes(data, 2 * kSectorSize);
  EXPECT_EQ(got, image_.read(3 * kSectorSize, 2 * kSectorSize));
  EXPECT_EQ(got[0], 3);
  EXPECT_EQ(got[kSectorSize], 4);
  EXPECT_EQ(last_used().second, 2 * kSectorSize + 1);
  EXPECT_EQ(h_->signals().used.size(), 1u);
}

TEST_F(BlockTest, WriteReachesTheFile) {
  EXPECT_EQ(write_sectors(10, 3, 0x5a), kStatusOk);
  EXPECT_EQ(last_used().second, 1u);
  auto file = image_.read(10 * kSectorSize, 3 * kSectorSize);
  EXPECT_TRUE(std::all_of(file.begin(), file.end(), [](uint8_t b) { return b == 0x5a; }));
  EXPECT_EQ(image_.read(13 * kSectorSize, 1)[0], 13);  // the neighbour is untouched
  uint64_t data;
  EXPECT_EQ(read_sectors(11, 1, &data), kStatusOk);
  EXPECT_EQ(h_->q().bytes(data, 1)[0], 0x5a);
}

TEST_F(BlockTest, FlushSucceeds) {
  uint64_t st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(header(kTypeFlush, 0), 16), writable(st, 1)}, st), kStatusOk);
}

TEST_F(BlockTest, GetIdReturnsTheBackendId) {
  uint64_t id = h_->q().alloc(20), st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(header(kTypeGetId, 0), 16), writable(id, 20), writable(st, 1)}, st),
            kStatusOk);
  auto bytes = h_->q().bytes(id, 20);
  std::string got(bytes.begin(), std::find(bytes.begin(), bytes.end(), 0));
  EXPECT_FALSE(got.empty());
  struct stat sb;
  ASSERT_EQ(stat(image_.path().c_str(), &sb), 0);
  char want[64];
  snprintf(want, sizeof(want), "%llx-%llx", static_cast<unsigned long long>(sb.st_dev),
           static_cast<unsigned long long>(sb.st_ino));
  EXPECT_EQ(got, std::string(want).substr(0, 20));
  EXPECT_EQ(last_used().second, 21u);
}

TEST_F(BlockTest, UnknownTypeIsUnsupported) {
  uint64_t st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(header(11 /* discard */, 0), 16), writable(st, 1)}, st),
            kStatusUnsupported);
}

TEST_F(BlockTest, ReadOnlyDiskRefusesWrites) {
  open(true);
  EXPECT_EQ(blk_->device_features() & kFeatureRo, kFeatureRo);
  EXPECT_EQ(write_sectors(0, 1, 0x77), kStatusIoErr);
  EXPECT_EQ(image_.read(0, 1)[0], 0);
  uint64_t data;
  EXPECT_EQ(read_sectors(5, 1, &data), kStatusOk);
  uint64_t st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(header(kTypeFlush, 0), 16), writable(st, 1)}, st), kStatusOk);
}

TEST_F(BlockTest, RequestsBeyondTheEndAreRefused) {
  uint64_t data;
  EXPECT_EQ(read_sectors(kSectors - 1, 1, &data), kStatusOk);  // the last sector is fine
  EXPECT_EQ(read_sectors(kSectors, 1, &data), kStatusIoErr);
  EXPECT_EQ(read_sectors(kSectors - 1, 2, &data), kStatusIoErr);
  EXPECT_EQ(read_sectors(~0ull, 1, &data), kStatusIoErr);  // sector * 512 would overflow
  EXPECT_EQ(read_sectors(~0ull / 512 + 1, 1, &data), kStatusIoErr);
  EXPECT_EQ(write_sectors(kSectors, 1, 1), kStatusIoErr);
  EXPECT_EQ(blk_->bad_requests(), 5u);
}

TEST_F(BlockTest, PartialSectorsAreRefused) {
  uint64_t data = h_->q().alloc(100), st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(header(kTypeIn, 0), 16), writable(data, 100), writable(st, 1)}, st),
            kStatusIoErr);
}

TEST_F(BlockTest, DataInTheWrongDirectionIsRefused) {
  // A read whose data buffer is device-readable.
  uint64_t data = h_->q().alloc(512), st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(header(kTypeIn, 0), 16), readable(data, 512), writable(st, 1)}, st),
            kStatusIoErr);
  // A write whose data buffer is device-writable.
  EXPECT_EQ(run({readable(header(kTypeOut, 0), 16), writable(data, 512), writable(st, 1)}, st),
            kStatusIoErr);
  EXPECT_EQ(image_.read(0, 1)[0], 0);
}

TEST_F(BlockTest, RequestWithoutStatusByteIsReturnedEmpty) {
  h_->q().add_chain({readable(header(kTypeFlush, 0), 16)});
  h_->kick();
  EXPECT_EQ(h_->q().used_idx(), 1);
  EXPECT_EQ(last_used().second, 0u);
  EXPECT_EQ(blk_->bad_requests(), 1u);
}

TEST_F(BlockTest, ShortHeaderIsAnIoError) {
  uint64_t hdr = h_->q().alloc(8), st = h_->q().alloc(1);
  EXPECT_EQ(run({readable(hdr, 8), writable(st, 1)}, st), kStatusIoErr);
}

TEST_F(BlockTest, AnyBufferLayoutWorks) {
  // Header split in two, data and status in one writable buffer.
  uint64_t hdr = header(kTypeIn, 7);
  uint64_t buf = h_->q().alloc(513);
  EXPECT_EQ(run({readable(hdr, 10), readable(hdr + 10, 6), writable(buf, 513)}, buf + 512),
            kStatusOk);
  EXPECT_EQ(h_->q().bytes(buf, 1)[0], 7);
  EXPECT_EQ(h_->q().bytes(buf + 511, 1)[0], 7);
}

TEST_F(BlockTest, MalformedChainIsReturnedEmpty) {
  h_->q().add_chain({readable(header(kTypeIn, 0), 16), writable(DeviceHarness::kMemBytes, 512)});
  h_->kick();
  EXPECT_EQ(h_->q().used_idx(), 1);
  EXPECT_EQ(last_used().second, 0u);
}

// A disk whose flushes take as long as the test says (at most 5 s): a stand-in for an
// fdatasync of a large write-back.
class SlowFlushBackend final : public BlockBackend {
 public:
  uint64_t size_bytes() const override { return kSectors * kSectorSize; }
  bool read_only() const override { return false; }
  int read_at(uint64_t, std::span<uint8_t> out) override {
    std::fill(out.begin(), out.end(), 0x5a);
    return 0;
  }
  int write_at(uint64_t, std::span<const uint8_t>) override { return 0; }
  int flush() override {
    std::unique_lock lock(mu_);
    flushing_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(5), [this] { return released_; });
    return 0;
  }
  std::string id() const override { return "slow"; }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool wait_flushing() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(5), [this] { return flushing_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool flushing_ = false, released_ = false;
};

class BlockWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = std::make_unique<SlowFlushBackend>();
    disk_ = b.get();
    blk_ = std::make_unique<VirtioBlock>(std::move(b));
    bool on_start_ran = false;
    blk_->start_threads([&] { on_start_ran = true; });
    EXPECT_TRUE(on_start_ran);
    h_ = std::make_unique<DeviceHarness>(*blk_);
    ASSERT_TRUE(h_->activated());
  }
  void TearDown() override {
    disk_->release();
    h_.reset();
  }
  // Posts a flush request; returns its status byte's address (and its head in `head`).
  uint64_t post_flush(uint16_t* head = nullptr) {
    uint64_t hdr = h_->q().alloc(16), st = h_->q().alloc(1, 0xee);
    struct {
      uint32_t type, ioprio;
      uint64_t sector;
    } req{kTypeFlush, 0, 0};
    h_->q().put(hdr, &req, 16);
    uint16_t h = h_->q().add_chain({readable(hdr, 16), writable(st, 1)});
    if (head) *head = h;
    return st;
  }
  // What the event loop does when the worker's completion fd fires (waits up to 5 s).
  void pump_completions() {
    std::vector<BackendFd> fds = blk_->backend_fds();
    ASSERT_EQ(fds.size(), 1u);
    pollfd p{fds[0].fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    fds[0].on_readable();
  }

  SlowFlushBackend* disk_ = nullptr;
  std::unique_ptr<VirtioBlock> blk_;
  std::unique_ptr<DeviceHarness> h_;
};

TEST_F(BlockWorkerTest, AFlushDoesNotHoldTheKick) {
  uint64_t st = post_flush();
  auto t0 = std::chrono::steady_clock::now();
  h_->kick();  // the event loop's part: check and submit
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  ASSERT_TRUE(disk_->wait_flushing());
  EXPECT_EQ(h_->q().used_idx(), 0);  // not back before the disk is done
  disk_->release();
  pump_completions();
  EXPECT_EQ(h_->q().used_idx(), 1);
  EXPECT_EQ(h_->q().bytes(st, 1)[0], kStatusOk);
  EXPECT_EQ(h_->q().used_elem(0).second, 1u);
  EXPECT_FALSE(h_->signals().used.empty());  // and the guest is told
}

TEST_F(BlockWorkerTest, ReadsCompleteThroughTheCompletionFd) {
  uint64_t hdr = h_->q().alloc(16), data = h_->q().alloc(512), st = h_->q().alloc(1, 0xee);
  struct {
    uint32_t type, ioprio;
    uint64_t sector;
  } req{kTypeIn, 0, 3};
  h_->q().put(hdr, &req, 16);
  h_->q().add_chain({readable(hdr, 16), writable(data, 512), writable(st, 1)});
  h_->kick();
  while (h_->q().used_idx() == 0) pump_completions();
  EXPECT_EQ(h_->q().bytes(st, 1)[0], kStatusOk);
  EXPECT_EQ(h_->q().bytes(data, 512), std::vector<uint8_t>(512, 0x5a));
  EXPECT_EQ(h_->q().used_elem(0).second, 513u);
}

TEST_F(BlockWorkerTest, AtMostARingOfRequestsIsInFlight) {
  // A guest that republishes one chain as fast as we pop it: the jobs queued behind a slow
  // flush stop at a ring's worth, and the rest waits on the ring until completions come.
  uint16_t head;
  post_flush(&head);
  for (int i = 1; i < VirtioBlock::kQueueSize; ++i) h_->q().publish(head);
  h_->kick();
  ASSERT_TRUE(disk_->wait_flushing());
  for (int i = 0; i < 10; ++i) h_->q().publish(head);
  h_->kick();
  EXPECT_EQ((*blk_->save_queues())[0].next_avail, VirtioBlock::kQueueSize);  // not popped
  disk_->release();
  while (h_->q().used_idx() != VirtioBlock::kQueueSize + 10) pump_completions();
  EXPECT_EQ((*blk_->save_queues())[0].next_avail, VirtioBlock::kQueueSize + 10);
}

TEST_F(BlockWorkerTest, QuiesceFinishesRequestsInFlight) {
  uint64_t st = post_flush();
  h_->kick();
  ASSERT_TRUE(disk_->wait_flushing());
  std::thread disk_done([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    disk_->release();
  });
  blk_->quiesce();  // before a snapshot: the chain is back, in the used ring
  disk_done.join();
  EXPECT_EQ(h_->q().used_idx(), 1);
  EXPECT_EQ(h_->q().bytes(st, 1)[0], kStatusOk);
  auto queues = blk_->save_queues();
  ASSERT_TRUE(queues.has_value());
  EXPECT_EQ((*queues)[0].next_used, 1);
}

TEST_F(BlockWorkerTest, ResetWaitsForRequestsInFlight) {
  post_flush();
  h_->kick();
  ASSERT_TRUE(disk_->wait_flushing());
  std::thread disk_done([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    disk_->release();
  });
  auto t0 = std::chrono::steady_clock::now();
  h_.reset();  // resets the device: returns only once the flush is over
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
  disk_done.join();
  blk_->backend_fds()[0].on_readable();  // a late call finds nothing to return, and is harmless
}

TEST(RawFileBackend, SizeIsRoundedDownToSectors) {
  TempImage img(3 * 512 + 100);
  auto b = RawFileBackend::open({img.path(), true});
  EXPECT_EQ(b->size_bytes(), 3 * 512u + 100);
  VirtioBlock blk(std::move(b));
  EXPECT_EQ(blk.capacity_sectors(), 3u);
}

TEST(RawFileBackend, OpenErrorsNameTheFile) {
  try {
    RawFileBackend::open({"/nonexistent/disk.img", false});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/disk.img"), std::string::npos);
  }
  EXPECT_THROW(RawFileBackend::open({"/tmp", true}), Error);
}

TEST(RawFileBackend, WritersAreExclusive) {
  TempImage img;
  auto a = RawFileBackend::open({img.path(), false});
  try {
    RawFileBackend::open({img.path(), false});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos);
  }
  EXPECT_THROW(RawFileBackend::open({img.path(), true}), Error);
  a.reset();
  auto r1 = RawFileBackend::open({img.path(), true});
  auto r2 = RawFileBackend::open({img.path(), true});  // readers share
  EXPECT_EQ(r1->write_at(0, std::vector<uint8_t>(1)), EROFS);
}

TEST(DriveSpec, Parses) {
  BlockSpec d = parse_drive_spec("/images/root.img");
  EXPECT_EQ(d.path, "/images/root.img");
  EXPECT_FALSE(d.read_only);
  d = parse_drive_spec("root.img,ro");
  EXPECT_EQ(d.path, "root.img");
  EXPECT_TRUE(d.read_only);
  EXPECT_FALSE(parse_drive_spec("root.img,rw").read_only);
}

TEST(DriveSpec, ErrorsSayWhatIsWrong) {
  auto message = [](const std::string& spec) {
    try {
      parse_drive_spec(spec);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("").find("path is empty"), std::string::npos);
  EXPECT_NE(message(",ro").find("path is empty"), std::string::npos);
  EXPECT_NE(message("a.img,rx").find("unknown option \"rx\""), std::string::npos);
  EXPECT_NE(message("a.img,ro,ro").find("twice"), std::string::npos);
  EXPECT_NE(message("a.img,").find("empty option"), std::string::npos);
  EXPECT_NE(message("a.img,rx").find("PATH[,ro]"), std::string::npos);
}

}  // namespace
}  // namespace wisp
