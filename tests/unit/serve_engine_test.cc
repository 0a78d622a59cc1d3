// wisp serve's engine pieces that need no KVM: admission (limits, queueing, deadlines, the
// drain), the sandbox registry's time to live and owners, the latency histogram, the allowed
// directories of template specs, scratch paths, --warm's value and the socket's peer check.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "manager/service/admission.h"
#include "manager/service/allowed_dirs.h"
#include "manager/service/peer_check.h"
#include "manager/service/sandbox_registry.h"
#include "manager/service/scratch_path.h"
#include "manager/service/serve.h"
#include "manager/service/service_stats.h"
#include "manager/service/warm_option.h"

namespace wisp::service {
namespace {

using kj::MILLISECONDS;

std::string description(kj::Promise<kj::Own<Ticket>>& p, kj::WaitScope& ws) {
  try {
    p.wait(ws);
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "";
}

TEST(AdmissionTest, CountsVmsAndMemoryAndGivesThemBack) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {2, 1000, 0});
  auto t1 = a.acquire("f", 300, 10 * MILLISECONDS).wait(io.waitScope);
  auto t2 = a.acquire("g", 300, 10 * MILLISECONDS).wait(io.waitScope);
  EXPECT_EQ(a.vms(), 2u);
  EXPECT_EQ(a.memory_mib(), 600u);
  EXPECT_EQ(a.in_use("f"), 1u);
  t1 = nullptr;
  EXPECT_EQ(a.vms(), 1u);
  EXPECT_EQ(a.memory_mib(), 300u);
  EXPECT_EQ(a.in_use("f"), 0u);
}

TEST(AdmissionTest, WaitsUpToTheDeadlineThenOverloaded) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {1, 0, 0});
  auto held = a.acquire("f", 128, 10 * MILLISECONDS).wait(io.waitScope);
  auto waiting = a.acquire("f", 128, 30 * MILLISECONDS);
  EXPECT_EQ(a.waiting(), 1u);
  std::string d = description(waiting, io.waitScope);
  EXPECT_EQ(d.rfind("overloaded: ", 0), 0u) << d;
  EXPECT_NE(d.find("--max-vms 1"), std::string::npos) << d;
  EXPECT_EQ(a.vms(), 1u);  // never over the budget
  EXPECT_EQ(a.waiting(), 0u);
}

TEST(AdmissionTest, AReleaseAdmitsTheNextInLine) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {0, 512, 0});
  auto held = a.acquire("f", 400, 10 * MILLISECONDS).wait(io.waitScope);
  auto next = a.acquire("f", 200, 5000 * MILLISECONDS);
  auto release = io.provider->getTimer()
                     .afterDelay(20 * MILLISECONDS)
                     .then([&] { held = nullptr; })
                     .eagerlyEvaluate(nullptr);
  auto t = next.wait(io.waitScope);
  EXPECT_EQ(a.memory_mib(), 200u);
  EXPECT_EQ(t->mem_mib(), 200u);
}

TEST(AdmissionTest, ARequestLargerThanTheBudgetFailsAtOnce) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {0, 256, 0});
  EXPECT_THROW(a.acquire("big", 512, 10000 * MILLISECONDS), kj::Exception);
}

TEST(AdmissionTest, ThePoolsReserveIsNeverAdmitted) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {0, 512, 0, /*reserved_mib=*/64});
  EXPECT_EQ(a.memory_mib(), 64u);  // committed from the start
  auto t = a.acquire("f", 400, 10 * MILLISECONDS).wait(io.waitScope);
  EXPECT_EQ(a.memory_mib(), 464u);
  auto over = a.acquire("f", 64, 10 * MILLISECONDS);  // 464 + 64 > 512
  std::string d = description(over, io.waitScope);
  EXPECT_NE(d.find("464 MiB of --max-memory 512"), std::string::npos) << d;
  try {
    a.acquire("big", 500, 10000 * MILLISECONDS);  // 500 fits 512, not 512 less the reserve
    ADD_FAILURE() << "admitted past the reserve";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("64 MiB held for the pool"),
              std::string::npos)
        << e.getDescription().cStr();
  }
}

TEST(AdmissionTest, PerTemplateLimitLetsOtherTemplatesPass) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {0, 0, 1});
  auto f1 = a.acquire("f", 1, 10 * MILLISECONDS).wait(io.waitScope);
  auto f2 = a.acquire("f", 1, 2000 * MILLISECONDS);                   // waits: f is at its limit
  auto g1 = a.acquire("g", 1, 10 * MILLISECONDS).wait(io.waitScope);  // passes it
  EXPECT_EQ(a.in_use("g"), 1u);
  EXPECT_EQ(a.waiting(), 1u);
  EXPECT_TRUE(a.try_acquire("h", 1) == nullptr);  // warm clones never jump the queue
  f1 = nullptr;
  auto t = f2.wait(io.waitScope);
  EXPECT_EQ(a.in_use("f"), 1u);
}

