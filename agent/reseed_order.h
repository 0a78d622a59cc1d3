// The order a host relies on when it pipelines agent.resumed with its first call: see
// reseed_ordered.
#pragma once

#include <capnp/capability.h>

namespace wisp::agent {

// Wraps one connection's Agent capability. A host sends agent.resumed (the reseed: fresh
// entropy and clock) together with its first invoke, without waiting for the answer; the calls
// arrive in order and the Agent reseeds before resumed returns, but a reseed that failed must
// not let the handler run on the old entropy (clones of one snapshot would share it). So a call
// that runs a handler (invoke, execStream) waits until the connection's latest resumed has
// finished, and fails if that failed. Everything else, and every call on a connection that
// never sent resumed, goes straight through (its capabilities, params and results untouched).
capnp::Capability::Client reseed_ordered(capnp::Capability::Client agent);

}  // namespace wisp::agent
