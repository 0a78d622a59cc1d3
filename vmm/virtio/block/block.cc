#include "vmm/virtio/block/block.h"

#include <cinttypes>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace wisp {

using namespace virtio_blk;  // NOLINT: request types and status values

namespace {

struct RequestHeader {  // struct virtio_blk_outhdr, little-endian
  uint32_t type;
  uint32_t ioprio;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == kHeaderBytes);

constexpr uint64_t kLoggedIoErrors = 10;

}  // namespace

std::shared_ptr<VirtioDevice> BlockKind::create(const BlockSpec& spec) {
  return std::make_shared<VirtioBlock>(RawFileBackend::open(spec));
}

VirtioBlock::VirtioBlock(std::unique_ptr<BlockBackend> backend)
    : backend_(std::move(backend)), capacity_(backend_->size_bytes() / kSectorSize) {
  // Config layout (spec 5.2.4): capacity at 0, seg_max at 12; the rest stays zero.
  std::memcpy(config_.data() + 0, &capacity_, sizeof(capacity_));
  uint32_t seg_max = kSegMax;
  std::memcpy(config_.data() + 12, &seg_max, sizeof(seg_max));
}

uint64_t VirtioBlock::device_features() const {
  return kFeatureSegMax | kFeatureFlush | (backend_->read_only() ? kFeatureRo : 0);
}

VirtioDeviceState VirtioBlock::save_state() const {
  return BlockState{capacity_, backend_->read_only(), kSegMax};
}

void VirtioBlock::restore_state(const VirtioDeviceState& s) {
  // Nothing to adopt: the disk is the configuration. Only check that the guest, which read
  // capacity, seg_max and the RO feature at probe time, still sees the same disk.
  const auto& saved = expect_device_state<BlockState>(s, name());
  if (saved.capacity_sectors != capacity_)
    throw Error("virtio-blk: the snapshot's disk had " + std::to_string(saved.capacity_sectors) +
                " sectors, this image has " + std::to_string(capacity_) +
                " (capacity_sectors differs: not the same disk image)");
  if (saved.read_only != backend_->read_only())
    throw Error(std::string("virtio-blk: the snapshot's disk was ") +
                (saved.read_only ? "read-only" : "writable") + ", this one is " +
                (backend_->read_only() ? "read-only" : "writable") + " (read_only differs)");
  if (saved.seg_max != kSegMax)
    throw Error("virtio-blk: the snapshot's seg_max is " + std::to_string(saved.seg_max) +
                ", this VMM announces " + std::to_string(kSegMax));
}

void VirtioBlock::read_config(uint64_t offset, std::span<uint8_t> data) {
  read_config_bytes(config_, offset, data);  // immutable: no lock needed
}

void VirtioBlock::process_queue(uint16_t index) {
  drain_queue(index, [&](const DescriptorChain& chain) -> uint32_t {
    if (chain.writable_bytes() == 0) {
      count_bad_request("queue %u: request at head %u has no status byte", index, chain.head());
      return 0;
    }
    Outcome out = execute(index, chain);
    // The status byte is the last writable byte, and it is written last: once the driver
    // sees it (with the used entry), the data is in place.
    chain.write(memory(), chain.writable_bytes() - 1, {&out.status, 1});
    return out.data_written + 1;
  });
}

VirtioBlock::Outcome VirtioBlock::execute(uint16_t index, const DescriptorChain& chain) {
  RequestHeader h;
  if (chain.read(memory(), 0, {reinterpret_cast<uint8_t*>(&h), sizeof(h)}) != sizeof(h)) {
    count_bad_request("queue %u: request at head %u has a short header", index, chain.head());
    return {kStatusIoErr, 0};
  }
  switch (h.type) {
    case kTypeIn:
    case kTypeOut:
      return transfer(index, chain, h.type, h.sector);
    case kTypeFlush: {
      int err = backend_->flush();
      return err ? io_error("flush", 0, err) : Outcome{kStatusOk, 0};
    }
    case kTypeGetId:
      return get_id(chain);
    default:
      return {kStatusUnsupported, 0};  // discard, write-zeroes...: not offered
  }
}

VirtioBlock::Outcome VirtioBlock::transfer(uint16_t index, const DescriptorChain& chain,
                                           uint32_t type, uint64_t sector) {
  bool is_read = type == kTypeIn;
  uint64_t status_at = chain.writable_bytes() - 1;
  // A read has nothing to read but the header, a write nothing to write but the status; data
  // buffers in the other direction are a malformed request.
  if (is_read ? chain.readable_bytes() != kHeaderBytes : status_at != 0) {
    count_bad_request("queue %u: %s at head %u has data buffers in the wrong direction", index,
                      is_read ? "read" : "write", chain.head());
    return {kStatusIoErr, 0};
  }
  uint64_t len = is_read ? status_at : chain.readable_bytes() - kHeaderBytes;
  if (len % kSectorSize != 0 || len >= UINT32_MAX) {
    count_bad_request("queue %u: transfer of %" PRIu64 " bytes is not whole sectors", index, len);
    return {kStatusIoErr, 0};
  }
  // Overflow-safe: sector alone is checked first, so capacity_ - sector cannot wrap, and
  // sector * 512 <= capacity_ * 512 <= the image size.
  uint64_t sectors = len / kSectorSize;
  if (sector > capacity_ || sectors > capacity_ - sector) {
    count_bad_request("queue %u: sectors [%" PRIu64 ", +%" PRIu64
                      ") are beyond the disk's %" PRIu64,
                      index, sector, sectors, capacity_);
    return {kStatusIoErr, 0};
  }
  if (!is_read && backend_->read_only()) {
    count_bad_request("queue %u: write to a read-only disk", index);
    return {kStatusIoErr, 0};
  }
  uint64_t offset = sector * kSectorSize;
  if (is_read) {
    for (std::span<uint8_t> v : chain.writable_views(memory(), 0, len)) {
      if (int err = backend_->read_at(offset, v)) return io_error("read", sector, err);
      offset += v.size();
    }
    return {kStatusOk, static_cast<uint32_t>(len)};
  }
  for (std::span<const uint8_t> v : chain.readable_views(memory(), kHeaderBytes, len)) {
    if (int err = backend_->write_at(offset, v)) return io_error("write", sector, err);
    offset += v.size();
  }
  return {kStatusOk, 0};
}

VirtioBlock::Outcome VirtioBlock::get_id(const DescriptorChain& chain) {
  uint8_t id[BlockBackend::kIdBytes] = {};  // NUL-padded; no terminator when 20 bytes long
  std::string s = backend_->id();
  std::memcpy(id, s.data(), std::min(s.size(), sizeof(id)));
  size_t n = std::min<uint64_t>(sizeof(id), chain.writable_bytes() - 1);
  return {kStatusOk, static_cast<uint32_t>(chain.write(memory(), 0, {id, n}))};
}

VirtioBlock::Outcome VirtioBlock::io_error(const char* what, uint64_t sector, int err) {
  uint64_t n = io_errors_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= kLoggedIoErrors)
    LOG_ERROR("virtio-blk: %s at sector %" PRIu64 " failed: %s%s", what, sector, std::strerror(err),
              n == kLoggedIoErrors ? " (further errors are not logged)" : "");
  return {kStatusIoErr, 0};
}

}  // namespace wisp
