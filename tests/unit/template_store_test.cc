#include "manager/template_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/file_io.h"
#include "base/hex.h"
#include "base/unique_fd.h"
#include "manager/runtime_dir.h"
#include "manager/template_rebuild.h"
#include "snapshot/crc64.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/scoped_env.h"

namespace wisp::manager {
namespace {

namespace fs = std::filesystem;
using Words = std::vector<std::string>;

using wisp::testutil::expect_error;
using wisp::testutil::ScopedEnv;

TEST(SplitCommand, SplitsOnWhitespace) {
  EXPECT_EQ(split_command("python3 -c pass"), (Words{"python3", "-c", "pass"}));
  EXPECT_EQ(split_command("  a\t b\n c  "), (Words{"a", "b", "c"}));
  EXPECT_EQ(split_command(""), Words{});
  EXPECT_EQ(split_command(" \t\n"), Words{});
}

TEST(SplitCommand, Quotes) {
  EXPECT_EQ(split_command("echo 'a b' \"c d\""), (Words{"echo", "a b", "c d"}));
  EXPECT_EQ(split_command("x'y z'w"), Words{"xy zw"});   // quotes join with the word around them
  EXPECT_EQ(split_command("'' \"\""), (Words{"", ""}));  // empty quoted words are words
  EXPECT_EQ(split_command("'a \"b\" \\c'"), Words{"a \"b\" \\c"});  // nothing special in '...'
  EXPECT_EQ(split_command("\"it's\""), Words{"it's"});
}

TEST(SplitCommand, Escapes) {
  EXPECT_EQ(split_command("a\\ b c"), (Words{"a b", "c"}));
  EXPECT_EQ(split_command("\\'x\\\""), Words{"'x\""});
  EXPECT_EQ(split_command("\\\\"), Words{"\\"});
  // Inside "...", backslash escapes only " \ $ and `; before anything else it stays.
  EXPECT_EQ(split_command("\"a\\\"b\\\\c\\$d\\`e\\nf\""), Words{"a\"b\\c$d`e\\nf"});
}

TEST(SplitCommand, RefusesUnterminatedQuotes) {
  expect_error([] { split_command("echo 'abc"); }, {"unterminated '", "echo 'abc"});
  expect_error([] { split_command("echo \"abc"); }, {"unterminated \""});
  expect_error([] { split_command("\"abc\\\""); }, {"unterminated \""});  // the quote is escaped
  expect_error([] { split_command("\"abc\\"); }, {"unterminated \""});
}

TemplateInfo sample_info() {
  TemplateInfo t;
  t.name = "py-hello";
  t.mode = "worker";
  t.argv = {"python3", "-c", "print('a b')", ""};
  t.env = {"A=1", "EMPTY=", "SPACES=x y"};
  t.mem_mib = 256;
  t.vcpus = 2;
  t.guest = "build/guest/bzImage + build/guest/python-rootfs.ext4";
  t.warmup = 3;
  t.created_unix = 1700000000;
  t.snapshot_ms = 12.5;
  t.memory_file_bytes = 256ull << 20;
  t.memory_disk_bytes = 40ull << 20;
  return t;
}

void expect_same(const TemplateInfo& a, const TemplateInfo& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.argv, b.argv);
  EXPECT_EQ(a.env, b.env);
  EXPECT_EQ(a.mem_mib, b.mem_mib);
  EXPECT_EQ(a.vcpus, b.vcpus);
  EXPECT_EQ(a.guest, b.guest);
  EXPECT_EQ(a.warmup, b.warmup);
  EXPECT_EQ(a.created_unix, b.created_unix);
  EXPECT_DOUBLE_EQ(a.snapshot_ms, b.snapshot_ms);
  EXPECT_EQ(a.memory_file_bytes, b.memory_file_bytes);
  EXPECT_EQ(a.memory_disk_bytes, b.memory_disk_bytes);
  EXPECT_EQ(a.parent, b.parent);
  EXPECT_EQ(a.net, b.net);
  EXPECT_EQ(a.network, b.network);
  EXPECT_EQ(a.portable, b.portable);
}

TEST(TemplateInfo, RoundTrips) {
  TemplateInfo t = sample_info();
  std::string text = format_template_info(t);
  EXPECT_NE(text.find("name py-hello\n"), std::string::npos);
  EXPECT_NE(text.find("arg python3\narg -c\narg print('a b')\narg \n"), std::string::npos);
  expect_same(parse_template_info(text, "t.info"), t);
  t.mode = "exec";
  t.env.clear();
  t.guest.clear();
  expect_same(parse_template_info(format_template_info(t), "t.info"), t);
}

TEST(TemplateInfo, AForkRecordsItsParent) {
  TemplateInfo t = sample_info();
  EXPECT_EQ(format_template_info(t).find("parent"), std::string::npos);  // only forks have one
  t.parent = "py-base";
  std::string file = encode_template_info(t);
  EXPECT_NE(file.find("\nparent py-base\n"), std::string::npos);
  expect_same(decode_template_info(file, "t.info"), t);
  // Checksummed like the rest: an edited parent is a damaged file.
  std::string edited = file;
  edited.replace(edited.find("py-base"), 7, "py-evil");
  expect_error([&] { decode_template_info(edited, "t.info"); }, {"checksum mismatch"});
  expect_error([] { parse_template_info("arg x\nparent ../etc\n", "t.info"); },
               {"t.info:2: parent", "template name"});
}

TEST(TemplateInfo, CarriesItsNetworkAsGiven) {
  TemplateInfo t = sample_info();
  EXPECT_EQ(format_template_info(t).find("net"), std::string::npos);  // none: as before
  t.net.nets = {"tap=wtap0,mac=02:00:00:00:00:07,ip=10.77.0.2/24,gw=10.77.0.1", "tap=wtap1"};
  t.net.allow = {"10.0.0.0/8:443"};
  t.net.dns = {"10.77.0.1"};
  t.network = true;
  std::string file = encode_template_info(t);
  EXPECT_NE(file.find("\nnet tap=wtap0,mac=02:00:00:00:00:07,ip=10.77.0.2/24,gw=10.77.0.1\n"
                      "net tap=wtap1\nnet_allow 10.0.0.0/8:443\nnet_dns 10.77.0.1\nnetwork 1\n"),
            std::string::npos);
  expect_same(decode_template_info(file, "t.info"), t);
  // Clones restore with the NICs in order, as given.
  EXPECT_EQ(vmm_restore_net_args(t.net), (Words{"--net", t.net.nets[0], "--net", "tap=wtap1"}));
  EXPECT_TRUE(vmm_restore_net_args(VmNet{}).empty());
  expect_error([] { parse_template_info("arg x\nnet\n", "t.info"); }, {"t.info:2: net: empty"});
}

TEST(TemplateInfo, AFileFromBeforeNetworksLoadsWithNone) {
  // template.info's lines as wisp wrote them before NICs were recorded.
  TemplateInfo t = parse_template_info(
      "name py\nmode worker\narg python3\ndrive /img/rootfs.ext4,ro\nmem_mib 256\nvcpus 1\n"
      "guest default kernel, rootfs /img/rootfs.ext4\nwarmup 1\ncreated_unix 1700000000\n"
      "snapshot_ms 30.5\nmemory_file_bytes 268435456\nmemory_disk_bytes 1048576\n",
      "t.info");
  EXPECT_EQ(t.drives, Words{"/img/rootfs.ext4,ro"});
  EXPECT_TRUE(t.net.empty());
  EXPECT_FALSE(t.network);
  EXPECT_TRUE(vmm_restore_net_args(t.net).empty());
}

TEST(TemplateInfo, RecordsAPortableCpu) {
  TemplateInfo t = sample_info();
  EXPECT_EQ(format_template_info(t).find("portable"), std::string::npos);  // absent: as before
  t.portable = true;
  std::string file = encode_template_info(t);
  EXPECT_NE(file.find("\nportable 1\n"), std::string::npos);
  expect_same(decode_template_info(file, "t.info"), t);
  EXPECT_FALSE(parse_template_info("arg x\nportable 0\n", "t.info").portable);
  expect_error([] { parse_template_info("arg x\nportable yes\n", "t.info"); },
               {"t.info:2: portable: expected a number"});
}

TEST(TemplateInfo, RecordsAContainersHandlerSandbox) {
  TemplateInfo t = sample_info();
  t.mode = "exec";
  EXPECT_EQ(format_template_info(t).find("sandbox"), std::string::npos);  // none: as before
  // A ctr- template's (shim/snapshot_start.h): the container's root drive, cwd, ids, limits.
  client::Handler h;
  h.root_device = "/dev/vda";
  h.cwd = "/srv/app";
  h.uid = 0;
  h.gid = 10;
  h.additional_gids = {1, 2};
  h.limits.memory_bytes = 128ull << 20;
  h.limits.cpu_time_ms = 5000;
  TemplateSandbox sb;
  ASSERT_TRUE(template_sandbox_of(h, &sb));
  EXPECT_FALSE(template_sandbox_of(client::Handler{}, &sb)) << "the defaults record nothing";
  ASSERT_TRUE(template_sandbox_of(h, &sb));
  t.sandbox = sb;
  std::string file = encode_template_info(t);
  EXPECT_NE(file.find("\nsandbox_root /dev/vda\nsandbox_cwd /srv/app\nsandbox_ids 0 10 1,2\n"
                      "sandbox_limits 134217728 64 5000 256\n"),
            std::string::npos)
      << file;
  TemplateInfo back = decode_template_info(file, "t.info");
  ASSERT_TRUE(back.sandbox.has_value());
  // A call built from it asks for the same sandbox (what invoke_request_for applies).
  client::Handler call;
  apply_template_sandbox(*back.sandbox, &call);
  EXPECT_EQ(call.root_device, "/dev/vda");
  EXPECT_EQ(call.cwd, "/srv/app");
  EXPECT_EQ((std::vector<uint32_t>{call.uid, call.gid}), (std::vector<uint32_t>{0, 10}));
  EXPECT_EQ(call.additional_gids, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(call.limits.memory_bytes, 128ull << 20);
  EXPECT_EQ(call.limits.pids, 64u);
  EXPECT_EQ(call.limits.cpu_time_ms, 5000u);
  EXPECT_EQ(call.limits.open_files, 256u);
  // No cwd and no groups: the lines say so.
  h.cwd.clear();
  h.additional_gids.clear();
  ASSERT_TRUE(template_sandbox_of(h, &sb));
  t.sandbox = sb;
  back = parse_template_info(format_template_info(t), "t.info");
  EXPECT_EQ(back.sandbox->cwd, "");
  EXPECT_TRUE(back.sandbox->additional_gids.empty());
  // Each value is checked, the line named.
  expect_error([] { parse_template_info("arg x\nsandbox_root /dev/sda\n", "t.info"); },
               {"t.info:2: sandbox_root", "/dev/vdX"});
  expect_error([] { parse_template_info("arg x\nsandbox_cwd tmp\n", "t.info"); },
               {"t.info:2: sandbox_cwd", "absolute"});
  expect_error([] { parse_template_info("arg x\nsandbox_ids 0\n", "t.info"); },
               {"t.info:2: sandbox_ids"});
  expect_error([] { parse_template_info("arg x\nsandbox_ids 0 -1\n", "t.info"); },
               {"t.info:2: sandbox_ids gid", "expected a number"});
  expect_error([] { parse_template_info("arg x\nsandbox_ids 0 0 1,,2\n", "t.info"); },
               {"sandbox_ids group"});
  expect_error([] { parse_template_info("arg x\nsandbox_limits 1 2 3\n", "t.info"); },
               {"t.info:2: sandbox_limits"});
  expect_error([] { parse_template_info("arg x\nsandbox_limits 1024 64 0 256\n", "t.info"); },
               {"memory under 1 MiB"});
  expect_error([] { parse_template_info("arg x\nsandbox_limits 1048576 64 0 2\n", "t.info"); },
               {"open files under 3"});
  expect_error([] { parse_template_info("mode worker\narg x\nsandbox_root /dev/vda\n", "t.info"); },
               {"only an exec-mode template"});
}

TEST(TemplateInfo, RefusesNewlinesInValues) {
  TemplateInfo t = sample_info();
  t.argv.push_back("two\nlines");
  expect_error([&] { format_template_info(t); }, {"template py-hello", "arg", "newline"});
}

TEST(TemplateInfo, ParseErrorsNameTheFileAndLine) {
  expect_error([] { parse_template_info("arg x\nmem_mib 12x\n", "/t/template.info"); },
               {"/t/template.info:2: mem_mib: expected a number, got \"12x\""});
  expect_error([] { parse_template_info("arg x\n\nvcpus\n", "f"); }, {"f:3: vcpus"});
  expect_error([] { parse_template_info("warmup -1\narg x\n", "f"); }, {"f:1: warmup"});
  expect_error([] { parse_template_info("memory_file_bytes 99999999999999999999999\n", "f"); },
               {"f:1: memory_file_bytes"});
}

TEST(TemplateInfo, IgnoresUnknownKeysAndBlankLines) {
  TemplateInfo t =
      parse_template_info("name n\nfrom_the_future 1 2 3\n\narg run\nmode exec\nlonely_key\n", "f");
  EXPECT_EQ(t.name, "n");
  EXPECT_EQ(t.argv, Words{"run"});
  EXPECT_EQ(t.mode, "exec");
  EXPECT_EQ(t.vcpus, 1u);  // defaults where a key is absent
  EXPECT_EQ(t.mem_mib, 0u);
}

TEST(TemplateInfo, RefusesABadModeAndAMissingCommand) {
  expect_error([] { parse_template_info("arg x\nmode fork\n", "f.info"); },
               {"f.info", "mode \"fork\"", "exec or worker"});
  expect_error([] { parse_template_info("arg x\nmode\n", "f.info"); }, {"mode \"\""});
  expect_error([] { parse_template_info("name n\nmode exec\n", "f.info"); },
               {"f.info", "no handler command"});
  expect_error([] { parse_template_info("", "f.info"); }, {"no handler command"});
}

TEST(TemplateName, AcceptsAndRejects) {
  for (const std::string& ok : Words{"a", "py-hello", "v1.2_x", "A9", "a.", std::string(64, 'n')})
    EXPECT_NO_THROW(check_template_name(ok)) << ok;
  for (const std::string& bad : Words{"", ".hidden", "..", ".", "a/b", "../x", "a b", "é", "a\nb",
                                      std::string("x\0y", 3), std::string(65, 'n')}) {
    expect_error([&] { check_template_name(bad); }, {"template name"});
  }
}

TEST(TemplateStore, HomeComesFromWispHome) {
  {
    ScopedEnv env("WISP_HOME", "/srv/wisp");
    EXPECT_EQ(wisp_home(), "/srv/wisp");
    EXPECT_EQ(templates_dir(), "/srv/wisp/templates");
  }
  {
    ScopedEnv env("WISP_HOME", "");
    EXPECT_EQ(wisp_home(), "/var/lib/wisp");
  }
  ScopedEnv env("WISP_HOME", nullptr);
  EXPECT_EQ(wisp_home(), "/var/lib/wisp");
  EXPECT_EQ(templates_dir(), "/var/lib/wisp/templates");
}

class TemplateStoreDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("wisp-templates-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(TemplateStoreDirTest, MakeDirsAndRemoveTree) {
  std::string deep = root_ / "a/b/c";
  make_dirs(deep);
  EXPECT_TRUE(fs::is_directory(deep));
  make_dirs(deep);  // already there: fine
  make_dirs(deep + "/");
  std::ofstream(deep + "/file") << "x";
  fs::create_symlink("/", root_ / "a/link-to-root");
  ASSERT_EQ(::mkfifo((root_ / "a/b/fifo").c_str(), 0600), 0);
  remove_tree(root_ / "a");
  EXPECT_FALSE(fs::exists(root_ / "a"));
  EXPECT_TRUE(fs::exists("/"));    // the symlink went, not what it pointed at
  remove_tree(root_ / "missing");  // nothing to do
  remove_tree(root_);
  EXPECT_FALSE(fs::exists(root_));
}

TEST_F(TemplateStoreDirTest, MakeDirsRefusesAFileInTheWay) {
  make_dirs(root_);
  std::ofstream(root_ / "file") << "x";
  expect_error([&] { make_dirs(root_ / "file/sub"); }, {"create directory", "file/sub"});
  expect_error([&] { make_dirs(root_ / "file"); }, {"file"});
}

TEST_F(TemplateStoreDirTest, ReadTemplateFindsTheStore) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  expect_error([] { read_template("nope"); },
               {"template nope: not found in " + (root_ / "templates").string()});
  expect_error([] { read_template("../etc"); }, {"template name"});
  TemplateInfo t = sample_info();
  make_dirs(root_ / "templates/py-hello");
  std::ofstream(root_ / "templates/py-hello/template.info") << encode_template_info(t);
  expect_same(read_template("py-hello"), t);
  make_dirs(root_ / "templates/broken");
  const std::string body = "arg x\nvcpus many\n";
  std::ofstream(root_ / "templates/broken/template.info")
      << body << "crc64 "
      << hex(snapshot::crc64({reinterpret_cast<const uint8_t*>(body.data()), body.size()})) << "\n";
  expect_error([&] { read_template("broken"); },
               {(root_ / "templates/broken/template.info").string() + ":2: vcpus"});
}

TEST_F(TemplateStoreDirTest, StagingBecomesTheTemplateOnlyWhenCommitted) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  TemplateInfo t = sample_info();
  {
    TemplateStaging abandoned(t.name);
    make_dirs(abandoned.snapshot_dir());
    EXPECT_EQ(template_names(), Words{});  // hidden while it is being made
  }
  EXPECT_TRUE(fs::is_empty(root_ / "templates"));  // removed
  {
    TemplateStaging staging(t.name);
    make_dirs(staging.snapshot_dir());
    staging.commit(t);
  }
  EXPECT_EQ(template_names(), Words{t.name});
  expect_same(read_template(t.name), t);
  EXPECT_TRUE(fs::is_directory(template_snapshot_dir(t.name)));
  expect_error([&] { TemplateStaging again(t.name); }, {"already exists"});
  remove_template(t.name);
  EXPECT_EQ(template_names(), Words{});
  expect_error([&] { remove_template(t.name); }, {"not found"});
  expect_error([] { remove_template("../x"); }, {"template name"});
}

