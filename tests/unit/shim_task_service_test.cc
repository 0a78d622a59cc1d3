// shim/task_service: containerd's Task service over ttrpc on a socketpair, called as containerd
// calls it (service "containerd.task.v2.Task", shim.proto's messages), over the unit tests'
// fake `wisp serve` (fake_wisp.h): Create makes a sandbox of the spec's template, Start runs
// the OCI process in it (its output lands in the stdout path), Wait, State, Kill, Delete and
// Shutdown follow the task; methods not supported answer Unimplemented (containerd's
// errdefs.ErrNotImplemented); a bad payload, bundle or serve gets a status naming the fault.
// Streamed stdio, Exec, Pause/Resume and events: shim_task_processes_test.cc.
#include <gtest/gtest.h>

#include <string>

#include "base/file_io.h"
#include "shim_task_fixture.h"

namespace wisp::shim {
namespace {

using ttrpc::Code;
using ttrpc::Result;

constexpr const char* kSpec = R"({"ociVersion": "1.0.2",
  "process": {"args": ["/bin/echo", "hi"], "env": ["PATH=/bin", "A=b"], "cwd": "/"},
  "root": {"path": "rootfs"},
  "annotations": {"io.wisp.template": "echo"}})";

TEST_F(TaskServiceTest, ConnectGivesTheShimPid) {
  Result r = call("Connect", with_id<task::ConnectRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::ConnectResponse response;
  ASSERT_TRUE(response.ParseFromString(r.payload));
  EXPECT_EQ(response.shim_pid(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(response.task_pid(), 0u);
}

TEST_F(TaskServiceTest, ATaskRunsInASandboxFromCreateToDelete) {
  write_config(kSpec);
  Result r = create();
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::CreateTaskResponse created;
  ASSERT_TRUE(created.ParseFromString(r.payload));
  EXPECT_EQ(created.pid(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(fake_.creates, 1);
  EXPECT_EQ(fake_.created_template, "echo");
  EXPECT_FALSE(fake_.created_detached);
  // Recorded for `delete`, which kills it if this shim dies.
  EXPECT_EQ(read_file(bundle_ + "/wisp-sandbox"), "sb-1");
  EXPECT_EQ(create().code, Code::kAlreadyExists);

  r = call("State", with_id<task::StateRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::StateResponse state;
  ASSERT_TRUE(state.ParseFromString(r.payload));
  EXPECT_EQ(state.status(), containerd::v1::types::CREATED);
  EXPECT_EQ(state.bundle(), bundle_);

  r = call("Start", with_id<task::StartRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kFailedPrecondition);
  r = call("Wait", with_id<task::WaitRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::WaitResponse waited;
  ASSERT_TRUE(waited.ParseFromString(r.payload));
  EXPECT_EQ(waited.exit_status(), 0u);
  EXPECT_GT(waited.exited_at().seconds(), 0);
  // The fake's process writes its argv joined by spaces; with no stdin it reads end of file
  // at once and ends.
  ASSERT_EQ(fake_.streams.size(), 1u);
  EXPECT_EQ(fake_.streams[0], (std::vector<std::string>{"/bin/echo", "hi"}));
  EXPECT_EQ(fake_.stdin_closes, 1);
  char out[256];
  ssize_t n = ::read(stdout_reader_.get(), out, sizeof(out));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(out, static_cast<size_t>(n)), "/bin/echo hi\n");

  ASSERT_TRUE(state.ParseFromString(call("State", with_id<task::StateRequest>()).payload));
  EXPECT_EQ(state.status(), containerd::v1::types::STOPPED);
  EXPECT_EQ(call("Kill", with_id<task::KillRequest>()).code, Code::kNotFound);

  // Shutdown leaves a shim that holds a task running.
  EXPECT_EQ(call("Shutdown", with_id<task::ShutdownRequest>()).code, Code::kOk);
  EXPECT_EQ(shutdowns_, 0);
  r = call("Delete", with_id<task::DeleteRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::DeleteResponse deleted;
  ASSERT_TRUE(deleted.ParseFromString(r.payload));
  EXPECT_EQ(deleted.exit_status(), 0u);
  EXPECT_EQ(call("State", with_id<task::StateRequest>()).code, Code::kNotFound);
  EXPECT_EQ(call("Shutdown", with_id<task::ShutdownRequest>()).code, Code::kOk);
  EXPECT_EQ(shutdowns_, 1);
}

TEST_F(TaskServiceTest, KillBeforeStartEndsTheTaskWithTheSignal) {
  write_config(kSpec);
  ASSERT_EQ(create().code, Code::kOk);
  auto kill = with_id<task::KillRequest>();
  kill.set_signal(15);
  ASSERT_EQ(call("Kill", kill).code, Code::kOk);
  task::WaitResponse waited;
  ASSERT_TRUE(waited.ParseFromString(call("Wait", with_id<task::WaitRequest>()).payload));
  EXPECT_EQ(waited.exit_status(), 128u + 15);
  EXPECT_EQ(fake_.kills, 0);  // the sandbox goes at Delete
  EXPECT_TRUE(fake_.streams.empty());
  EXPECT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kFailedPrecondition);
}

TEST_F(TaskServiceTest, BadBundlesAndServeErrorsGetClearStatuses) {
  Result r = create();  // no config.json
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find("config.json"), std::string::npos) << r.message;
  write_config(R"({"process": {"args": []}, "annotations": {"io.wisp.template": "echo"}})");
  r = create();
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find("process.args: empty"), std::string::npos) << r.message;
  write_config(R"({"process": {"args": ["x", 3]}})");
  EXPECT_NE(create().message.find("process.args: expected an array of strings"), std::string::npos);
  write_config("{not json");
  EXPECT_NE(create().message.find("not valid JSON"), std::string::npos);
  write_config(R"({"process": {"args": ["x"]}})");
  r = create();
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  // No fixed template: the container's own root, which needs the snapshotter's mounts.
  EXPECT_NE(r.message.find("rootfs: no mounts"), std::string::npos) << r.message;
  {
    task::CreateTaskRequest tmpfs;
    tmpfs.set_id("ctr1");
    tmpfs.set_bundle(bundle_);
    auto* m = tmpfs.add_rootfs();
    m->set_type("tmpfs");
    m->set_source("tmpfs");
    r = call("Create", tmpfs);
    EXPECT_EQ(r.code, Code::kInvalidArgument);
    EXPECT_NE(r.message.find("rootfs[0].type: 'tmpfs' is not supported"), std::string::npos)
        << r.message;
  }
  write_config(R"({"process": {"args": ["x"]}, "annotations": {"io.wisp.template": "missing"}})");
  r = create();
  EXPECT_EQ(r.code, Code::kNotFound);
  EXPECT_NE(r.message.find("not-found: template missing"), std::string::npos) << r.message;
  write_config(kSpec);
  serve_down_ = true;
  r = create();
  EXPECT_EQ(r.code, Code::kUnavailable);
  EXPECT_NE(r.message.find("not reachable"), std::string::npos) << r.message;
  EXPECT_EQ(fake_.creates, 0);
}

TEST_F(TaskServiceTest, StateOfATaskTheShimDoesNotHoldIsNotFound) {
  Result r = call("State", with_id<task::StateRequest>());
  EXPECT_EQ(r.code, Code::kNotFound);
  EXPECT_NE(r.message.find("task ctr1 not found"), std::string::npos) << r.message;
  auto exec_state = with_id<task::StateRequest>();
  exec_state.set_exec_id("e1");
  EXPECT_EQ(call("State", exec_state).code, Code::kNotFound);
  for (const char* method :
       {"Pause", "Resume", "Exec", "CloseIO", "ResizePty", "Update", "Stats", "Pids"}) {
    r = call_raw(method,
                 "\x0a\x04"
                 "ctr1");  // id "ctr1"
    EXPECT_EQ(r.code, Code::kNotFound) << method;
    EXPECT_NE(r.message.find("task ctr1 not found"), std::string::npos) << r.message;
  }
}

TEST_F(TaskServiceTest, UnsupportedMethodsAreUnimplemented) {
  write_config(kSpec);
  ASSERT_EQ(create().code, Code::kOk);
  Result r = call("Stats", with_id<task::StatsRequest>());
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_NE(r.message.find("no per-sandbox metrics"), std::string::npos) << r.message;
  r = call("Update", with_id<task::UpdateTaskRequest>());
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_NE(r.message.find("resources cannot change"), std::string::npos) << r.message;
  r = call_raw("NoSuchMethod", "");
  EXPECT_EQ(r.code, Code::kUnimplemented);
  EXPECT_EQ(r.message, "method NoSuchMethod");
}

TEST_F(TaskServiceTest, APayloadThatIsNotTheMessageIsInvalidArgument) {
  // Field 1 (id, a string) claiming 100 bytes that are not there.
  Result r = call_raw("Connect", std::string("\x0a\x64xy", 4));
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find("ConnectRequest"), std::string::npos) << r.message;
  for (const char* method : {"State", "Create", "Start", "Wait", "Kill", "Delete", "Pids", "Exec",
                             "CloseIO", "Pause", "Resume", "Stats", "Update"}) {
    EXPECT_EQ(call_raw(method, std::string("\xff\xff\xff", 3)).code, Code::kInvalidArgument)
        << method;
  }
  EXPECT_EQ(call_raw("Shutdown", std::string("\x12", 1)).code, Code::kInvalidArgument);
  EXPECT_EQ(shutdowns_, 0);
}

TEST_F(TaskServiceTest, ShutdownEndsAnEmptyShimOnce) {
  Result r = call("Shutdown", with_id<task::ShutdownRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  google::protobuf::Empty empty;
  EXPECT_TRUE(empty.ParseFromString(r.payload));
  EXPECT_EQ(shutdowns_, 1);
  EXPECT_EQ(call("Shutdown", with_id<task::ShutdownRequest>()).code, Code::kOk);
  EXPECT_EQ(shutdowns_, 1);
}

}  // namespace
}  // namespace wisp::shim
