// containerd-shim-wisp-v2's command line: Go flag syntax as containerd writes it, the socket
// address containerd's shims derive (sha256 of filepath.Join(address, namespace, id)), and the
// built binary run the way containerd runs it: `start` prints only the address and leaves a
// serving process behind it (a second start finds it), a Task client connects to that socket,
// Shutdown ends it, and `delete` prints a DeleteResponse and removes the socket.
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/file_io.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "scoped_env.h"
#include "shim/oci_process.h"
#include "shim/shim_options.h"
#include "shim/socket_address.h"
#include "shim/task_service.h"
#include "shim/ttrpc_client.h"

namespace wisp::shim {
namespace {

ShimOptions parse(std::vector<const char*> args) {
  args.insert(args.begin(), "containerd-shim-wisp-v2");
  return parse_shim_options(static_cast<int>(args.size()), args.data());
}

TEST(ShimOptions, ContainerdStartLine) {
  ShimOptions o =
      parse({"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
             "-publish-binary", "/usr/bin/containerd", "-id", "abc", "-debug", "start"});
  EXPECT_EQ(o.ns, "k8s.io");
  EXPECT_EQ(o.address, "/run/containerd/containerd.sock");
  EXPECT_EQ(o.publish_binary, "/usr/bin/containerd");
  EXPECT_EQ(o.id, "abc");
  EXPECT_TRUE(o.debug);
  EXPECT_EQ(o.action, "start");
}

TEST(ShimOptions, GoFlagSpellings) {
  ShimOptions o = parse({"--namespace=ns", "-id=x", "-bundle", "/b", "-debug=false", "delete"});
  EXPECT_EQ(o.ns, "ns");
  EXPECT_EQ(o.id, "x");
  EXPECT_EQ(o.bundle, "/b");
  EXPECT_FALSE(o.debug);
  EXPECT_EQ(o.action, "delete");
  EXPECT_EQ(parse({"-id", "x"}).action, "");  // the serving mode
  EXPECT_TRUE(parse({"-v"}).version);
}

TEST(ShimOptions, MistakesAreUsageErrors) {
  EXPECT_THROW(parse({"-nosuch", "x"}), UsageError);
  EXPECT_THROW(parse({"-id"}), UsageError);
  EXPECT_THROW(parse({"-debug=maybe"}), UsageError);
  EXPECT_THROW(parse({"-id", "x", "frobnicate"}), UsageError);
  EXPECT_THROW(parse({"start", "extra"}), UsageError);
  EXPECT_THROW(parse({"---id", "x"}), UsageError);
}

TEST(ShimSocketAddress, CleansLikeGo) {
  EXPECT_EQ(clean_path(""), ".");
  EXPECT_EQ(clean_path("/a//b/./c/"), "/a/b/c");
  EXPECT_EQ(clean_path("/a/b/../../.."), "/");
  EXPECT_EQ(clean_path("a/../../b"), "../b");
  EXPECT_EQ(join_path({"/run/c.sock", "", "ns", "id"}), "/run/c.sock/ns/id");
  EXPECT_EQ(join_path({"/run/c.sock/", "../x", "id"}), "/run/x/id");
}

TEST(ShimSocketAddress, MatchesContainerdsDerivation) {
  // sha256("/run/containerd/containerd.sock/default/abc"), as containerd 1.6's
  // shim.SocketAddress computes it.
  EXPECT_EQ(socket_address("/run/containerd", "/run/containerd/containerd.sock", "default", "abc"),
            "unix:///run/containerd/s/"
            "8cb244a719603fe00870d5ce1d8e1f1db43a654cb993d107df1f1ae23ddffa59");
  EXPECT_EQ(socket_path("unix:///run/x/s/ab"), "/run/x/s/ab");
}

TEST(OciProcess, GoEscapedCharactersArriveUnchanged) {
  // encoding/json, which containerd writes config.json with, escapes <, > and & as \u003c,
  // \u003e, \u0026; capnp 0.9's decoder alone would turn them into other characters.
  OciProcess p =
      parse_oci_process(R"({"process": {"args": ["sh", "-c", "echo x \u003e\u00262 \u003c y", )"
                        R"("\u00e9\u20ac\ud83d\ude00", "q\"b\\s\n\t\u0022\u005c\u000a"],)"
                        R"( "env": ["A=\u0026"]}})");
  ASSERT_EQ(p.args.size(), 5u);
  EXPECT_EQ(p.args[2], "echo x >&2 < y");
  EXPECT_EQ(p.args[3], "\u00e9\u20ac\U0001F600");
  EXPECT_EQ(p.args[4], "q\"b\\s\n\t\"\\\n");
  EXPECT_EQ(p.env, (std::vector<std::string>{"A=&"}));
  EXPECT_THROW(parse_oci_process(R"({"process": {"args": ["\u0001"]}})"), Error);
  EXPECT_THROW(parse_oci_process(R"({"process": {"args": ["\ud83d"]}})"), Error);
  EXPECT_THROW(parse_oci_process(R"({"process": {"args": ["\u12"]}})"), Error);
}

