#include "vmm/virtio/block/block_state.h"

#include <string>

#include "base/error.h"
#include "vmm/virtio/block/block.h"
#include "vmm/virtio/queue.h"

namespace wisp {

BlockSpec parse_drive_spec(const std::string& spec) {
  auto fail = [&](const std::string& why) -> BlockSpec {
    throw Error("--drive \"" + spec + "\": " + why + " (expected PATH or PATH,ro)");
  };
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
    } else {
      return fail("unknown option \"" + opt + "\" (paths containing ',' are not supported)");
    }
    comma = next;
  }
  return out;
}

void BlockSpec::validate() const {
  if (path.empty()) throw Error("virtio-blk spec: path is empty");
  if (path.size() > kMaxPathBytes)
    throw Error("virtio-blk spec: path is " + std::to_string(path.size()) + " bytes (limit " +
                std::to_string(kMaxPathBytes) + ")");
  if (path.find('\0') != std::string::npos)
    throw Error("virtio-blk spec: path contains a NUL byte");
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
