// api/wisp.capnp ExecSandbox (an exec's or a template's handler sandbox beyond argv and env:
// its root drive, working directory, user and limits) onto the agent client's Handler. The
// request is untrusted: each field is checked here, with the agent checking again.
#pragma once

#include "api/agent_client.h"
#include "api/wisp.capnp.h"

namespace wisp::service {

// Sets `out`'s root_device, cwd, uid, gid, additional_gids and limits (0 keeps a limit's
// default). Throws Error("bad-request: sandbox.<field>: ...").
void apply_exec_sandbox(api::serve::ExecSandbox::Reader in, client::Handler* out);

}  // namespace wisp::service
