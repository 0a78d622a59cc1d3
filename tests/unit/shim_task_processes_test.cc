// shim/task_service with its processes (shim/guest_process.h), over the fake serve's streamed
// exec (fake_wisp.h: the process writes its argv, then echoes its stdin; end of stdin ends it
// with 0, a signal with that signal): stdout reaches containerd's FIFO as the process writes it,
// the stdin FIFO is copied to the process until its writer closes it (or CloseIO), Kill sends
// the signal, Exec adds processes with their own stdio and life, Pause and Resume follow the
// sandbox, and the events runc's shim publishes are published in their order.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

#include "base/unique_fd.h"
#include "shim/checkpoint_record.h"
#include "shim/exec_spec.h"
#include "shim_task_fixture.h"

namespace wisp::shim {
namespace {

using ttrpc::Code;
using ttrpc::Result;
using Events = std::vector<std::pair<std::string, std::string>>;

constexpr const char* kSpec = R"({"process": {"args": ["/bin/cat"], "env": ["PATH=/bin"]},
  "annotations": {"io.wisp.template": "echo"}})";

class TaskProcessesTest : public TaskServiceTest {
 protected:
  // Runs the loop until `done` holds (at most 5 s).
  bool until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.provider->getTimer().afterDelay(5 * kj::MILLISECONDS).wait(io_.waitScope);
    }
    return true;
  }

  std::string fifo(const std::string& name) {
    std::string path = bundle_ + "/" + name;
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
    return path;
  }

  // What is in the FIFO `fd` now (non-blocking).
  static std::string drain(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

  // Create with a stdin FIFO: its process runs until the FIFO's writer closes it.
  Result create_with_stdin() {
    std::string out = fifo("stdout");
    stdout_reader_.reset(::open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    stdin_path_ = fifo("stdin");
    task::CreateTaskRequest create;
    create.set_id("ctr1");
    create.set_bundle(bundle_);
    create.set_stdin(stdin_path_);
    create.set_stdout(out);
    return call("Create", create);
  }

  uint32_t wait_status(const std::string& exec_id = "") {
    auto wait = with_id<task::WaitRequest>();
    wait.set_exec_id(exec_id);
    Result r = call("Wait", wait);
    EXPECT_EQ(r.code, Code::kOk) << r.message;
    task::WaitResponse response;
    EXPECT_TRUE(response.ParseFromString(r.payload));
    return response.exit_status();
  }

  containerd::v1::types::Status status(const std::string& exec_id = "") {
    auto state = with_id<task::StateRequest>();
    state.set_exec_id(exec_id);
    task::StateResponse response;
    EXPECT_TRUE(response.ParseFromString(call("State", state).payload));
    return response.status();
  }

  std::vector<std::string> topics() const {
    std::vector<std::string> out;
    for (const auto& e : events_) out.push_back(e.first);
    return out;
  }

  std::string stdin_path_;
};

TEST_F(TaskProcessesTest, OutputAndStdinAreStreamedWhileTheProcessRuns) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  // The shim's thread waits for the writer that containerd would open.
  UniqueFd writer(::open(stdin_path_.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(writer);
  std::string seen;
  ASSERT_TRUE(until([&] { return (seen += drain(stdout_reader_.get())) == "/bin/cat\n"; }));
  ASSERT_EQ(::write(writer.get(), "first ", 6), 6);
  ASSERT_TRUE(until([&] { return (seen += drain(stdout_reader_.get())) == "/bin/cat\nfirst "; }));
  EXPECT_EQ(status(), containerd::v1::types::RUNNING);
  EXPECT_EQ(fake_.stdin_closes, 0);
  // As ctr ends its input: the last bytes, end of file, and CloseIO at once. The bytes still
  // reach the process before its stdin is closed (once), and it ends.
  ASSERT_EQ(::write(writer.get(), "second", 6), 6);
  writer.reset();
  auto close = with_id<task::CloseIORequest>();
  close.set_stdin(true);
  ASSERT_EQ(call("CloseIO", close).code, Code::kOk);
  EXPECT_EQ(wait_status(), 0u);
  EXPECT_EQ(fake_.stream_stdin, "first second");
  EXPECT_EQ(fake_.stdin_closes, 1);
  EXPECT_EQ(seen + drain(stdout_reader_.get()), "/bin/cat\nfirst second");
  EXPECT_EQ(status(), containerd::v1::types::STOPPED);
}

TEST_F(TaskProcessesTest, CloseIoClosesStdinAndKillSendsTheSignal) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  auto kill = with_id<task::KillRequest>();
  kill.set_signal(0);  // is it there?
  EXPECT_EQ(call("Kill", kill).code, Code::kOk);
  kill.set_signal(15);
  ASSERT_EQ(call("Kill", kill).code, Code::kOk);
  EXPECT_EQ(wait_status(), 128u + 15);
  EXPECT_EQ(fake_.signals, std::vector<int>{15});
  EXPECT_EQ(call("Kill", kill).code, Code::kNotFound);  // as runc's shim answers
  kill.set_signal(0);
  EXPECT_EQ(call("Kill", kill).code, Code::kNotFound);
  kill.set_signal(99);
  EXPECT_EQ(call("Kill", kill).code, Code::kInvalidArgument);

  // CloseIO: the process sees end of file without the FIFO's writer closing it (after the
  // grace time for what is in the FIFO).
  ASSERT_EQ(call("Delete", with_id<task::DeleteRequest>()).code, Code::kOk);
  ::unlink(stdin_path_.c_str());
  ::unlink((bundle_ + "/stdout").c_str());
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  auto close = with_id<task::CloseIORequest>();
  close.set_stdin(true);
  ASSERT_EQ(call("CloseIO", close).code, Code::kOk);
  EXPECT_EQ(wait_status(), 0u);
  EXPECT_EQ(fake_.stdin_closes, 1);
}

task::ExecProcessRequest exec_request(const std::string& exec_id, const std::string& json) {
  task::ExecProcessRequest exec;
  exec.set_id("ctr1");
  exec.set_exec_id(exec_id);
  exec.mutable_spec()->set_type_url(kProcessTypeUrl);
  exec.mutable_spec()->set_value(json);
  return exec;
}

TEST_F(TaskProcessesTest, ExecRunsAFurtherProcessWithItsOwnStdioAndLife) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  auto exec = exec_request("e1", R"({"args": ["exit7", "a b"], "env": ["X=1"]})");
  // Not before the container's process runs.
  EXPECT_EQ(call("Exec", exec).code, Code::kOk);
  auto start_e1 = with_id<task::StartRequest>();
  start_e1.set_exec_id("e1");
  EXPECT_EQ(call("Start", start_e1).code, Code::kFailedPrecondition);
  auto del_e1 = with_id<task::DeleteRequest>();
  del_e1.set_exec_id("e1");
  ASSERT_EQ(call("Delete", del_e1).code, Code::kOk);

  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  std::string out = fifo("e1-stdout");
  UniqueFd reader(::open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  exec.set_stdout(out);
  ASSERT_EQ(call("Exec", exec).code, Code::kOk);
  EXPECT_EQ(call("Exec", exec).code, Code::kAlreadyExists);
  EXPECT_EQ(status("e1"), containerd::v1::types::CREATED);
  Result r = call("Start", start_e1);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  ASSERT_EQ(fake_.streams.size(), 2u);
  EXPECT_EQ(fake_.streams[1], (std::vector<std::string>{"exit7", "a b"}));
  // No stdin: it reads end of file at once, and ends with its own code.
  EXPECT_EQ(wait_status("e1"), 7u);
  EXPECT_EQ(drain(reader.get()), "exit7 a b\n");
  EXPECT_EQ(status("e1"), containerd::v1::types::STOPPED);
  EXPECT_EQ(status(), containerd::v1::types::RUNNING);  // the container's runs on
  r = call("Delete", del_e1);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  task::DeleteResponse deleted;
  ASSERT_TRUE(deleted.ParseFromString(r.payload));
  EXPECT_EQ(deleted.exit_status(), 7u);
  EXPECT_EQ(call("State", with_id<task::StateRequest>()).code, Code::kOk);

  // When the container's process ends, its exec processes are killed, as runc's die with it.
  exec.set_stdout("");
  exec.set_exec_id("e2");
  ASSERT_EQ(call("Exec", exec).code, Code::kOk);
  auto stdin_e2 = fifo("e2-stdin");
  exec.set_stdin(stdin_e2);
  exec.set_exec_id("e3");
  ASSERT_EQ(call("Exec", exec).code, Code::kOk);
  auto start_e3 = with_id<task::StartRequest>();
  start_e3.set_exec_id("e3");
  ASSERT_EQ(call("Start", start_e3).code, Code::kOk);
  auto kill = with_id<task::KillRequest>();
  kill.set_signal(9);
  ASSERT_EQ(call("Kill", kill).code, Code::kOk);
  EXPECT_EQ(wait_status(), 128u + 9);
  EXPECT_EQ(wait_status("e3"), 128u + 9);
  EXPECT_EQ(status("e2"), containerd::v1::types::STOPPED);  // never started
  EXPECT_EQ(call("Exec", exec_request("e4", R"({"args": ["x"]})")).code, Code::kFailedPrecondition);
  ASSERT_EQ(call("Delete", with_id<task::DeleteRequest>()).code, Code::kOk);
}

TEST_F(TaskProcessesTest, AnExecSpecThatIsNotAProcessIsRefusedByField) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  Result r = call("Exec", exec_request("e1", R"({"args": []})"));
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find("exec spec: process.args: empty"), std::string::npos) << r.message;
  r = call("Exec", exec_request("e1", R"({"args": ["x"], "env": "A=b"})"));
  EXPECT_NE(r.message.find("exec spec: process.env: expected an array"), std::string::npos)
      << r.message;
  r = call("Exec", exec_request("e1", "{"));
  EXPECT_NE(r.message.find("exec spec: not valid JSON"), std::string::npos) << r.message;
  auto exec = exec_request("e1", R"({"args": ["x"]})");
  exec.mutable_spec()->set_type_url("types.containerd.io/other");
  r = call("Exec", exec);
  EXPECT_NE(r.message.find("exec spec: type types.containerd.io/other"), std::string::npos)
      << r.message;
  exec = exec_request("", R"({"args": ["x"]})");
  EXPECT_EQ(call("Exec", exec).code, Code::kInvalidArgument);
  r = call("Exec", exec_request("e1", R"({"args": ["x"], "consoleSize": {"width": 70000}})"));
  EXPECT_NE(r.message.find("exec spec: process.consoleSize.width: expected a whole number"),
            std::string::npos)
      << r.message;
  r = call("Exec", exec_request("e1", R"({"args": ["x"], "consoleSize": [80, 24]})"));
  EXPECT_NE(r.message.find("exec spec: process.consoleSize: expected an object"), std::string::npos)
      << r.message;
}

