// Block storage behind a virtio-blk front-end, knowing nothing of virtio: a byte-addressed disk
// that can be read, written (unless read-only), flushed and identified. RawFileBackend is a raw
// image file (or block device), described by a BlockSpec (the user's `--drive PATH[,ro]`).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/unique_fd.h"
#include "vmm/virtio/block/block_state.h"

namespace wisp {

// Parses "PATH" or "PATH,ro" (also "PATH,rw"). Throws Error with a message naming the spec and
// what is wrong (empty path, unknown or repeated option). Paths containing ',' are not supported.
BlockSpec parse_drive_spec(const std::string& spec);

// A drive image opened by someone else (a standby VMM is given its drives as descriptors: its
// jail holds no path to them): RawFileBackend::open(spec) with spec.path == `path` takes `fd`
// instead of opening the path. Each is taken once. Throws Error for a path given twice.
void provide_drive_fd(const std::string& path, UniqueFd fd);

class BlockBackend {
 public:
  // Size of the identifier GET_ID returns (VIRTIO_BLK_ID_BYTES).
  static constexpr size_t kIdBytes = 20;

  virtual ~BlockBackend() = default;
  virtual uint64_t size_bytes() const = 0;
  virtual bool read_only() const = 0;
  // I/O returns 0 or an errno value. Callers check ranges against size_bytes() first; a short
  // transfer (the file shrank under us) is EIO.
  virtual int read_at(uint64_t offset, std::span<uint8_t> out) = 0;
  virtual int write_at(uint64_t offset, std::span<const uint8_t> in) = 0;  // EROFS if read-only
  virtual int flush() = 0;
  // A stable identifier for this disk, at most kIdBytes bytes.
  virtual std::string id() const = 0;
};

class RawFileBackend final : public BlockBackend {
 public:
  // Opens the image (read-only when spec.read_only; or takes the descriptor provide_drive_fd
  // gave for its path) and takes a lock on it: shared for read-only, exclusive otherwise, so
  // two VMs never write one image. Throws Error naming the file and the fix.
  static std::unique_ptr<RawFileBackend> open(const BlockSpec& spec);

  uint64_t size_bytes() const override { return size_; }
  bool read_only() const override { return read_only_; }
  int read_at(uint64_t offset, std::span<uint8_t> out) override;
  int write_at(uint64_t offset, std::span<const uint8_t> in) override;
  int flush() override;
  std::string id() const override { return id_; }

 private:
  RawFileBackend() = default;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool read_only_ = false;
  std::string id_;
};

}  // namespace wisp
