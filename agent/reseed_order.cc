#include "agent/reseed_order.h"

#include <kj/debug.h>

#include "api/agent.capnp.h"

namespace wisp::agent {
namespace {

class ReseedOrder final : public capnp::Capability::Server {
 public:
  explicit ReseedOrder(capnp::Capability::Client agent) : agent_(kj::mv(agent)) {}

  DispatchCallResult dispatchCall(
      uint64_t interface_id, uint16_t method_id,
      capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    constexpr uint64_t kAgent = capnp::typeId<api::Agent>();
    bool is_agent = interface_id == kAgent;
    if (is_agent && method_id == kResumed) {
      // Forwarded here and not tail-called: its outcome is what later calls wait for.
      auto done = forward(interface_id, method_id, context)
                      .then([context](capnp::Response<capnp::AnyPointer>&& r) mutable {
                        context.getResults().set(r);
                      })
                      .fork();
      reseed_ = done.addBranch().fork();
      return {done.addBranch(), false};
    }
    if (is_agent && (method_id == kInvoke || method_id == kExecStream)) {
      KJ_IF_MAYBE (reseed, reseed_) {
        auto request = copy_request(interface_id, method_id, context);
        auto run = reseed->addBranch().then(
            [context, request = kj::mv(request)]() mutable {
              return context.tailCall(kj::mv(request));
            },
            [](kj::Exception&& e) -> kj::Promise<void> {
              KJ_FAIL_REQUIRE(
                  "the reseed (agent.resumed) before this call failed, so no handler "
                  "runs on this connection",
                  e.getDescription());
            });
        return {kj::mv(run), false};
      }
    }
    return {context.tailCall(copy_request(interface_id, method_id, context)), false};
  }

 private:
  // api/agent.capnp's method ordinals.
  static constexpr uint16_t kInvoke = 1;
  static constexpr uint16_t kResumed = 5;
  static constexpr uint16_t kExecStream = 7;

  capnp::Request<capnp::AnyPointer, capnp::AnyPointer> copy_request(
      uint64_t interface_id, uint16_t method_id,
      capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>& context) {
    auto params = context.getParams();
    auto request = agent_.typelessRequest(interface_id, method_id, params.targetSize());
    request.set(params);
    context.releaseParams();
    return request;
  }
  kj::Promise<capnp::Response<capnp::AnyPointer>> forward(
      uint64_t interface_id, uint16_t method_id,
      capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>& context) {
    return copy_request(interface_id, method_id, context).send();
  }

  capnp::Capability::Client agent_;
  kj::Maybe<kj::ForkedPromise<void>> reseed_;
};

}  // namespace

capnp::Capability::Client reseed_ordered(capnp::Capability::Client agent) {
  return kj::heap<ReseedOrder>(kj::mv(agent));
}

}  // namespace wisp::agent