// A process on a terminal: serve is asked for one (with the spec's consoleSize until a
// ResizePty), its output goes to the stdout FIFO alone, and ResizePty reaches the process,
// before Start as its initial size, after it as Process.resize.
TEST_F(TaskProcessesTest, TerminalProcessesGetTheirSizeFromResizePty) {
  write_config(R"({"process": {"args": ["sh"], "terminal": true,
    "consoleSize": {"width": 100, "height": 30}}, "annotations": {"io.wisp.template": "echo"}})");
  std::string out = fifo("stdout");
  stdout_reader_.reset(::open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  task::CreateTaskRequest create;
  create.set_id("ctr1");
  create.set_bundle(bundle_);
  create.set_stdout(out);
  stdin_path_ = fifo("stdin");  // no writer comes: the process runs until the test ends
  create.set_stdin(stdin_path_);
  create.set_terminal(true);
  ASSERT_EQ(call("Create", create).code, Code::kOk);
  auto state = with_id<task::StateRequest>();
  task::StateResponse response;
  ASSERT_TRUE(response.ParseFromString(call("State", state).payload));
  EXPECT_TRUE(response.terminal());
  auto resize = with_id<task::ResizePtyRequest>();
  resize.set_width(120);
  resize.set_height(40);
  ASSERT_EQ(call("ResizePty", resize).code, Code::kOk);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  ASSERT_EQ(fake_.stream_terminals, std::vector<bool>{true});
  EXPECT_EQ(fake_.stream_sizes[0], std::make_pair(120, 40));
  EXPECT_TRUE(fake_.resizes.empty());
  std::string seen;
  ASSERT_TRUE(until([&] { return (seen += drain(stdout_reader_.get())) == "sh\n"; }));
  resize.set_width(132);
  resize.set_height(50);
  ASSERT_EQ(call("ResizePty", resize).code, Code::kOk);
  ASSERT_TRUE(until([&] { return fake_.resizes.size() == 1; }));
  EXPECT_EQ(fake_.resizes[0], std::make_pair(132, 50));
  resize.set_width(70000);
  EXPECT_EQ(call("ResizePty", resize).code, Code::kInvalidArgument);

  // An exec with a terminal: the spec's consoleSize is its initial size.
  auto exec = exec_request("e1", R"({"args": ["x"], "consoleSize": {"width": 90, "height": 20}})");
  exec.set_terminal(true);
  ASSERT_EQ(call("Exec", exec).code, Code::kOk);
  auto start = with_id<task::StartRequest>();
  start.set_exec_id("e1");
  ASSERT_EQ(call("Start", start).code, Code::kOk);
  ASSERT_EQ(fake_.stream_terminals, (std::vector<bool>{true, true}));
  EXPECT_EQ(fake_.stream_sizes[1], std::make_pair(90, 20));
  // Without a terminal, ResizePty is accepted and ignored, as runc's shim does.
  ASSERT_EQ(call("Exec", exec_request("e2", R"({"args": ["y"]})")).code, Code::kOk);
  resize.set_exec_id("e2");
  resize.set_width(10);
  EXPECT_EQ(call("ResizePty", resize).code, Code::kOk);
  start.set_exec_id("e2");
  ASSERT_EQ(call("Start", start).code, Code::kOk);
  EXPECT_EQ(fake_.stream_terminals[2], false);
  EXPECT_EQ(fake_.stream_sizes[2], std::make_pair(0, 0));
  resize.set_exec_id("e9");
  EXPECT_EQ(call("ResizePty", resize).code, Code::kNotFound);
}