// A removed template's rebuild log and lock go with it; a lock a rebuild holds stays.
TEST_F(TemplateStoreDirTest, RemovingATemplateRemovesItsRebuildLogAndFreeLock) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  TemplateInfo t = sample_info();
  auto make = [&] {
    TemplateStaging staging(t.name);
    make_dirs(staging.snapshot_dir());
    staging.commit(t);
    write_file_atomic(rebuild_log_path(t.name), "log\n", 0600);
    write_file_atomic((root_ / "templates" / ("." + t.name + ".rebuild-lock")).string(), "", 0600);
  };
  fs::path lock = root_ / "templates" / ("." + t.name + ".rebuild-lock");
  make();
  remove_template(t.name);
  EXPECT_FALSE(fs::exists(rebuild_log_path(t.name)));
  EXPECT_FALSE(fs::exists(lock));
  make();
  UniqueFd held(::open(lock.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(held);
  ASSERT_EQ(::flock(held.get(), LOCK_EX | LOCK_NB), 0);
  remove_template(t.name);
  EXPECT_FALSE(fs::exists(rebuild_log_path(t.name)));
  EXPECT_TRUE(fs::exists(lock));  // a rebuild still runs: it owns the file
}

mode_t mode_of(const fs::path& p) {
  struct stat st;
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Makes template `t` the way template create does, `how` its publication.
void make_template(const TemplateInfo& t, bool rebuild = false, NoReplace how = NoReplace::kAuto) {
  TemplateStaging staging(t.name, rebuild);
  make_dirs(staging.snapshot_dir());
  staging.commit(t, how);
}

TEST_F(TemplateStoreDirTest, TheStoreIsCreatedPrivateAndRefusedWhenItIsNot) {
  ScopedEnv env("WISP_HOME", (root_ / "home").c_str());
  ::umask(022);
  make_template(sample_info());
  EXPECT_EQ(mode_of(root_ / "home"), 0700u);
  EXPECT_EQ(mode_of(root_ / "home/templates"), 0700u);
  struct stat st;
  ASSERT_EQ(::lstat((root_ / "home/templates/py-hello").c_str(), &st), 0);
  ASSERT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(mode_of(root_ / "home/templates/py-hello/template.info"), 0600u);

  ASSERT_EQ(::chmod((root_ / "home/templates").c_str(), 0770), 0);
  for (auto call : std::vector<std::function<void()>>{
           [] { read_template("py-hello"); }, [] { template_names(); },
           [] { remove_template("py-hello"); }, [] { TemplateStaging s("other"); }})
    expect_error(call,
                 {(root_ / "home/templates").string(), "writable by group or others", "refused"});
  ASSERT_EQ(::chmod((root_ / "home/templates").c_str(), 0700), 0);
  ASSERT_EQ(::chmod((root_ / "home").c_str(), 0702), 0);
  expect_error([] { read_template("py-hello"); }, {(root_ / "home").string(), "writable"});
  ASSERT_EQ(::chmod((root_ / "home").c_str(), 0700), 0);
  EXPECT_NO_THROW(read_template("py-hello"));
}

TEST_F(TemplateStoreDirTest, AStoreOwnedBySomeoneElseIsRefused) {
  fs::create_directories(root_ / "home/templates");
  std::string foreign = (root_ / "home").string();
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
  } else {
    foreign = "/";  // root's, and this test does not run as root
  }
  ScopedEnv env("WISP_HOME", foreign.c_str());
  expect_error([] { template_names(); },
               {"template store " + foreign + " is owned by uid", "not by this user", "refused"});
}

TEST_F(TemplateStoreDirTest, ADamagedTemplateInfoIsRefused) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  TemplateInfo t = sample_info();
  make_template(t);
  fs::path info = root_ / "templates/py-hello/template.info";
  std::string good = encode_template_info(t);
  EXPECT_NE(good.find("\ncrc64 "), std::string::npos);
  { std::ofstream(info, std::ios::trunc) << good.substr(0, good.size() / 2); }
  expect_error([] { read_template("py-hello"); },
               {"template.info: no checksum line", "re-create the template"});
  { std::ofstream(info, std::ios::trunc) << "XXXX" << good.substr(4); }
  expect_error([] { read_template("py-hello"); }, {"template.info: checksum mismatch"});
  {
    // Every line but one env line, the checksum intact: a lost environment.
    std::string dropped = good;
    dropped.erase(dropped.find("env A=1\n"), 8);
    std::ofstream(info, std::ios::trunc) << dropped;
  }
  expect_error([] { read_template("py-hello"); }, {"checksum mismatch"});
  std::ofstream(info, std::ios::trunc) << good;
  expect_same(read_template("py-hello"), t);
}

