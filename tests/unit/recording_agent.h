// A fake guest agent for the unit tests of the calls that travel with a vsock connection
// request (api/agent_client's connect_with, manager/service/vm_links' first_calls): it records
// each resumed (with its entropy's size) and invoke (with its payload) it is sent, in order,
// and answers an invoke with its payload. Also the CONNECT line the clients write.
#pragma once

#include <string>
#include <vector>

#include "api/agent.capnp.h"

namespace wisp::testing {

class RecordingAgent final : public api::Agent::Server {
 public:
  explicit RecordingAgent(std::vector<std::string>& calls) : calls_(calls) {}
  kj::Promise<void> resumed(ResumedContext context) override {
    calls_.push_back("resumed " + std::to_string(context.getParams().getEntropy().size()));
    return kj::READY_NOW;
  }
  kj::Promise<void> invoke(InvokeContext context) override {
    auto payload = context.getParams().getRequest().getPayload();
    calls_.push_back("invoke " + std::string(payload.asChars().begin(), payload.size()));
    auto r = context.getResults().initResult();
    r.setStdout(payload);
    r.setExitCode(0);
    return kj::READY_NOW;
  }

 private:
  std::vector<std::string>& calls_;
};

constexpr char kAgentConnectLine[] = "CONNECT 1024\n";
constexpr size_t kAgentConnectLineBytes = sizeof(kAgentConnectLine) - 1;

}  // namespace wisp::testing
