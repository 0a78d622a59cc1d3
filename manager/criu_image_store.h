// A template's CRIU image of its warm worker (issue 17): the archive the agent's
// checkpointWorker sends (api/criu_image.h), kept in the template's snapshot directory beside
// the VM snapshot, so a host that cannot use the VM snapshot can still start the worker warm:
//
//   snapshot/criu-image.wci    the archive
//   snapshot/criu-image.sum    "wisp-criu-image 1\nbytes N\ncrc64 HEX\n"
//
// Both are checked like a snapshot's own files: a size or checksum that does not match, or an
// archive that does not parse, is refused with an Error naming the file.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "api/agent_client.h"
#include "api/criu_image.h"

namespace wisp::manager {

inline constexpr char kCriuImageFile[] = "criu-image.wci";
inline constexpr char kCriuImageSumFile[] = "criu-image.sum";
// The largest image a template keeps (the ML worker's is a few hundred MiB).
inline constexpr uint64_t kMaxStoredCriuImageBytes = 2ull << 30;

struct StoredCriuImage {
  uint64_t bytes = 0;
  uint64_t crc64 = 0;
  uint32_t files = 0;
  double dump_ms = 0;   // criu dump in the guest
  double total_ms = 0;  // checkpointWorker as the host saw it (dump and transfer)
};

// Checkpoints warm worker `name` through `agent` into `dir`/criu-image.wci and writes its
// .sum (both fsynced). Throws Error (the agent's reason, or a size over `max_bytes`); a partial
// file is removed.
StoredCriuImage store_criu_image(client::AgentClient& agent, const std::string& name,
                                 const std::string& dir,
                                 uint64_t max_bytes = kMaxStoredCriuImageBytes);

// Whether `dir` holds a CRIU image (its .sum file exists).
bool has_criu_image(const std::string& dir);

// `dir`'s .sum file alone (bytes and crc64; files 0), its size under the cap. Throws Error
// naming the file.
StoredCriuImage read_criu_image_sum(const std::string& dir);

// Checks `dir`'s image against its .sum (size, CRC-64) and parses the archive. Throws Error
// naming the file and the fault.
StoredCriuImage verify_criu_image(const std::string& dir);

// As verify_criu_image, then calls `use` with the archive's bytes (mapped read-only) and its
// files, checked, while it is mapped: what manager/criu_drive.h unpacks.
StoredCriuImage read_verified_criu_image(
    const std::string& dir,
    const std::function<void(std::span<const uint8_t>, const std::vector<api::CriuImageEntry>&)>&
        use);

}  // namespace wisp::manager
