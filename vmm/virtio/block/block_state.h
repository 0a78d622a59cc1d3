// virtio-blk in the persist shape: what a machine description says about a disk (BlockSpec),
// what a snapshot keeps of a running one (BlockState), and the kind's entry in the table of
// device kinds (BlockKind; vmm/virtio/kind_list.h says what an entry holds). Plain data, no
// fds: the image is opened by BlockKind::create. A Spec or State read from a snapshot is
// untrusted until its validate() accepted it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/token_bucket.h"

namespace wisp {

class VirtioDevice;

// One disk: the user's `--drive PATH[,ro][,bw=...]` (parse_drive_spec), plus, in a snapshot, the
// image's identity when the snapshot was taken. The rate limit rides in the snapshot, so a
// template's clones are limited as the template was.
struct BlockSpec {
  // Bounds an untrusted path (PATH_MAX).
  static constexpr size_t kMaxPathBytes = 4096;

  std::string path;
  bool read_only = false;
  // The image's size and modification time at the snapshot (0 in a boot description): a
  // clone's page cache holds the image's blocks, so restore refuses an image that changed.
  uint64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  // CRC-64 of the image's first and last 4 KiB at the snapshot (0 in a boot description): the
  // manager fills it in (snapshot/snapshot_trust.h), restore refuses an image that differs.
  uint64_t digest = 0;
  RateLimitConfig rate_limit;  // none by default
  bool operator==(const BlockSpec&) const = default;

  // Throws Error("virtio-blk spec: path ...") for an empty, over-long or NUL-holding path, or
  // Error("virtio-blk spec: rate limit ...") for buckets out of range.
  void validate() const;

  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("path", self.path);
    f("read_only", self.read_only);
    f("size_bytes", self.size_bytes);
    f("mtime_ns", self.mtime_ns);
    f("digest", self.digest);
    f("bw_size", self.rate_limit.bandwidth.size);
    f("bw_one_time_burst", self.rate_limit.bandwidth.one_time_burst);
    f("bw_refill_time_ms", self.rate_limit.bandwidth.refill_time_ms);
    f("ops_size", self.rate_limit.ops.size);
    f("ops_one_time_burst", self.rate_limit.ops.one_time_burst);
    f("ops_refill_time_ms", self.rate_limit.ops.refill_time_ms);
  }
};

// Parses "PATH[,ro|rw][,bw=RATE][,bw-burst=SIZE][,ops=RATE][,ops-burst=N][,refill-ms=MS]" (the
// rate-limit keys: base/rate_limit_option.h). Throws Error with a message naming the spec and
// what is wrong (empty path, unknown or repeated option, a bad rate). Paths containing ',' are
// not supported.
BlockSpec parse_drive_spec(const std::string& spec);

// The guest read these from the config space and feature bits at probe time: a restored disk
// must show the same, or the guest's idea of the disk is wrong.
struct BlockState {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  uint32_t seg_max = 0;  // config space seg_max (VIRTIO_BLK_F_SEG_MAX)
  bool operator==(const BlockState&) const = default;

  // Throws Error("virtio-blk state: ...") for a capacity whose byte size overflows 64 bits or
  // a seg_max no queue could carry (0 or above the largest queue size).
  void validate() const;

  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("capacity_sectors", self.capacity_sectors);
    f("read_only", self.read_only);
    f("seg_max", self.seg_max);
  }
};

struct BlockKind {
  static constexpr const char* kName = "virtio-blk";
  using Spec = BlockSpec;
  using State = BlockState;

  // Opens the image (RawFileBackend::open) and builds the device. Throws Error naming the drive.
  static std::shared_ptr<VirtioDevice> create(const BlockSpec& spec);
  // `spec` as a snapshot records it: the absolute path (a clone may run from another
  // directory) and the image's size and modification time now. Throws Error naming the drive.
  static BlockSpec record_identity(const BlockSpec& spec);
  // Throws Error("drive PATH ...") unless the image at spec.path still has the recorded size
  // and modification time.
  static void check_identity(const BlockSpec& spec);
};

}  // namespace wisp