TEST_F(TaskProcessesTest, PauseAndResumeFollowTheSandbox) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  EXPECT_EQ(call("Pause", with_id<task::PauseRequest>()).code, Code::kFailedPrecondition);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  EXPECT_EQ(call("Resume", with_id<task::ResumeRequest>()).code, Code::kFailedPrecondition);
  Result r = call("Pause", with_id<task::PauseRequest>());
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(fake_.pauses, 1);
  EXPECT_EQ(status(), containerd::v1::types::PAUSED);
  EXPECT_EQ(call("Pause", with_id<task::PauseRequest>()).code, Code::kFailedPrecondition);
  ASSERT_EQ(call("Exec", exec_request("e1", R"({"args": ["x"]})")).code, Code::kOk);
  auto start = with_id<task::StartRequest>();
  start.set_exec_id("e1");
  r = call("Start", start);
  EXPECT_EQ(r.code, Code::kFailedPrecondition);
  EXPECT_NE(r.message.find("paused"), std::string::npos) << r.message;
  ASSERT_EQ(call("Resume", with_id<task::ResumeRequest>()).code, Code::kOk);
  EXPECT_EQ(fake_.resumes, 1);
  EXPECT_EQ(status(), containerd::v1::types::RUNNING);
  EXPECT_EQ(call("Start", start).code, Code::kOk);
}

