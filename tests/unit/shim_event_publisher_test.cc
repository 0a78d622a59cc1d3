// shim/event_publisher: the shim's events reach a ttrpc server that stands in for containerd's
// events service (containerd.services.events.ttrpc.v1.Events/Forward, served by the shim's own
// ttrpc server on a Unix socket) in order, each in an Envelope with the namespace, the topic and
// the event as an Any whose type URL is the message's protobuf name; a containerd that is not
// there costs the events, not the shim; the socket comes from TTRPC_ADDRESS or -address.
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "shim/event_publisher.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim {
namespace {

namespace ev = containerd::services::events::ttrpc::v1;

class EventPublisherTest : public ::testing::Test {
 protected:
  EventPublisherTest() : io_(kj::setupAsyncIo()) {
    char tmpl[] = "/tmp/wisp-shim-events-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/containerd.sock.ttrpc";
  }
  ~EventPublisherTest() noexcept override {
    ::unlink(socket_.c_str());
    ::rmdir(dir_.c_str());
  }

  // containerd's events service: records each Forward's envelope.
  void serve_events() {
    router_.add(EventPublisher::kService, "Forward",
                [this](std::string payload) -> kj::Promise<ttrpc::Result> {
                  ev::ForwardRequest request;
                  if (!request.ParseFromString(payload)) {
                    return ttrpc::Result::error(ttrpc::Code::kInvalidArgument, "bad request");
                  }
                  received_.push_back(request.envelope());
                  return ttrpc::Result::ok("");
                });
    listener_ = io_.provider->getNetwork()
                    .parseAddress(("unix:" + socket_).c_str())
                    .wait(io_.waitScope)
                    ->listen();
    serving_ = ttrpc::serve_listener(router_, *listener_).eagerlyEvaluate(nullptr);
  }

  kj::AsyncIoContext io_;
  std::string dir_, socket_;
  ttrpc::Router router_;
  kj::Own<kj::ConnectionReceiver> listener_;
  kj::Promise<void> serving_ = nullptr;
  std::vector<ev::Envelope> received_;
};

TEST_F(EventPublisherTest, EventsReachContainerdInOrderInTheirEnvelopes) {
  serve_events();
  EventPublisher publisher(*io_.provider, socket_, "k8s.io");
  containerd::events::TaskStart start;
  start.set_container_id("c1");
  start.set_pid(42);
  containerd::events::TaskExit exit;
  exit.set_container_id("c1");
  exit.set_id("c1");
  exit.set_exit_status(143);
  publisher.publish("/tasks/start", start);
  publisher.publish("/tasks/exit", exit);
  publisher.flush().wait(io_.waitScope);
  ASSERT_EQ(received_.size(), 2u);
  EXPECT_EQ(received_[0].namespace_(), "k8s.io");
  EXPECT_EQ(received_[0].topic(), "/tasks/start");
  EXPECT_GT(received_[0].timestamp().seconds(), 0);
  EXPECT_EQ(received_[0].event().type_url(), "containerd.events.TaskStart");
  containerd::events::TaskStart got_start;
  ASSERT_TRUE(got_start.ParseFromString(received_[0].event().value()));
  EXPECT_EQ(got_start.container_id(), "c1");
  EXPECT_EQ(got_start.pid(), 42u);
  EXPECT_EQ(received_[1].topic(), "/tasks/exit");
  EXPECT_EQ(received_[1].event().type_url(), "containerd.events.TaskExit");
  containerd::events::TaskExit got_exit;
  ASSERT_TRUE(got_exit.ParseFromString(received_[1].event().value()));
  EXPECT_EQ(got_exit.exit_status(), 143u);
}

TEST_F(EventPublisherTest, AContainerdThatIsNotThereCostsTheEventsOnly) {
  EventPublisher publisher(*io_.provider, socket_, "default");
  containerd::events::TaskPaused paused;
  paused.set_container_id("c1");
  publisher.publish("/tasks/paused", paused);
  publisher.flush().wait(io_.waitScope);  // dropped, logged
  // containerd comes (back): the next event connects.
  serve_events();
  publisher.publish("/tasks/paused", paused);
  publisher.flush().wait(io_.waitScope);
  ASSERT_EQ(received_.size(), 1u);
  EXPECT_EQ(received_[0].event().type_url(), "containerd.events.TaskPaused");
  // No socket configured: nothing is sent.
  EventPublisher none(*io_.provider, "", "default");
  none.publish("/tasks/paused", paused);
  none.flush().wait(io_.waitScope);
  EXPECT_EQ(received_.size(), 1u);
}

TEST_F(EventPublisherTest, TheSocketComesFromTtrpcAddressElseTheAddressFlag) {
  ::unsetenv("TTRPC_ADDRESS");
  EXPECT_EQ(events_socket("/run/containerd/containerd.sock"),
            "/run/containerd/containerd.sock.ttrpc");
  EXPECT_EQ(events_socket(""), "");
  ::setenv("TTRPC_ADDRESS", "unix:///run/x/containerd.sock.ttrpc", 1);
  EXPECT_EQ(events_socket("/run/containerd/containerd.sock"), "/run/x/containerd.sock.ttrpc");
  ::unsetenv("TTRPC_ADDRESS");
}

}  // namespace
}  // namespace wisp::shim