TEST_F(TemplateStoreDirTest, TheRenameFallbackNeverReplacesAnExistingTemplate) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  TemplateInfo first = sample_info(), second = sample_info();
  second.argv = {"second"};
  make_template(first, false, NoReplace::kForceFallback);
  expect_same(read_template(first.name), first);
  // Two runs that both saw no template: the one that publishes second fails.
  TemplateStaging a("race"), b("race");
  make_dirs(a.snapshot_dir());
  make_dirs(b.snapshot_dir());
  first.name = second.name = "race";
  a.commit(first, NoReplace::kForceFallback);
  expect_error([&] { b.commit(second, NoReplace::kForceFallback); }, {"race already exists"});
  expect_same(read_template("race"), first);
}

TEST_F(TemplateStoreDirTest, ARebuildSwapsGenerationsUnderCallsInFlight) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  TemplateInfo v1 = sample_info(), v2 = sample_info();
  v2.argv = {"v2"};
  make_template(v1);
  expect_error([&] { make_template(v2); }, {"already exists", "--rebuild"});
  std::optional<OpenTemplate> in_flight = open_template(v1.name);
  std::ofstream(in_flight->snapshot_dir + "/state") << "v1 state";
  make_template(v2, /*rebuild=*/true);
  // The call in flight keeps its generation, whole; new calls get the new one.
  expect_same(in_flight->info, v1);
  EXPECT_TRUE(fs::exists(in_flight->snapshot_dir + "/state"));
  OpenTemplate now = open_template(v1.name);
  expect_same(now.info, v2);
  EXPECT_NE(now.dir, in_flight->dir);
  EXPECT_EQ(template_names(), Words{v1.name});
  std::string old_dir = in_flight->dir;
  in_flight.reset();
  remove_store_leftovers();  // the next use of the store
  EXPECT_FALSE(fs::exists(old_dir));
  EXPECT_TRUE(fs::exists(now.dir));
}

