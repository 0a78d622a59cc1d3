// The host client's structs (api/agent_client.h) to and from agent.capnp's wire types, for the
// code that speaks to an agent with the generated classes: the synchronous AgentClient and
// `wisp serve`'s asynchronous link (manager/service/vm_links.cc).
#pragma once

#include <string>

#include "api/agent.capnp.h"
#include "api/agent_client.h"

namespace wisp::client {

void fill_handler(api::Handler::Builder b, const Handler& h);
InvokeResult convert(api::InvokeResult::Reader r);

// The outcome of one call, from any reader with InvokeResult's fields: agent.capnp's
// InvokeResult, and serve's InvokeResponse (api/wisp.capnp), which repeats them for clients.
template <typename Reader>
InvokeResult invoke_outcome(Reader r) {
  auto text = [](auto t) {
    return std::string(reinterpret_cast<const char*>(t.begin()), t.size());
  };
  InvokeResult out;
  out.out = text(r.getStdout());
  out.err = text(r.getStderr());
  if (r.isSignal()) {
    out.signaled = true;
    out.signal = r.getSignal();
  } else {
    out.exit_code = r.getExitCode();
  }
  out.timed_out = r.getTimedOut();
  out.output_truncated = r.getOutputTruncated();
  out.limit_exceeded = text(r.getLimitExceeded());
  out.duration_ns = r.getDurationNs();
  out.peak_memory_bytes = r.getPeakMemoryBytes();
  out.cpu_time_ns = r.getCpuTimeNs();
  return out;
}

}  // namespace wisp::client
