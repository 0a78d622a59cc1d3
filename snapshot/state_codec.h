// SnapshotState <-> the Cap'n Proto payload of a state file (schema: snapshot/state.capnp).
// Only the state file frame (state_file.cc) calls these.
#pragma once

#include <span>
#include <string>

#include "snapshot/snapshot_state.h"

namespace wisp::snapshot {

Bytes encode_state_payload(const SnapshotState& state);

// Parses an untrusted payload with a traversal and nesting limit, bounding every list before
// decoding it. Throws wisp::Error "<file>: malformed state payload: ..." on anything Cap'n
// Proto refuses. Does not validate the values (validate_state does).
SnapshotState decode_state_payload(std::span<const uint8_t> payload, const std::string& file);

}  // namespace wisp::snapshot