TEST_F(TemplateStoreDirTest, LeftoversOfACrashedRunAreRemovedAtTheNextUse) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  make_template(sample_info());
  fs::path store = root_ / "templates";
  for (const char* left : {".a.tmp-crash1", ".a.rm-4242", ".py-hello.gen-oldgen", ".x.tmp-crash2"})
    fs::create_directories(store / left / "snapshot");
  fs::create_symlink("/etc", store / ".a.tmp-crash1" / "etc");
  TemplateStaging busy("busy");  // locked: in use
  TemplateInfo other = sample_info();
  other.name = "other";
  make_template(other);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(store)) left.push_back(e.path().filename());
  std::sort(left.begin(), left.end());
  ASSERT_EQ(left.size(), 5u) << ::testing::PrintToString(left);
  EXPECT_TRUE(left[0].starts_with(".busy.tmp-"));
  EXPECT_TRUE(left[1].starts_with(".other.gen-"));
  EXPECT_TRUE(left[2].starts_with(".py-hello.gen-"));
  EXPECT_NE(left[2], ".py-hello.gen-oldgen");
  EXPECT_EQ(left[3], "other");
  EXPECT_EQ(left[4], "py-hello");
  EXPECT_TRUE(fs::exists("/etc/passwd"));
}

TEST_F(TemplateStoreDirTest, ASymlinkOutOfTheStoreIsNotATemplate) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  make_dirs(root_ / "templates");
  ::chmod((root_ / "templates").c_str(), 0700);
  fs::create_symlink("/etc", root_ / "templates/evil");
  expect_error([] { read_template("evil"); },
               {"template evil", "points at \"/etc\"", "not at one of its generations"});
}

TEST(RuntimeDir, IsPrivateAndRemovedWithItsFiles) {
  std::string path;
  {
    RuntimeDir dir("wisp-test");
    path = dir.path();
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(dir.file("vmm.log"), path + "/vmm.log");
    std::ofstream(dir.file("vmm.log")) << "x";
  }
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace wisp::manager