TEST(AdmissionTest, DrainFailsWaiters) {
  auto io = kj::setupAsyncIo();
  Admission a(io.provider->getTimer(), {1, 0, 0});
  auto held = a.acquire("f", 1, 10 * MILLISECONDS).wait(io.waitScope);
  auto waiting = a.acquire("f", 1, 10000 * MILLISECONDS);
  a.fail_waiters("draining: bye");
  EXPECT_EQ(description(waiting, io.waitScope), "draining: bye");
}

TEST(SandboxRegistryTest, ExpiresAfterItsTimeToLive) {
  auto io = kj::setupAsyncIo();
  SandboxRegistry r(io.provider->getTimer());
  std::string id = r.add(kj::refcounted<SandboxEntry>(), 50);
  EXPECT_EQ(id.rfind("sb-", 0), 0u);
  EXPECT_EQ(id.size(), 3u + 24u);
  EXPECT_TRUE(r.contains(id));
  io.provider->getTimer().afterDelay(400 * MILLISECONDS).wait(io.waitScope);
  EXPECT_FALSE(r.contains(id));
  EXPECT_THROW(r.get(id), kj::Exception);
}

TEST(SandboxRegistryTest, SetTimeoutExtendsIt) {
  auto io = kj::setupAsyncIo();
  SandboxRegistry r(io.provider->getTimer());
  std::string id = r.add(kj::refcounted<SandboxEntry>(), 50);
  r.set_timeout(id, 60000);
  io.provider->getTimer().afterDelay(300 * MILLISECONDS).wait(io.waitScope);
  EXPECT_TRUE(r.contains(id));
  EXPECT_THROW(r.set_timeout(id, 0), kj::Exception);
}

TEST(SandboxRegistryTest, TheLastOwnerEndsItUnlessDetached) {
  auto io = kj::setupAsyncIo();
  SandboxRegistry r(io.provider->getTimer());
  std::string owned = r.add(kj::refcounted<SandboxEntry>(), 60000);
  auto d = kj::refcounted<SandboxEntry>();
  d->detached = true;
  std::string detached = r.add(kj::mv(d), 60000);
  r.add_owner(owned);
  r.add_owner(owned);
  r.add_owner(detached);
  r.drop_owner(owned);
  EXPECT_TRUE(r.contains(owned));
  r.drop_owner(owned);
  EXPECT_FALSE(r.contains(owned));
  r.drop_owner(detached);
  EXPECT_TRUE(r.contains(detached));
  auto ref = r.get(detached);
  EXPECT_TRUE(r.kill(detached));
  EXPECT_EQ(ref->state, "dead");  // a call holding it sees it dead
  EXPECT_FALSE(r.kill(detached));
}

TEST(HistogramTest, CumulativeBucketsPrometheusStyle) {
  Histogram h;
  h.observe(0.0005);  // <= 1 ms
  h.observe(0.001);   // the bound itself counts in its bucket (le)
  h.observe(0.003);
  h.observe(100);  // +Inf
  auto c = h.cumulative();
  ASSERT_EQ(c.size(), Histogram::bounds().size() + 1);
  EXPECT_EQ(c[0], 2u);
  EXPECT_EQ(c[1], 2u);  // 2.5 ms
  EXPECT_EQ(c[2], 3u);  // 5 ms
  EXPECT_EQ(c[c.size() - 2], 3u);
  EXPECT_EQ(c.back(), 4u);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_NEAR(h.sum(), 100.0045, 1e-9);
}

