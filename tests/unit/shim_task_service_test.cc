// shim/task_service: containerd's Task service over ttrpc on a socketpair, called as containerd
// calls it (service "containerd.task.v2.Task", shim.proto's messages): Connect and State answer
// from the shim's state, Shutdown ends it, every method not supported yet answers Unimplemented
// (containerd's errdefs.ErrNotImplemented), and a payload that is not the method's message gets
// InvalidArgument.
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <unistd.h>

#include <string>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/task_service.h"
#include "shim/ttrpc_client.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim {
namespace {

namespace task = containerd::task::v2;
using ttrpc::Code;
using ttrpc::Result;

class TaskServiceTest : public ::testing::Test {
 protected:
  TaskServiceTest()
      : io_(kj::setupAsyncIo()),
        pipe_(io_.provider->newTwoWayPipe()),
        service_(ShimIdentity{"ctr1", "default", "/run/bundle"}, [this] { ++shutdowns_; }) {
    service_.register_methods(router_);
    serving_ = ttrpc::serve_connection(router_, kj::mv(pipe_.ends[0]))
                   .eagerlyEvaluate([](kj::Exception&& e) {
                     ADD_FAILURE() << "server: " << e.getDescription().cStr();
                   });
  }

  // KJ's members may throw from their destructors; gtest's base destructor may not.
  ~TaskServiceTest() noexcept override {}

  Result call(const std::string& method, const google::protobuf::MessageLite& request) {
    std::string bytes;
    request.SerializeToString(&bytes);
    return call_raw(method, bytes);
  }
  Result call_raw(const std::string& method, const std::string& bytes) {
    return client_.call(TaskService::kService, method, bytes).wait(io_.waitScope);
  }

  kj::AsyncIoContext io_;
  kj::TwoWayPipe pipe_;
  int shutdowns_ = 0;
  TaskService service_;
  ttrpc::Router router_;
  kj::Promise<void> serving_ = nullptr;
  ttrpc::Client client_{*pipe_.ends[1]};
};

TEST_F(TaskServiceTest, ConnectGivesTheShimPid) {
  task::ConnectRequest request;
  request.set_id("ctr1");
  Result r = call("Connect", request);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::ConnectResponse response;
  ASSERT_TRUE(response.ParseFromString(r.payload));
  EXPECT_EQ(response.shim_pid(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(response.task_pid(), 0u);
}

TEST_F(TaskServiceTest, StateOfATaskTheShimDoesNotHoldIsNotFound) {
  task::StateRequest request;
  request.set_id("ctr1");
  Result r = call("State", request);
  EXPECT_EQ(r.code, Code::kNotFound);
  EXPECT_NE(r.message.find("task ctr1 not found"), std::string::npos) << r.message;
}

TEST_F(TaskServiceTest, UnsupportedMethodsAreUnimplemented) {
  task::CreateTaskRequest create;
  create.set_id("ctr1");
  create.set_bundle("/run/bundle");
  Result r = call("Create", create);
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_NE(r.message.find("Create"), std::string::npos) << r.message;
  for (const char* method : {"Start", "Delete", "Pids", "Pause", "Resume", "Checkpoint", "Kill",
                             "Exec", "ResizePty", "CloseIO", "Update", "Wait", "Stats"}) {
    EXPECT_EQ(call_raw(method, "").code, Code::kUnimplemented) << method;
  }
  r = call_raw("NoSuchMethod", "");
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_EQ(r.message, "method NoSuchMethod");
}

TEST_F(TaskServiceTest, APayloadThatIsNotTheMessageIsInvalidArgument) {
  // Field 1 (id, a string) claiming 100 bytes that are not there.
  Result r = call_raw("Connect", std::string("\x0a\x64xy", 4));
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find("ConnectRequest"), std::string::npos) << r.message;
  r = call_raw("State", std::string("\xff\xff\xff", 3));
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_EQ(shutdowns_, 0);
  EXPECT_EQ(call_raw("Shutdown", std::string("\x12", 1)).code, Code::kInvalidArgument);
  EXPECT_EQ(shutdowns_, 0);
}

TEST_F(TaskServiceTest, ShutdownEndsTheShimOnce) {
  task::ShutdownRequest request;
  request.set_id("ctr1");
  Result r = call("Shutdown", request);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  google::protobuf::Empty empty;
  EXPECT_TRUE(empty.ParseFromString(r.payload));
  EXPECT_EQ(shutdowns_, 1);
  EXPECT_EQ(call("Shutdown", request).code, Code::kOk);
  EXPECT_EQ(shutdowns_, 1);
}

}  // namespace
}  // namespace wisp::shim
