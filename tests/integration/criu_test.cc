// CRIU inside the guest (issue 17), end to end on the Python function guest
// (build/guest/python-rootfs.ext4, which carries Debian's criu; its kernel has the options
// criu needs): `criu check` passes through the agent, and a warm Python worker checkpointed in
// one VM (it keeps answering) is restored in a fresh VM, where its state continues without its
// initialisation running again. The VMs are `wisp run --rootfs` with the agent on the VM's
// vsock socket. Prints the dump and restore times and the image size.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "api/agent_client.h"
#include "tests/integration/wisp_runner.h"

extern char** environ;

namespace wisp::testing {
namespace {

using client::AgentClient;
using std::chrono::milliseconds;

std::string rootfs_image() {
  const char* p = std::getenv("WISP_ROOTFS_IMAGE");
  return p && *p ? p : guest_file("python-rootfs.ext4");
}

// A worker whose initialisation is slow (it sleeps) and which answers each call with a
// counter, the payload, how many "resumed" notices it got and a number from Python's random
// (reseeded from os.urandom by each notice, python_worker.py): "COUNT PAYLOAD rRESUMES X";
// the payload "probe" answers what it sees of the filesystem instead (not counted).
constexpr const char* kCounterWorker = R"(import sys, time, random
sys.path.insert(0, '/usr/lib/wisp')
import python_worker
time.sleep(2)
# A file in its private /tmp: a /tmp that holds something stays in the CRIU image (an empty one
# and /dev are rebuilt by the restoring agent, agent/criu_mounts.h); the probe shows both.
open('/tmp/init-marker', 'w').write('written at init')
count = [0]
resumes = [0]
python_worker.on_resume(lambda: resumes.__setitem__(0, resumes[0] + 1))
def probe():
    # What the worker sees of the guest: its mounts (with their options), whether the root is
    # writable, /run, /sys, its /dev and /tmp and whether they work.
    import os, stat
    mounts = []
    for l in open('/proc/self/mountinfo'):
        f, sb = l.split(' - ')
        f, sb = f.split(), sb.split()
        mounts.append('%s[%s|%s|%s]' % (f[4], f[5], sb[0], sb[2]))
    mounts.sort()
    dev = ','.join('%s:%o' % (n, os.lstat('/dev/' + n).st_mode) for n in sorted(os.listdir('/dev')))
    with open('/dev/urandom', 'rb') as r, open('/dev/null', 'wb') as n:
        n.write(r.read(8))
    open('/dev/shm/w', 'w').write('x')
    os.unlink('/dev/shm/w')
    tmp = '%s=%s' % (','.join(sorted(os.listdir('/tmp'))), open('/tmp/init-marker').read())
    try:
        open('/var/tmp/probe', 'w')
        root = 'rw'
    except OSError:
        root = 'ro'
    return 'mounts=%s root=%s run=%s sys=%s dev=%s tmp=%s' % (','.join(mounts), root,
        ','.join(sorted(os.listdir('/run'))), ','.join(sorted(os.listdir('/sys'))), dev, tmp)
def handle(payload):
    if payload == b'probe':
        return probe()
    count[0] += 1
    return '%d %s r%d %.17g' % (count[0], payload.decode(), resumes[0], random.random())
python_worker.serve(handle)
)";

// "COUNT PAYLOAD rRESUMES" and the random number of an answer.
struct Answer {
  std::string head;
  std::string random;
};
Answer parse(const std::string& out) {
  size_t sp = out.rfind(' ');
  if (sp == std::string::npos) return {out, ""};
  return {out.substr(0, sp), out.substr(sp + 1)};
}

client::Handler counter_handler() {
  client::Handler h;
  h.name = "counter";
  h.argv = {"python3", "-c", kCounterWorker};
  return h;
}

// One VM: `wisp run --rootfs IMAGE --vsock-uds SOCK`, shut down at the end.
class RootfsVm {
 public:
  RootfsVm() {
    char dir[] = "/tmp/wisp-criu-test-XXXXXX";
    if (mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = dir;
    sock_ = dir_ + "/vm.sock";
    std::vector<std::string> args = {
        wisp_binary(), "run",         "--rootfs", rootfs_image(), "--mem",
        "768",         "--vsock-uds", sock_,      "--console",    dir_ + "/console.log"};
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    if (posix_spawn(&vmm_, cargs[0], nullptr, nullptr, cargs.data(), environ) != 0)
      throw std::runtime_error("spawn wisp run");
    client::ConnectOptions o;
    o.uds_path = sock_;
    o.deadline = milliseconds(180000);
    pid_t pid = vmm_;
    o.keep_trying = [pid] { return kill(pid, 0) == 0 && waitpid(pid, nullptr, WNOHANG) == 0; };
    agent_ = AgentClient::connect(o);
  }
  ~RootfsVm() {
    try {
      agent_->shutdown();
    } catch (const std::exception&) {
    }
    agent_.reset();
    for (int i = 0; i < 1000 && waitpid(vmm_, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(milliseconds(10));
    kill(vmm_, SIGKILL);
    waitpid(vmm_, nullptr, 0);
    std::system(("rm -rf " + dir_).c_str());
  }
  AgentClient& agent() { return *agent_; }
  std::string console() {
    std::ifstream f(dir_ + "/console.log");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

 private:
  std::string dir_, sock_;
  pid_t vmm_ = 0;
  std::unique_ptr<AgentClient> agent_;
};

client::InvokeResult call(AgentClient& agent, const std::string& payload) {
  client::InvokeRequest r;
  r.mode = client::InvokeMode::kWorker;
  r.handler.name = "counter";
  r.payload = payload;
  r.timeout_ms = 60000;
  return agent.invoke(r);
}

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// The tests share one guest besides the dumping one, to keep the suite short (boots dominate
// it): the first test restores into it while it is fresh (no criu has run there, so the
// restore pays criu's first-run probes, as a real fallback does); the others use it after.
class CriuInGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct stat st;
    if (stat(rootfs_image().c_str(), &st) != 0)
      GTEST_SKIP() << rootfs_image() << " is missing: build it with 'make rootfs'";
  }
  static void TearDownTestSuite() { shared_.reset(); }
  static RootfsVm& shared_vm() {
    if (!shared_) shared_ = std::make_unique<RootfsVm>();
    return *shared_;
  }
  static std::unique_ptr<RootfsVm> shared_;
};
std::unique_ptr<RootfsVm> CriuInGuest::shared_;

TEST_F(CriuInGuest, WarmWorkerCheckpointedInOneVmContinuesInAFreshOne) {
  std::string image, unreseeded_random, sandbox_view;
  {
    RootfsVm vm;
    vm.agent().start_worker(counter_handler());
    auto r1 = call(vm.agent(), "a");
    ASSERT_EQ(parse(r1.out).head, "1 a r0") << r1.out << r1.err << r1.error;
    ASSERT_EQ(parse(call(vm.agent(), "b").out).head, "2 b r0");
    sandbox_view = call(vm.agent(), "probe").out;
    std::cout << "the worker's view: " << sandbox_view << std::endl;
    ASSERT_NE(sandbox_view.find("root=ro"), std::string::npos) << sandbox_view;
    ASSERT_NE(sandbox_view.find("/dev[ro,"), std::string::npos) << sandbox_view;
    ASSERT_NE(sandbox_view.find("tmp=init-marker=written at init"), std::string::npos)
        << sandbox_view;
    auto t0 = std::chrono::steady_clock::now();
    auto dump = vm.agent().checkpoint_worker(
        "counter", 0, [&image](const std::string& chunk) { image += chunk; });
    double host_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "criu dump: " << ms(dump.dump_ns) << " ms in the guest, send " << ms(dump.send_ns)
              << " ms, image " << dump.image_bytes << " bytes in " << dump.files
              << " files; checkpointWorker " << host_ms << " ms at the host" << std::endl;
    ASSERT_EQ(dump.image_bytes, image.size());
    ASSERT_EQ(image.compare(0, 8, "WISPCRI1"), 0);
    // criu's kernel feature cache travels with the image (agent/criu_kdat.h).
    EXPECT_NE(image.find("wisp-kdat-kernel"), std::string::npos);
    // --leave-running: the worker goes on answering in this VM.
    auto r3 = call(vm.agent(), "c");
    EXPECT_EQ(parse(r3.out).head, "3 c r0") << r3.out << r3.err << r3.error << "\nconsole:\n"
                                            << vm.console();
    // What the dumped state draws next without a reseed: a restore must not repeat it.
    unreseeded_random = parse(r3.out).random;
  }
  RootfsVm& fresh = shared_vm();
  size_t at = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto restored = fresh.agent().restore_worker(counter_handler(), [&image, &at]() {
    std::string chunk = image.substr(at, 1 << 20);
    at += chunk.size();
    return chunk;
  });
  fresh.agent().resumed("0123456789abcdef0123456789abcdef", 0);
  auto r = call(fresh.agent(), "d");
  double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "criu restore: upload " << ms(restored.upload_ns) << " ms, unpack "
            << ms(restored.unpack_ns) << " ms, criu restore " << ms(restored.restore_ns)
            << " ms; upload to first answer " << total_ms << " ms" << std::endl;
  // The count goes on from the dump (2), not from a new initialisation (which would say 1),
  // and the worker got one resumed notice, which reseeded its generator.
  Answer a = parse(r.out);
  EXPECT_EQ(a.head, "3 d r1") << r.out << r.err << r.error << "\nconsole:\n" << fresh.console();
  EXPECT_FALSE(a.random.empty());
  EXPECT_NE(a.random, unreseeded_random) << "the restored worker's random was not reseeded";
  EXPECT_EQ(parse(call(fresh.agent(), "e").out).head, "4 e r1");
  // The restored sandbox is the dumped one: the same mounts, a read-only root, and nothing of
  // the agent's /run or /sys (criu binds its --root recursively).
  EXPECT_EQ(call(fresh.agent(), "probe").out, sandbox_view);
}

TEST_F(CriuInGuest, CriuCheckPasses) {
  RootfsVm& vm = shared_vm();
  auto c = vm.agent().criu_check();
  std::cout << "criu: " << c.version << "\ncriu check:\n" << c.output << std::endl;
  EXPECT_TRUE(c.passed) << c.output << "\nconsole:\n" << vm.console();
  EXPECT_NE(c.version.find("Version: 3."), std::string::npos) << c.version;
}

// restoreWorkerFromDrive (agent/criu_drive.h) takes only /dev/vd[b-z], and only a block
// device that exists: this guest has its root filesystem (vda) and no other drive.
TEST_F(CriuInGuest, DriveRestoreRefusesWhatIsNotAnImageDrive) {
  RootfsVm& vm = shared_vm();
  client::Handler other = counter_handler();
  other.name = "from-drive";
  struct Case {
    const char* device;
    const char* why;
  } cases[] = {{"/dev/vda", "expected /dev/vd[b-z]"},  {"/dev/sda", "expected /dev/vd[b-z]"},
               {"/dev/vdb1", "expected /dev/vd[b-z]"}, {"/dev/vd/../vda", "expected /dev/vd"},
               {"", "expected /dev/vd[b-z]"},          {"/dev/vdb", "stat"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.device);
    try {
      vm.agent().restore_worker_from_drive(other, c.device);
      ADD_FAILURE() << "restored from " << c.device;
    } catch (const client::AgentError& e) {
      EXPECT_EQ(e.kind(), client::AgentError::Kind::kRemote);
      EXPECT_FALSE(e.unimplemented());
      EXPECT_NE(std::string(e.what()).find(c.why), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(vm.agent().ping().boot_id.empty());
}

TEST_F(CriuInGuest, DamagedUploadIsRefusedAndTheAgentStillAnswers) {
  RootfsVm& vm = shared_vm();
  client::Handler other = counter_handler();
  other.name = "damaged";  // the first test's worker may run in this guest
  std::string bad = "WISPCRI1";
  bad += std::string("\x05\x00\x00\x00../xx", 9);
  bool first = true;
  try {
    vm.agent().restore_worker(other, [&]() {
      std::string s = first ? bad : "";
      first = false;
      return s;
    });
    ADD_FAILURE() << "a damaged image was accepted";
  } catch (const client::AgentError& e) {
    EXPECT_NE(std::string(e.what()).find("not a valid CRIU image archive"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(vm.agent().ping().boot_id.empty());
}

}  // namespace
}  // namespace wisp::testing
