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
  return std::make_shared<VirtioBlock>(RawFileBackend::open(spec), spec.rate_limit);
}

VirtioBlock::VirtioBlock(std::unique_ptr<BlockBackend> backend, const RateLimitConfig& limit,
                         QueueThrottle::Clock clock)
    : backend_(std::move(backend)),
      limit_(limit, std::move(clock)),
      capacity_(backend_->size_bytes() / kSectorSize) {
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

void VirtioBlock::start_threads(const std::function<void()>& on_start) { worker_.start(on_start); }

std::vector<BackendFd> VirtioBlock::backend_fds() {
  std::vector<BackendFd> fds = {{worker_.completion_fd(), [this] { on_completions(); }}};
  if (limit_.limits()) fds.push_back({limit_.timer_fd(), [this] { on_rate_timer(); }});
  return fds;
}

bool VirtioBlock::rate_limited() {
  auto lock = lock_state();
  return limit_.blocked();
}

bool VirtioBlock::on_activate() {
  // A restored ring may hold requests a limited device had left there, with notifications
  // off: look at it once, as if kicked (a lock-free eventfd write).
  if (limit_.limits()) signals().requeue(0);
  return true;
}

void VirtioBlock::on_rate_timer() {
  auto lock = lock_state();
  if (limit_.on_timer() && is_active_locked()) process_queue(0);
}

uint64_t VirtioBlock::request_bytes(const DescriptorChain& chain) {
  RequestHeader h;
  if (chain.read(memory(), 0, {reinterpret_cast<uint8_t*>(&h), sizeof(h)}) != sizeof(h)) return 0;
  if (h.type == kTypeIn) return chain.writable_bytes() > 0 ? chain.writable_bytes() - 1 : 0;
  if (h.type == kTypeOut)
    return chain.readable_bytes() > kHeaderBytes ? chain.readable_bytes() - kHeaderBytes : 0;
  return 0;
}

void VirtioBlock::process_queue(uint16_t index) {
  // drain_queue's loop, but a chain goes back when its I/O is done, not when it is popped;
  // and at most a ring's worth is in flight, so a guest cannot queue work without bound.
  Queue& q = queue(index);
  if (!q.ready()) return;
  if (limit_.blocked()) return;  // the rate limiter's timer comes back (on_rate_timer)
  uint32_t budget = kick_budget(q);
  throttled_ = false;
  do {
    q.disable_notification(memory());
    while (true) {
      if (in_flight_ >= q.size()) complete_done();
      if (in_flight_ >= q.size()) {
        throttled_ = true;  // on_completions() resumes us; notifications stay off till then
        notify_if_needed(index);
        return;
      }
      if (budget == 0) {
        signals().requeue(index);
        complete_done();
        return;
      }
      auto chain = q.pop(memory());
      if (!chain) break;
      if (chain->ok() && !limit_.admit(request_bytes(*chain))) {
        // Over the rate limit: the request stays in the ring, notifications stay off, and
        // the limiter's timer brings us back when it fits.
        q.undo_pop();
        complete_done();
        return;
      }
      --budget;
      if (!chain->ok()) {
        discard_chain(index, *chain);
        continue;
      }
      start_request(*chain);
    }
  } while (q.enable_notification(memory()));
  complete_done();
}

void VirtioBlock::start_request(const DescriptorChain& chain) {
  Queue& q = queue(0);
  if (chain.writable_bytes() == 0) {
    count_bad_request("request at head %u has no status byte", chain.head());
    q.add_used(memory(), chain.head(), 0);
    return;
  }
  RequestHeader h;
  std::optional<Outcome> answer;
  if (chain.read(memory(), 0, {reinterpret_cast<uint8_t*>(&h), sizeof(h)}) != sizeof(h)) {
    count_bad_request("request at head %u has a short header", chain.head());
    answer = Outcome{kStatusIoErr, 0};
  } else if (h.type == kTypeIn || h.type == kTypeOut) {
    answer = check_transfer(chain, h.type, h.sector);
  } else if (h.type == kTypeGetId) {
    answer = get_id(chain);
  } else if (h.type != kTypeFlush) {
    answer = Outcome{kStatusUnsupported, 0};  // discard, write-zeroes...: not offered
  }
  if (answer) {
    q.add_used(memory(), chain.head(), finish(memory(), chain, *answer));
    return;
  }
  ++in_flight_;
  const GuestMemory* mem = &memory();  // valid until reset, which waits for the worker
  worker_.submit(chain.head(), [this, mem, chain, type = h.type, sector = h.sector] {
    return run_io(*mem, chain, type, sector);
  });
}

uint32_t VirtioBlock::run_io(const GuestMemory& mem, const DescriptorChain& chain, uint32_t type,
                             uint64_t sector) {
  Outcome out{kStatusOk, 0};
  if (type == kTypeFlush) {
    if (int err = backend_->flush()) out = io_error("flush", 0, err);
  } else {
    out = transfer(mem, chain, type, sector);
  }
  return finish(mem, chain, out);
}

uint32_t VirtioBlock::finish(const GuestMemory& mem, const DescriptorChain& chain, Outcome out) {
  // The status byte is the last writable byte, and it is written last: once the driver sees
  // it (with the used entry), the data is in place.
  chain.write(mem, chain.writable_bytes() - 1, {&out.status, 1});
  return out.data_written + 1;
}

void VirtioBlock::complete_done() {
  Queue& q = queue(0);
  for (const BlockWorker::Done& d : worker_.take_done()) {
    q.add_used(memory(), d.head, d.len);
    --in_flight_;
  }
  notify_if_needed(0);  // also for chains answered at once (start_request)
}

void VirtioBlock::on_completions() {
  auto lock = lock_state();
  if (!is_active_locked()) {
    worker_.take_done();  // reset already waited for them; nothing goes back
    return;
  }
  complete_done();
  if (throttled_) process_queue(0);
}

void VirtioBlock::quiesce() {
  auto lock = lock_state();
  worker_.wait_idle();
  if (is_active_locked()) complete_done();
}

void VirtioBlock::on_reset() {
  // The driver is gone: no job may touch its memory after reset() returns. (A vCPU thread:
  // futex only, see BlockWorker::discard_done.)
  worker_.wait_idle();
  worker_.discard_done();
  in_flight_ = 0;
  throttled_ = false;
  limit_.forget();
}

std::optional<VirtioBlock::Outcome> VirtioBlock::check_transfer(const DescriptorChain& chain,
                                                                uint32_t type, uint64_t sector) {
  bool is_read = type == kTypeIn;
  uint64_t status_at = chain.writable_bytes() - 1;
  // A read has nothing to read but the header, a write nothing to write but the status; data
  // buffers in the other direction are a malformed request.
  if (is_read ? chain.readable_bytes() != kHeaderBytes : status_at != 0) {
    count_bad_request("%s at head %u has data buffers in the wrong direction",
                      is_read ? "read" : "write", chain.head());
    return Outcome{kStatusIoErr, 0};
  }
  uint64_t len = is_read ? status_at : chain.readable_bytes() - kHeaderBytes;
  if (len % kSectorSize != 0 || len >= UINT32_MAX) {
    count_bad_request("transfer of %" PRIu64 " bytes is not whole sectors", len);
    return Outcome{kStatusIoErr, 0};
  }
  // Overflow-safe: sector alone is checked first, so capacity_ - sector cannot wrap, and
  // sector * 512 <= capacity_ * 512 <= the image size.
  uint64_t sectors = len / kSectorSize;
  if (sector > capacity_ || sectors > capacity_ - sector) {
    count_bad_request("sectors [%" PRIu64 ", +%" PRIu64 ") are beyond the disk's %" PRIu64, sector,
                      sectors, capacity_);
    return Outcome{kStatusIoErr, 0};
  }
  if (!is_read && backend_->read_only()) {
    count_bad_request("write to a read-only disk");
    return Outcome{kStatusIoErr, 0};
  }
  return std::nullopt;
}

VirtioBlock::Outcome VirtioBlock::transfer(const GuestMemory& mem, const DescriptorChain& chain,
                                           uint32_t type, uint64_t sector) {
  uint64_t offset = sector * kSectorSize;
  if (type == kTypeIn) {
    uint64_t len = chain.writable_bytes() - 1;
    for (std::span<uint8_t> v : chain.writable_views(mem, 0, len)) {
      if (int err = backend_->read_at(offset, v)) return io_error("read", sector, err);
      offset += v.size();
    }
    return {kStatusOk, static_cast<uint32_t>(len)};
  }
  uint64_t len = chain.readable_bytes() - kHeaderBytes;
  for (std::span<const uint8_t> v : chain.readable_views(mem, kHeaderBytes, len)) {
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