TEST_F(TaskProcessesTest, EventsArePublishedAsRuncsShimPublishesThem) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  ASSERT_EQ(call("Exec", exec_request("e1", R"({"args": ["x"]})")).code, Code::kOk);
  auto start = with_id<task::StartRequest>();
  start.set_exec_id("e1");
  ASSERT_EQ(call("Start", start).code, Code::kOk);
  EXPECT_EQ(wait_status("e1"), 0u);
  ASSERT_EQ(call("Pause", with_id<task::PauseRequest>()).code, Code::kOk);
  ASSERT_EQ(call("Resume", with_id<task::ResumeRequest>()).code, Code::kOk);
  auto kill = with_id<task::KillRequest>();
  kill.set_signal(15);
  ASSERT_EQ(call("Kill", kill).code, Code::kOk);
  EXPECT_EQ(wait_status(), 128u + 15);
  ASSERT_EQ(call("Delete", with_id<task::DeleteRequest>()).code, Code::kOk);
  EXPECT_EQ(events_, (Events{{"/tasks/create", "containerd.events.TaskCreate"},
                             {"/tasks/start", "containerd.events.TaskStart"},
                             {"/tasks/exec-added", "containerd.events.TaskExecAdded"},
                             {"/tasks/exec-started", "containerd.events.TaskExecStarted"},
                             {"/tasks/exit", "containerd.events.TaskExit"},
                             {"/tasks/paused", "containerd.events.TaskPaused"},
                             {"/tasks/resumed", "containerd.events.TaskResumed"},
                             {"/tasks/exit", "containerd.events.TaskExit"},
                             {"/tasks/delete", "containerd.events.TaskDelete"}}));
}

