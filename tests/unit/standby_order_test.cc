// The standby VMM's order (api/standby_order.h): text and descriptor counts validated before a
// descriptor is used, over a real SOCK_SEQPACKET socketpair for the transport.
#include "api/standby_order.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <variant>
#include <vector>

#include "tests/unit/expect_error.h"

namespace wisp::standby {
namespace {

using testutil::expect_error;

RestoreOrder order(uint32_t layers, std::vector<bool> ro = {}, std::string dir = "/store/t") {
  RestoreOrder o;
  o.layers = layers;
  o.drive_read_only = std::move(ro);
  o.source_dir = std::move(dir);
  return o;
}

// The restore order `message` parses to (a boot order fails the test).
RestoreOrder restore_of(std::string_view message, size_t fds) {
  return std::get<RestoreOrder>(parse_order(message, fds));
}

TEST(StandbyOrder, EncodesAndParsesBack) {
  for (const RestoreOrder& o :
       {order(1), order(3, {true, false}), order(kMaxLayers, std::vector<bool>(kMaxDrives, true)),
        order(1, {}, "/a dir/with spaces")}) {
    std::string text = encode_order(o);
    EXPECT_EQ(restore_of(text, o.fd_count()), o) << text;
  }
  EXPECT_EQ(encode_order(order(2, {true, false})), "wisp-order/1 restore 2 ro,rw /store/t\n");
  EXPECT_EQ(encode_order(order(1)), "wisp-order/1 restore 1 - /store/t\n");
}

// The working set's descriptor comes last, announced by "ws" before the directory.
TEST(StandbyOrder, WorkingSetIsOptional) {
  RestoreOrder o = order(2, {true});
  o.working_set = true;
  EXPECT_EQ(o.fd_count(), 6u);
  EXPECT_EQ(encode_order(o), "wisp-order/1 restore 2 ro ws /store/t\n");
  EXPECT_EQ(restore_of(encode_order(o), 6), o);
  EXPECT_FALSE(restore_of("wisp-order/1 restore 1 - /ws /s\n", 2).working_set);
  EXPECT_EQ(restore_of("wisp-order/1 restore 1 - /ws /s\n", 2).source_dir, "/ws /s");
  expect_error([] { parse_order("wisp-order/1 restore 1 - ws /s\n", 2); },
               {"2 descriptors", "3 expected"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - ws\n", 3); }, {"absolute"});
}

// The written set's descriptor after the working set's, announced by "wr" after "ws" (and only
// there: before it, "wr" is the start of a relative directory, refused).
TEST(StandbyOrder, WrittenSetFollowsTheWorkingSet) {
  RestoreOrder o = order(2, {true});
  o.working_set = true;
  o.written_set = true;
  EXPECT_EQ(o.fd_count(), 7u);
  EXPECT_EQ(encode_order(o), "wisp-order/1 restore 2 ro ws wr /store/t\n");
  EXPECT_EQ(restore_of(encode_order(o), 7), o);
  expect_error([] { parse_order("wisp-order/1 restore 1 - wr /s\n", 3); }, {"absolute"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - ws wr /s\n", 3); },
               {"3 descriptors", "4 expected"});
  RestoreOrder alone = order(1);
  alone.written_set = true;
  expect_error([&] { encode_order(alone); }, {"without a working set"});
}

TEST(StandbyOrder, RefusesAWrongDescriptorCount) {
  expect_error([] { parse_order("wisp-order/1 restore 1 - /s\n", 1); },
               {"came with 1 descriptors, 2 expected"});
  expect_error([] { parse_order("wisp-order/1 restore 2 ro /s\n", 4); },
               {"4 descriptors, 5 expected"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - /s\n", 0); }, {"0 descriptors"});
}

TEST(StandbyOrder, RefusesCountsOutOfRange) {
  for (const char* bad : {"0", "18", "-1", "01", "4294967297", "1x", ""})
    expect_error([&] { parse_order(std::string("wisp-order/1 restore ") + bad + " - /s\n", 2); },
                 {"layer count"});
  std::string many = "ro";
  for (uint32_t i = 0; i < kMaxDrives; ++i) many += ",ro";
  expect_error([&] { parse_order("wisp-order/1 restore 1 " + many + " /s\n", 2 + kMaxDrives + 1); },
               {"more than 16 drives"});
  expect_error([] { encode_order(order(0)); }, {"0 layers"});
  expect_error([] { encode_order(order(1, std::vector<bool>(kMaxDrives + 1, true))); },
               {"17 drives"});
}

TEST(StandbyOrder, RefusesGarbage) {
  expect_error([] { parse_order("", 0); }, {"not one line"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - /s", 2); }, {"not one line"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - /s\nmore\n", 2); }, {"one line"});
  expect_error([] { parse_order(std::string("wisp-order/1 restore 1 - /s\0x\n", 31), 2); },
               {"one line"});
  expect_error([] { parse_order("wisp-order/2 restore 1 - /s\n", 2); }, {"wisp-order/1"});
  expect_error([] { parse_order("wisp-order/1 reboot 1 - /s\n", 2); },
               {"\"restore\" and \"boot\", not \"reboot\""});
  expect_error([] { parse_order("wisp-order/1 restore 1\n", 2); }, {"drive modes missing"});
  expect_error([] { parse_order("wisp-order/1 restore 1 rx /s\n", 3); }, {"neither ro nor rw"});
  expect_error([] { parse_order("wisp-order/1 restore 1 ro, /s\n", 3); }, {"neither ro nor rw"});
  expect_error([] { parse_order("wisp-order/1 restore 1 -\n", 2); }, {"not an absolute path"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - rel/dir\n", 2); }, {"absolute"});
  expect_error([] { parse_order("wisp-order/1 restore 1 - /a\tb\n", 2); }, {"control character"});
  expect_error([] { parse_order(std::string(kMaxOrderBytes + 1, 'a'), 0); }, {"over the limit"});
  expect_error([] { encode_order(order(1, {}, "/" + std::string(kMaxOrderBytes, 'd'))); },
               {"too long"});
  // A long store path (a deep WISP_HOME) still fits: the order is not what limits it.
  std::string deep = "/" + std::string(1000, 'd') + "/snapshot";
  EXPECT_EQ(restore_of(encode_order(order(1, {}, deep)), 2).source_dir, deep);
}

BootOrder boot(uint32_t mem_mib, uint32_t vcpus, std::vector<bool> ro = {}, bool initrd = true,
               std::string cmdline = "quiet") {
  BootOrder o;
  o.mem_mib = mem_mib;
  o.vcpus = vcpus;
  o.drive_read_only = std::move(ro);
  o.initrd = initrd;
  o.cmdline = std::move(cmdline);
  return o;
}

BootOrder boot_of(std::string_view message, size_t fds) {
  return std::get<BootOrder>(parse_order(message, fds));
}

TEST(StandbyBootOrder, EncodesAndParsesBack) {
  BootOrder all = boot(512, 2, {true, false}, true, "quiet wisp.x=1");
  all.rootfs = all.raw_cmdline = true;
  all.rng = false;
  all.huge_pages = false;
  all.portable = true;
  for (const BootOrder& o : {boot(256, 1), boot(16, 1, {}, false, ""), all,
                             boot(65536, 254, std::vector<bool>(kMaxDrives, false), true,
                                  std::string(kMaxCmdlineBytes, 'c'))}) {
    std::string text = encode_order(o);
    EXPECT_EQ(boot_of(text, o.fd_count()), o) << text;
  }
  EXPECT_EQ(encode_order(boot(256, 1)), "wisp-order/1 boot 256 1 - initrd quiet\n");
  EXPECT_EQ(encode_order(all),
            "wisp-order/1 boot 512 2 ro,rw initrd,rootfs,raw,norng,nohuge,portable quiet "
            "wisp.x=1\n");
  EXPECT_EQ(encode_order(boot(16, 1, {}, false, "")), "wisp-order/1 boot 16 1 - - \n");
  // No command line at all: the line may end at the flags.
  EXPECT_EQ(boot_of("wisp-order/1 boot 16 1 - -\n", 1), boot(16, 1, {}, false, ""));
  EXPECT_EQ(boot(1, 1, {true}, true).fd_count(), 3u);
}

TEST(StandbyBootOrder, RefusesAWrongDescriptorCount) {
  expect_error([] { boot_of("wisp-order/1 boot 256 1 - initrd quiet\n", 1); },
               {"came with 1 descriptors, 2 expected (the kernel, the initrd if flagged"});
  expect_error([] { boot_of("wisp-order/1 boot 256 1 ro,rw - quiet\n", 4); },
               {"4 descriptors, 3 expected"});
  expect_error([] { boot_of("wisp-order/1 boot 256 1 - -\n", 0); }, {"0 descriptors"});
}

TEST(StandbyBootOrder, RefusesSizesOutOfRange) {
  for (const char* bad : {"0", "15", "65537", "-1", "0256", "256M", ""})
    expect_error([&] { parse_order(std::string("wisp-order/1 boot ") + bad + " 1 - -\n", 1); },
                 {"guest memory (MiB)"});
  for (const char* bad : {"0", "255", "01", "x"})
    expect_error([&] { parse_order(std::string("wisp-order/1 boot 256 ") + bad + " - -\n", 1); },
                 {"vCPU count"});
  expect_error([] { encode_order(boot(8, 1)); }, {"guest memory 8 MiB is not 16 to 65536"});
  expect_error([] { encode_order(boot(256, 0)); }, {"0 vCPUs"});
}

TEST(StandbyBootOrder, RefusesABadCommandLine) {
  std::string over(kMaxCmdlineBytes + 1, 'c');
  expect_error([&] { parse_order("wisp-order/1 boot 256 1 - - " + over + "\n", 1); },
               {"command line is 2048 bytes, over the kernel's limit of 2047"});
  expect_error([&] { encode_order(boot(256, 1, {}, true, over)); }, {"2048 bytes"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - - a\tb\n", 1); },
               {"not printable ASCII"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - - caf\xc3\xa9\n", 1); },
               {"not printable ASCII"});
  constexpr char kNul[] = "wisp-order/1 boot 256 1 - - a\0b\n";
  expect_error([&] { parse_order(std::string(kNul, sizeof(kNul) - 1), 1); }, {"one line"});
}

TEST(StandbyBootOrder, RefusesBadModesAndFlags) {
  expect_error([] { parse_order("wisp-order/1 boot 256 1\n", 1); }, {"drive modes missing"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 -\n", 1); }, {"boot flags missing"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 xx - q\n", 1); }, {"neither ro nor rw"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - initrd,big q\n", 2); },
               {"boot flag \"big\" is none of"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - initrd,initrd q\n", 2); },
               {"\"initrd\" given twice"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - norng,norng q\n", 1); },
               {"given twice"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - nohuge,norng,nohuge q\n", 1); },
               {"\"nohuge\" given twice"});
  EXPECT_FALSE(boot_of("wisp-order/1 boot 256 1 - nohuge q\n", 1).huge_pages);
  EXPECT_TRUE(boot_of("wisp-order/1 boot 256 1 - norng q\n", 1).huge_pages);
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - , q\n", 1); }, {"boot flag \"\""});
  // The rootfs is drive 0, read-only.
  expect_error([] { parse_order("wisp-order/1 boot 256 1 - rootfs q\n", 1); },
               {"rootfs needs drive 0, read-only"});
  expect_error([] { parse_order("wisp-order/1 boot 256 1 rw rootfs q\n", 2); },
               {"rootfs needs drive 0"});
  EXPECT_TRUE(boot_of("wisp-order/1 boot 256 1 ro,rw rootfs q\n", 3).rootfs);
}

// A socketpair as a standby has it: the order and its descriptors arrive together, and every
// descriptor of a refused order is closed.
class StandbyOrderSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    manager_.reset(sv[0]);
    vmm_.reset(sv[1]);
  }
  static int open_count() {
    int n = 0;
    for (int fd = 0; fd < 1024; ++fd) n += fcntl(fd, F_GETFD) >= 0 ? 1 : 0;
    return n;
  }
  UniqueFd manager_, vmm_;
};

TEST_F(StandbyOrderSocket, CarriesTheOrderAndItsFiles) {
  UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC)), b(open("/dev/zero", O_RDONLY | O_CLOEXEC));
  send_message(manager_.get(), encode_order(order(1)), {a.get(), b.get()});
  ReceivedOrder got = receive_order(vmm_.get());
  EXPECT_EQ(std::get<RestoreOrder>(got.order), order(1));
  ASSERT_EQ(got.fds.size(), 2u);
  struct stat sa, sb, ga, gb;
  ASSERT_EQ(fstat(a.get(), &sa), 0);
  ASSERT_EQ(fstat(b.get(), &sb), 0);
  ASSERT_EQ(fstat(got.fds[0].get(), &ga), 0);
  ASSERT_EQ(fstat(got.fds[1].get(), &gb), 0);
  EXPECT_EQ(sa.st_rdev, ga.st_rdev);  // same files, same order
  EXPECT_EQ(sb.st_rdev, gb.st_rdev);
  EXPECT_EQ(fcntl(got.fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST_F(StandbyOrderSocket, ClosesTheFilesOfARefusedOrder) {
  UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int before = open_count();
  send_message(manager_.get(), encode_order(order(1)), {a.get(), a.get(), a.get()});
  expect_error([&] { receive_order(vmm_.get()); }, {"3 descriptors, 2 expected"});
  send_message(manager_.get(), "garbage\n", {a.get()});
  expect_error([&] { receive_order(vmm_.get()); }, {"wisp-order/1"});
  EXPECT_EQ(open_count(), before);
}

TEST_F(StandbyOrderSocket, RefusesAnOversizedMessageAndTooManyFiles) {
  send_message(manager_.get(), std::string(kMaxOrderBytes + 50, 'x'));
  expect_error([&] { receive_order(vmm_.get()); }, {"over the limit"});
  // More descriptors than an order can carry: cut by the kernel (MSG_CTRUNC), then refused.
  UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::vector<int> many(kMaxOrderFds + 1, a.get());
  int before = open_count();
  // send_message refuses this itself; send it raw as a hostile manager would.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxOrderFds + 1))] = {};
  std::string text = encode_order(order(1));
  iovec iov{text.data(), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * many.size());
  memcpy(CMSG_DATA(c), many.data(), sizeof(int) * many.size());
  ASSERT_EQ(sendmsg(manager_.get(), &msg, 0), static_cast<ssize_t>(text.size()));
  expect_error([&] { receive_order(vmm_.get()); },
               {"more than " + std::to_string(kMaxOrderFds) + " descriptors"});
  EXPECT_EQ(open_count(), before);
  expect_error([&] { send_message(manager_.get(), text, many); }, {"too many descriptors"});
}

TEST_F(StandbyOrderSocket, EndOfFileCancels) {
  manager_.reset();
  expect_error<OrderCancelled>([&] { receive_order(vmm_.get()); }, {"closed the order socket"});
}

}  // namespace
}  // namespace wisp::standby