TEST(ServiceStatsTest, OutcomesAndErrorWords) {
  ServiceStats s;
  s.observe("total", 12);
  s.observe("bogus", 1);
  EXPECT_EQ(s.stages().size(), 1u);
  EXPECT_EQ(s.stages().at("total").count(), 1u);
  s.count("f", "ok");
  s.count("f", "ok");
  EXPECT_EQ(s.outcomes().at("f").at("ok"), 2u);
  EXPECT_EQ(outcome_of_error("overloaded: full"), "overloaded");
  EXPECT_EQ(outcome_of_error("remote exception: vm-failed: died"), "vm_failed");
  EXPECT_EQ(outcome_of_error("not-found: x"), "error");
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/wisp-serve-test-XXXXXX";
    path_ = mkdtemp(t);
  }
  ~TempDir() { remove_tree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(AllowedDirsTest, OnlyFilesUnderAnAllowedDirectory) {
  TempDir allowed, other;
  std::ofstream(allowed.path() + "/vmlinux") << "x";
  std::ofstream(other.path() + "/secret") << "x";
  ASSERT_EQ(::symlink((other.path() + "/secret").c_str(), (allowed.path() + "/link").c_str()), 0);
  AllowedDirs dirs({allowed.path()});
  EXPECT_EQ(dirs.check("kernel", allowed.path() + "/vmlinux"), allowed.path() + "/vmlinux");
  EXPECT_EQ(dirs.check_drive("drives", allowed.path() + "/vmlinux,ro"),
            allowed.path() + "/vmlinux,ro");
  auto refused = [&](const std::string& path) {
    try {
      dirs.check("rootfs", path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(refused(other.path() + "/secret").find("not under an allowed directory"),
            std::string::npos);
  // A symlink inside that leads out, and a ".." walk out, are both resolved first.
  EXPECT_NE(refused(allowed.path() + "/link").find("not under"), std::string::npos);
  EXPECT_NE(refused(allowed.path() + "/../" + other.path().substr(5) + "/secret").find("not under"),
            std::string::npos);
  EXPECT_EQ(refused("relative/file").rfind("bad-request: rootfs", 0), 0u);
  EXPECT_EQ(refused(allowed.path() + "/missing").rfind("bad-request: rootfs", 0), 0u);
}

TEST(AllowedDirsTest, PathIsUnderIsComponentWise) {
  EXPECT_TRUE(path_is_under("/a/b/c", "/a/b"));
  EXPECT_TRUE(path_is_under("/a/b", "/a/b"));
  EXPECT_FALSE(path_is_under("/a/bc", "/a/b"));
  EXPECT_FALSE(path_is_under("/a", "/a/b"));
  EXPECT_TRUE(path_is_under("/x", "/"));
}

TEST(ScratchPathTest, RelativeWithoutDotDot) {
  EXPECT_EQ(scratch_path_problem("a.txt"), "");
  EXPECT_EQ(scratch_path_problem("dir/a.txt"), "");
  EXPECT_NE(scratch_path_problem(""), "");
  EXPECT_NE(scratch_path_problem("/etc/passwd"), "");
  EXPECT_NE(scratch_path_problem("../x"), "");
  EXPECT_NE(scratch_path_problem("a/../../x"), "");
  EXPECT_NE(scratch_path_problem("a//b"), "");
  EXPECT_NE(scratch_path_problem("a/"), "");
  EXPECT_NE(scratch_path_problem("./a"), "");
  EXPECT_NE(scratch_path_problem(std::string("a\0b", 3)), "");
  EXPECT_NE(scratch_path_problem(std::string(5000, 'a')), "");
}

TEST(WarmOptionTest, NameEqualsCount) {
  std::map<std::string, uint32_t> warm;
  parse_warm_option("hello=4", &warm);
  parse_warm_option("py.fn-2=1", &warm);
  EXPECT_EQ(warm.at("hello"), 4u);
  EXPECT_EQ(warm.at("py.fn-2"), 1u);
  EXPECT_THROW(parse_warm_option("hello", &warm), Error);
  EXPECT_THROW(parse_warm_option("hello=0", &warm), Error);
  EXPECT_THROW(parse_warm_option("hello=x", &warm), Error);
  EXPECT_THROW(parse_warm_option("../x=1", &warm), Error);
  EXPECT_THROW(parse_warm_option("=1", &warm), Error);
  EXPECT_THROW(parse_warm_option("hello=99999", &warm), Error);
}

TEST(PeerCheckTest, OwnUidPassesAnotherIsRefused) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::string why;
  EXPECT_TRUE(peer_allowed(a.get(), ::geteuid(), &why)) << why;
  if (::geteuid() != 0) {
    EXPECT_FALSE(peer_allowed(a.get(), ::geteuid() + 1, &why));
    EXPECT_NE(why.find("only uid"), std::string::npos);
  }
  // Not a socket: refused with the reason.
  UniqueFd not_socket(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_FALSE(peer_allowed(not_socket.get(), ::geteuid(), &why));
}

TEST(ServeSocketTest, Mode0600AndAStaleSocketIsReplacedALiveOneIsNot) {
  TempDir d;
  std::string path = d.path() + "/serve.sock";
  {
    UniqueFd first(listen_unix_socket(path));
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_THROW(listen_unix_socket(path), Error);  // something listens: kept
  }
  UniqueFd again(listen_unix_socket(path));  // stale now: replaced
  EXPECT_TRUE(again);
}

}  // namespace
}  // namespace wisp::service