// Runs `command` through sh in `dir`; its stdout (and stderr when `with_stderr`) and status.
std::pair<std::string, int> run(const std::string& dir, const std::string& command,
                                bool with_stderr) {
  std::string line = "cd '" + dir + "' && " + command + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = ::popen(line.c_str(), "r");
  if (p == nullptr) return {"", -1};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

class ShimBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wisp-shim-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bundle_ = dir_ + "/bundle";
    ASSERT_EQ(::mkdir(bundle_.c_str(), 0700), 0);
    // The serving process is start's child: this test adopts it, as containerd does.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  void TearDown() override {
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  std::string flags() const {
    return std::string(WISP_SHIM_BINARY) + " -namespace default -address " + dir_ +
           "/containerd.sock -publish-binary /bin/false -id task1";
  }

  ttrpc::Result call(kj::AsyncIoContext& io, const std::string& path, const std::string& method,
                     const google::protobuf::MessageLite& request) {
    auto stream = io.provider->getNetwork()
                      .parseAddress("unix:" + path)
                      .then([](kj::Own<kj::NetworkAddress> a) { return a->connect(); })
                      .wait(io.waitScope);
    ttrpc::Client client(*stream);
    std::string bytes;
    request.SerializeToString(&bytes);
    return client.call(TaskService::kService, method, bytes).wait(io.waitScope);
  }

  std::string dir_, bundle_;
  testutil::ScopedEnv root_{"WISP_SHIM_SOCKET_ROOT", nullptr};
};

TEST_F(ShimBinaryTest, StartServeShutdownDelete) {
  testutil::ScopedEnv root("WISP_SHIM_SOCKET_ROOT", (dir_ + "/state").c_str());
  std::string expected =
      socket_address(dir_ + "/state", dir_ + "/containerd.sock", "default", "task1");
  std::string path = socket_path(expected);

  auto [out, status] = run(bundle_, flags() + " start", /*with_stderr=*/true);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out, expected) << "start printed more than the address";
  EXPECT_EQ(read_file(bundle_ + "/address"), expected);
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto io = kj::setupAsyncIo();
  containerd::task::v2::ConnectRequest connect;
  connect.set_id("task1");
  ttrpc::Result r = call(io, path, "Connect", connect);
  ASSERT_EQ(r.code, ttrpc::Code::kOk) << r.message;
  containerd::task::v2::ConnectResponse connected;
  ASSERT_TRUE(connected.ParseFromString(r.payload));
  pid_t shim_pid = static_cast<pid_t>(connected.shim_pid());
  EXPECT_GT(shim_pid, 0);
  EXPECT_NE(shim_pid, ::getpid());

  // A second start for the same task finds the running shim.
  auto [again, status2] = run(bundle_, flags() + " start", true);
  EXPECT_EQ(status2, 0) << again;
  EXPECT_EQ(again, expected);
  r = call(io, path, "Connect", connect);
  ASSERT_TRUE(connected.ParseFromString(r.payload));
  EXPECT_EQ(static_cast<pid_t>(connected.shim_pid()), shim_pid);

  containerd::task::v2::CreateTaskRequest create;
  create.set_id("task1");
  create.set_bundle(bundle_);
  r = call(io, path, "Create", create);  // a bundle without config.json
  EXPECT_EQ(r.code, ttrpc::Code::kInvalidArgument);
  EXPECT_NE(r.message.find("config.json"), std::string::npos) << r.message;

  containerd::task::v2::ShutdownRequest shutdown;
  shutdown.set_id("task1");
  EXPECT_EQ(call(io, path, "Shutdown", shutdown).code, ttrpc::Code::kOk);
  int wstatus = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  pid_t reaped = 0;
  while (reaped == 0 && std::chrono::steady_clock::now() < deadline) {
    reaped = ::waitpid(shim_pid, &wstatus, WNOHANG);
    if (reaped == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(reaped, shim_pid) << "the shim did not exit after Shutdown";
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  EXPECT_NE(::lstat(path.c_str(), &st), 0) << "the shim left its socket";

  // delete: a DeleteResponse on stdout, and the socket of a shim that died is removed.
  auto [out3, status3] = run(bundle_, flags() + " start", true);
  ASSERT_EQ(status3, 0) << out3;
  r = call(io, path, "Connect", connect);
  ASSERT_TRUE(connected.ParseFromString(r.payload));
  pid_t second = static_cast<pid_t>(connected.shim_pid());
  ASSERT_EQ(::kill(second, SIGKILL), 0);
  ASSERT_EQ(::waitpid(second, &wstatus, 0), second);
  auto [deleted, status4] = run(dir_, flags() + " -bundle " + bundle_ + " delete", false);
  ASSERT_EQ(status4, 0);
  containerd::task::v2::DeleteResponse response;
  ASSERT_TRUE(response.ParseFromString(deleted));
  EXPECT_EQ(response.exit_status(), 137u);
  EXPECT_GT(response.exited_at().seconds(), 0);
  EXPECT_NE(::lstat(path.c_str(), &st), 0) << "delete left the dead shim's socket";
}

TEST_F(ShimBinaryTest, ServingModeWithoutItsSocketAndBadFlagsFailClearly) {
  auto [out, status] = run(bundle_, flags() + " 3</dev/null", true);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("not a listening socket"), std::string::npos) << out;
  auto [out2, status2] = run(bundle_, std::string(WISP_SHIM_BINARY) + " -bogus start", true);
  EXPECT_EQ(status2, 2);
  EXPECT_NE(out2.find("flag provided but not defined: -bogus"), std::string::npos) << out2;
  auto [out3, status3] = run(bundle_, std::string(WISP_SHIM_BINARY) + " -id x start", true);
  EXPECT_EQ(status3, 1);
  EXPECT_NE(out3.find("-namespace is required"), std::string::npos) << out3;
}

}  // namespace
}  // namespace wisp::shim