TEST_F(TaskProcessesTest, AProcessTheSandboxRefusesFailsItsStart) {
  write_config(R"({"process": {"args": ["missing"]}, "annotations": {"io.wisp.template": "e"}})");
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  Result r = call("Start", with_id<task::StartRequest>());
  EXPECT_EQ(r.code, Code::kFailedPrecondition);
  EXPECT_NE(r.message.find("did not run missing"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("no such command"), std::string::npos) << r.message;
  EXPECT_EQ(wait_status(), 255u);
}

TEST_F(TaskProcessesTest, CheckpointSnapshotsTheSandboxAndACreateFromItClonesTheSnapshot) {
  write_config(kSpec);
  ASSERT_EQ(create_with_stdin().code, Code::kOk);
  ASSERT_EQ(call("Start", with_id<task::StartRequest>()).code, Code::kOk);
  std::string dir = bundle_ + "/checkpoint";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  auto checkpoint = with_id<task::CheckpointTaskRequest>();
  checkpoint.set_path("relative");
  EXPECT_EQ(call("Checkpoint", checkpoint).code, Code::kInvalidArgument);
  checkpoint.set_path(dir);
  Result r = call("Checkpoint", checkpoint);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  ASSERT_EQ(fake_.snapshots.size(), 1u);
  EXPECT_EQ(fake_.snapshots[0].rfind("ckpt-", 0), 0u) << fake_.snapshots[0];
  CheckpointRecord record = read_checkpoint_record(dir);
  EXPECT_EQ(record.template_name, fake_.snapshots[0]);
  EXPECT_EQ(record.task_id, "ctr1");
  // serve's refusal reaches containerd with its message; nothing is written.
  fake_.snapshot_refused = true;
  std::string dir2 = bundle_ + "/checkpoint2";
  ASSERT_EQ(::mkdir(dir2.c_str(), 0700), 0);
  checkpoint.set_path(dir2);
  r = call("Checkpoint", checkpoint);
  EXPECT_EQ(r.code, Code::kInvalidArgument) << r.message;
  EXPECT_NE(r.message.find("exists"), std::string::npos) << r.message;
  EXPECT_NE(::access((dir2 + "/" + kCheckpointFile).c_str(), F_OK), 0);
  EXPECT_EQ(call("Checkpoint", with_id<task::CheckpointTaskRequest>("nope")).code, Code::kNotFound);

  // Another task created from the checkpoint directory runs in a clone of the snapshot.
  task::CreateTaskRequest create;
  create.set_id("ctr2");
  create.set_bundle(bundle_);
  create.set_checkpoint(dir);
  r = call("Create", create);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(fake_.created_template, fake_.snapshots[0]);
  // A directory without a wisp record (a runc/CRIU checkpoint) is refused by name.
  create.set_id("ctr3");
  create.set_checkpoint(dir2);
  r = call("Create", create);
  EXPECT_EQ(r.code, Code::kInvalidArgument);
  EXPECT_NE(r.message.find(kCheckpointFile), std::string::npos) << r.message;
}

}  // namespace
}  // namespace wisp::shim
