// The Task service's test fixture (shim_task_service_test.cc, shim_task_processes_test.cc):
// shim/task_service over ttrpc on a socketpair, called as containerd calls it, over the unit
// tests' fake `wisp serve` (fake_wisp.h), with containerd's FIFOs in a temporary bundle and the
// events it publishes recorded.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "fake_wisp.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/task_service.h"
#include "shim/ttrpc_client.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim {

namespace task = containerd::task::v2;

class TaskServiceTest : public ::testing::Test {
 protected:
  TaskServiceTest()
      : io_(kj::setupAsyncIo()),
        pipe_(io_.provider->newTwoWayPipe()),
        wisp_(testutil::make_fake_wisp(fake_)),
        service_(
            ShimIdentity{"ctr1", "default", "/run/bundle", ""},
            [this]() -> kj::Promise<api::serve::Wisp::Client> {
              if (serve_down_) throw Error("wisp serve at /x is not reachable");
              return wisp_;
            },
            *io_.lowLevelProvider,
            [this](const std::string& topic, const google::protobuf::Message& event) {
              events_.emplace_back(topic, event.GetDescriptor()->full_name());
            },
            [this] { ++shutdowns_; }) {
    service_.register_methods(router_);
    serving_ = ttrpc::serve_connection(router_, kj::mv(pipe_.ends[0]))
                   .eagerlyEvaluate([](kj::Exception&& e) {
                     ADD_FAILURE() << "server: " << e.getDescription().cStr();
                   });
    char tmpl[] = "/tmp/wisp-shim-task-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    bundle_ = tmpl;
  }
  // KJ's members may throw from their destructors; gtest's base destructor may not.
  ~TaskServiceTest() noexcept override { std::system(("rm -rf '" + bundle_ + "'").c_str()); }

  void write_config(const std::string& json) { std::ofstream(bundle_ + "/config.json") << json; }

  ttrpc::Result call(const std::string& method, const google::protobuf::MessageLite& request) {
    std::string bytes;
    request.SerializeToString(&bytes);
    return call_raw(method, bytes);
  }
  ttrpc::Result call_raw(const std::string& method, const std::string& bytes) {
    return client_.call(TaskService::kService, method, bytes).wait(io_.waitScope);
  }

  // containerd's stdout FIFO, with its read end open as containerd holds it.
  ttrpc::Result create(const std::string& id = "ctr1") {
    std::string fifo = bundle_ + "/stdout";
    if (!stdout_reader_) {
      EXPECT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
      stdout_reader_.reset(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    }
    task::CreateTaskRequest create;
    create.set_id(id);
    create.set_bundle(bundle_);
    create.set_stdout(bundle_ + "/stdout");
    return call("Create", create);
  }

  template <typename Request>
  Request with_id(const std::string& id = "ctr1") {
    Request r;
    r.set_id(id);
    return r;
  }

  kj::AsyncIoContext io_;
  kj::TwoWayPipe pipe_;
  testutil::FakeWispState fake_;
  api::serve::Wisp::Client wisp_;
  bool serve_down_ = false;
  int shutdowns_ = 0;
  std::vector<std::pair<std::string, std::string>> events_;  // topic, message type
  TaskService service_;
  ttrpc::Router router_;
  kj::Promise<void> serving_ = nullptr;
  ttrpc::Client client_{*pipe_.ends[1]};
  std::string bundle_;
  UniqueFd stdout_reader_;
};

}  // namespace wisp::shim
