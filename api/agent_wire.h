// The host client's structs (api/agent_client.h) to and from agent.capnp's wire types, for the
// code that speaks to an agent with the generated classes: the synchronous AgentClient and
// `wisp serve`'s asynchronous link (manager/service/vm_links.cc).
#pragma once

#include "api/agent.capnp.h"
#include "api/agent_client.h"

namespace wisp::client {

void fill_handler(api::Handler::Builder b, const Handler& h);
InvokeResult convert(api::InvokeResult::Reader r);

}  // namespace wisp::client
