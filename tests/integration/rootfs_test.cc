// The Python function guest end to end: `wisp exec --rootfs build/guest/python-rootfs.ext4`
// boots wisp-agent as init from the Debian image (guest/build-rootfs.sh), read-only, with the
// agent's tmpfs overlay as the root. Each test boots its own VM (as a user of wisp exec would).
// Skips only when the image is missing (`make rootfs`; `make all` builds it).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <sstream>

#include "tests/integration/wisp_runner.h"

namespace wisp::testing {
namespace {

// WISP_ROOTFS_IMAGE overrides the image (e.g. one built elsewhere).
std::string rootfs_image() {
  const char* p = std::getenv("WISP_ROOTFS_IMAGE");
  return p && *p ? p : guest_file("python-rootfs.ext4");
}

std::string sha256_of(const std::string& path) {
  ProcessResult r = run_process({"/usr/bin/sha256sum", path}, {}, 120);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  return r.out.substr(0, 64);
}

class PythonRootfs : public ::testing::Test {
 protected:
  void SetUp() override {
    struct stat st;
    if (stat(rootfs_image().c_str(), &st) != 0)
      GTEST_SKIP() << rootfs_image() << " is missing: build it with 'make rootfs' (part of "
                   << "'make all')";
  }
  // `wisp exec --rootfs IMAGE [args] -- cmd...` with `input` on stdin.
  ProcessResult exec(const std::vector<std::string>& args, const std::string& input = "") {
    std::vector<std::string> argv = {wisp_binary(),  "exec",  "--rootfs",
                                     rootfs_image(), "--mem", "256"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, {{"", input}}, 300);
  }
};

TEST_F(PythonRootfs, Python3Prints42) {
  auto r = exec({"--", "python3", "-c", "print(6*7)"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "42\n") << describe(r);
}

TEST_F(PythonRootfs, PythonIsDebiansAndTheAgentRunsFromTheImage) {
  auto r = exec({"--", "/usr/bin/python3", "-c",
                 "import os, sys; print(sys.executable, sys.version_info[:2] >= (3, 11), "
                 "os.path.exists('/usr/sbin/wisp-agent'), "
                 "os.path.exists('/usr/lib/wisp/python_worker.py'))"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "/usr/bin/python3 True True True\n") << describe(r);
}

// The root is the agent's overlay (tmpfs upper over the read-only image). A handler sees it
// through its sandbox, which remounts / read-only for the handler (agent/sandbox.h): the
// handler writes to its private /tmp, and its write under / is refused there. The image file
// is the same byte for byte after the VM has run.
TEST_F(PythonRootfs, WritesStayInTheVmAndTheImageIsUnchanged) {
  std::string before = sha256_of(rootfs_image());
  const char* script = R"(
import errno
with open('/tmp/scratch.txt', 'w') as f:
    f.write('written in the guest')
print(open('/tmp/scratch.txt').read())
try:
    open('/wisp-root-probe', 'w')
    print('root write: ok')
except OSError as e:
    print('root write:', errno.errorcode[e.errno])
for line in open('/proc/self/mountinfo'):
    fields = line.split()
    if fields[4] == '/':
        fs = line.split(' - ')[1].split()
        print('root fs:', fs[0], 'rw' in fs[2].split(','), 'upperdir=' in fs[2])
)";
  auto r = exec({"--", "python3", "-c", script});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("written in the guest\n"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("root write: EROFS\n"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("root fs: overlay True True\n"), std::string::npos) << describe(r);
  EXPECT_EQ(sha256_of(rootfs_image()), before) << "the VM changed the base image";
}

// A warm Python worker (guest/runtimes/python_worker.py, api/worker_protocol.md): state kept
// across three invocations of one worker.
TEST_F(PythonRootfs, WarmPythonWorkerKeepsStateAcrossInvocations) {
  const char* worker = R"(
import sys
sys.path.insert(0, '/usr/lib/wisp')
import python_worker
calls = 0
def handle(payload):
    global calls
    calls += 1
    return b'%d:' % calls + payload[::-1]
python_worker.serve(handle)
)";
  auto r = exec({"--mode", "worker", "--repeat", "3", "--", "python3", "-c", worker}, "olleh");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "3:hello") << describe(r);
}

TEST_F(PythonRootfs, ShippedPythonWorkerRuntimeAnswers) {
  auto r = exec({"--mode", "worker", "--", "python3", "/usr/lib/wisp/python_worker.py"},
                "payload from the host");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "PAYLOAD FROM THE HOST") << describe(r);
}

}  // namespace
}  // namespace wisp::testing
