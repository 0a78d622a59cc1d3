#include "shim/event_publisher.h"

#include <time.h>

#include <cstdlib>

#include "base/log.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"

namespace wisp::shim {

namespace {

namespace events = containerd::services::events::ttrpc::v1;

// containerd's events service answers at once; a containerd that hangs must not hold the
// shim's queue for ever.
constexpr auto kForwardTimeout = 10 * kj::SECONDS;

}  // namespace

std::string forward_request(const std::string& ns, const std::string& topic,
                            const google::protobuf::Message& event) {
  events::ForwardRequest request;
  auto* envelope = request.mutable_envelope();
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  envelope->mutable_timestamp()->set_seconds(t.tv_sec);
  envelope->mutable_timestamp()->set_nanos(static_cast<int32_t>(t.tv_nsec));
  envelope->set_namespace_(ns);
  envelope->set_topic(topic);
  envelope->mutable_event()->set_type_url(event.GetDescriptor()->full_name());
  envelope->mutable_event()->set_value(event.SerializeAsString());
  return request.SerializeAsString();
}

std::string events_socket(const std::string& address) {
  const char* env = std::getenv("TTRPC_ADDRESS");
  std::string a = env && *env ? env : (address.empty() ? "" : address + ".ttrpc");
  const std::string scheme = "unix://";
  if (a.rfind(scheme, 0) == 0) a = a.substr(scheme.size());
  return a;
}

EventPublisher::EventPublisher(kj::AsyncIoProvider& io, std::string socket_path, std::string ns)
    : io_(io), socket_path_(std::move(socket_path)), ns_(std::move(ns)) {}

EventPublisher::~EventPublisher() noexcept(false) {}

void EventPublisher::publish(const std::string& topic, const google::protobuf::Message& event) {
  if (socket_path_.empty()) {
    LOG_DEBUG("event %s: no containerd events socket (TTRPC_ADDRESS)", topic.c_str());
    return;
  }
  std::string payload = forward_request(ns_, topic, event);
  tail_ = tail_
              .then([this, topic, payload = std::move(payload)]() mutable {
                return send(std::move(topic), std::move(payload), true);
              })
              .eagerlyEvaluate(nullptr);
}

kj::Promise<void> EventPublisher::flush() {
  auto forked = tail_.fork();
  tail_ = forked.addBranch();
  return forked.addBranch();
}

kj::Promise<void> EventPublisher::connected() {
  if (client_) return kj::READY_NOW;
  return io_.getNetwork()
      .parseAddress(("unix:" + socket_path_).c_str())
      .then([](kj::Own<kj::NetworkAddress> address) { return address->connect(); })
      .then([this](kj::Own<kj::AsyncIoStream> stream) {
        stream_ = kj::mv(stream);
        client_ = kj::heap<ttrpc::Client>(*stream_);
      });
}

kj::Promise<void> EventPublisher::send(std::string topic, std::string payload, bool again) {
  auto sent = connected()
                  .then([this, payload] { return client_->call(kService, "Forward", payload); })
                  .then([topic](ttrpc::Result r) {
                    if (r.code != ttrpc::Code::kOk) {
                      LOG_WARN("event %s: containerd answered %d: %s", topic.c_str(),
                               static_cast<int>(r.code), r.message.c_str());
                    }
                  });
  return io_.getTimer()
      .timeoutAfter(kForwardTimeout, kj::mv(sent))
      .catch_([this, topic, payload, again](kj::Exception&& e) -> kj::Promise<void> {
        client_ = nullptr;
        stream_ = nullptr;
        // A connection to a containerd that has restarted since fails once: connect again.
        if (again) return send(topic, payload, false);
        LOG_WARN("event %s to %s: %s (dropped)", topic.c_str(), socket_path_.c_str(),
                 e.getDescription().cStr());
        return kj::READY_NOW;
      });
}

}  // namespace wisp::shim
