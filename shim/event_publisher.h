// Publishes the shim's task events to containerd as runc's shim does: over ttrpc to
// containerd's TTRPC_ADDRESS (the variable containerd sets for its shims; else -address's socket
// + ".ttrpc"), Events/Forward (api/services/ttrpc/events/v1/events.proto) with an Envelope of
// the time, the namespace, the topic ("/tasks/exit") and the event as a typeurl Any (its type
// URL is the message's full protobuf name, "containerd.events.TaskExit", as containerd's
// typeurl writes it).
//
// Events go one at a time, in order, on one connection made at the first event and made again
// after a failure (containerd restarted), with one retry. An event containerd cannot take is
// logged and dropped (runc's shim retries a few times, then drops it too); publishing never
// blocks or fails a Task call.
#pragma once

#include <google/protobuf/message.h>
#include <kj/async-io.h>

#include <functional>
#include <string>

#include "shim/ttrpc_client.h"

namespace wisp::shim {

// What the Task service calls to publish: the topic and the event message.
using Publish = std::function<void(const std::string& topic, const google::protobuf::Message&)>;

// The Forward request's payload for `event` (exposed for the unit tests).
std::string forward_request(const std::string& ns, const std::string& topic,
                            const google::protobuf::Message& event);

// containerd's ttrpc socket path: $TTRPC_ADDRESS, else `address` + ".ttrpc" ("" for none).
std::string events_socket(const std::string& address);

class EventPublisher {
 public:
  static constexpr const char* kService = "containerd.services.events.ttrpc.v1.Events";

  // `socket_path` "": events are logged at debug level and dropped.
  EventPublisher(kj::AsyncIoProvider& io, std::string socket_path, std::string ns);
  ~EventPublisher() noexcept(false);

  void publish(const std::string& topic, const google::protobuf::Message& event);
  // Resolves when every event published so far was sent (or dropped).
  kj::Promise<void> flush();

 private:
  // `again`: on a failure, connect again and send once more.
  kj::Promise<void> send(std::string topic, std::string payload, bool again);
  kj::Promise<void> connected();

  kj::AsyncIoProvider& io_;
  std::string socket_path_;
  std::string ns_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<ttrpc::Client> client_;
  kj::Promise<void> tail_ = kj::READY_NOW;
};

}  // namespace wisp::shim
