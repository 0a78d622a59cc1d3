#include "vmm/virtio/block/block_state.h"

#include <string>

#include "base/error.h"
#include "base/rate_limit_option.h"
#include "vmm/virtio/block/block.h"
#include "vmm/virtio/queue.h"

namespace wisp {

BlockSpec parse_drive_spec(const std::string& spec) {
  auto fail = [&](const std::string& why) -> BlockSpec {
    throw Error("--drive \"" + spec + "\": " + why +
                " (expected PATH[,ro][,bw=RATE][,bw-burst=SIZE][,ops=RATE][,ops-burst=N]"
                "[,refill-ms=MS])");
  };
  RateLimitKeys limit("--drive \"" + spec + "\"", "");
  uint64_t refill_ms = 0;
  size_t comma = spec.find(',');
  BlockSpec out;
  out.path = spec.substr(0, comma);
  if (out.path.empty()) return fail("the image path is empty");
  bool seen_mode = false;
  while (comma != std::string::npos) {
    size_t next = spec.find(',', comma + 1);
    std::string opt = spec.substr(comma + 1, next == std::string::npos ? next : next - comma - 1);
    if (opt == "ro" || opt == "rw") {
      if (seen_mode) return fail("\"ro\"/\"rw\" given twice");
      seen_mode = true;
      out.read_only = opt == "ro";
    } else if (opt.empty()) {
      return fail("empty option after ','");
    } else if (size_t eq = opt.find('='); eq != std::string::npos) {
      std::string key = opt.substr(0, eq), value = opt.substr(eq + 1);
      if (key == "refill-ms") {
        if (refill_ms != 0) return fail("refill-ms is given twice");
        refill_ms = parse_refill_ms("--drive \"" + spec + "\"", value);
      } else if (!limit.take(key, value)) {
        return fail("unknown option \"" + key + "\"");
      }
    } else {
      return fail("unknown option \"" + opt + "\" (paths containing ',' are not supported)");
    }
    comma = next;
  }
  if (refill_ms != 0 && !limit.given()) return fail("refill-ms without bw= or ops=");
  out.rate_limit = limit.config(refill_ms ? refill_ms : kDefaultRefillMs);
  return out;
}

void BlockSpec::validate() const {
  if (path.empty()) throw Error("virtio-blk spec: path is empty");
  if (path.size() > kMaxPathBytes)
    throw Error("virtio-blk spec: path is " + std::to_string(path.size()) + " bytes (limit " +
                std::to_string(kMaxPathBytes) + ")");
  if (path.find('\0') != std::string::npos)
    throw Error("virtio-blk spec: path contains a NUL byte");
  rate_limit.validate("virtio-blk spec: rate limit");
}

void BlockState::validate() const {
  if (capacity_sectors > UINT64_MAX / virtio_blk::kSectorSize)
    throw Error("virtio-blk state: capacity_sectors " + std::to_string(capacity_sectors) +
                " is more bytes than 64 bits hold");
  if (seg_max == 0 || seg_max > Queue::kMaxSize)
    throw Error("virtio-blk state: seg_max " + std::to_string(seg_max) + " is not in 1.." +
                std::to_string(Queue::kMaxSize));
}

}  // namespace wisp
