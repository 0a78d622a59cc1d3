// The pure parts of a VM's own network (manager/host_net/): the address plan per slot, --allow
// parsing and its messages, the ruleset text the kernel is given, and the bare `--net` beside
// `--net tap=` on the command line, and wisp-vmm's --netns-fd. The kernel side runs in
// tests/integration/netns_test.py.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/options.h"
#include "cli/common_options.h"
#include "manager/host_net/address_plan.h"
#include "manager/host_net/egress_rule.h"
#include "manager/host_net/ruleset.h"
#include "manager/vm_spec.h"
#include "tests/unit/expect_error.h"
#include "vmm/main/jail_setup.h"

namespace wisp::host_net {
namespace {

TEST(AddressPlan, EachSlotHasItsOwnSlash30AndLinkName) {
  SlotAddresses s0 = slot_addresses(0);
  EXPECT_EQ(s0.host_veth, "wv0");
  EXPECT_EQ(s0.host_address, "10.200.0.1");
  EXPECT_EQ(s0.ns_address, "10.200.0.2");
  SlotAddresses s7 = slot_addresses(7);
  EXPECT_EQ(s7.host_veth, "wv7");
  EXPECT_EQ(s7.host_address, "10.200.0.29");
  EXPECT_EQ(s7.ns_address, "10.200.0.30");
  SlotAddresses s64 = slot_addresses(64);
  EXPECT_EQ(s64.host_address, "10.200.1.1");
  SlotAddresses last = slot_addresses(kMaxSlots - 1);
  EXPECT_EQ(last.host_veth, "wv16383");  // fits IFNAMSIZ
  EXPECT_EQ(last.ns_address, "10.200.255.254");
  testutil::expect_error<Error>([] { slot_addresses(kMaxSlots); }, {"no free network slot"});
}

TEST(AddressPlan, TheGuestSideIsTheSameInEveryVm) {
  EXPECT_EQ(guest_net_option(), "tap=wisp0,ip=172.16.0.2/30,gw=172.16.0.1");
}

TEST(EgressRule, ParsesCidrAndPortCanonically) {
  EXPECT_EQ(to_string(parse_egress_rule("10.1.2.3")), "10.1.2.3/32");
  EXPECT_EQ(to_string(parse_egress_rule("10.1.2.3/32:8080")), "10.1.2.3/32:8080");
  EXPECT_EQ(to_string(parse_egress_rule("10.1.2.3/8")), "10.0.0.0/8");  // host bits cleared
  EXPECT_EQ(to_string(parse_egress_rule("0.0.0.0/0:443")), "0.0.0.0/0:443");
  EgressRule r = parse_egress_rule("192.168.0.0/16:53");
  EXPECT_EQ(r.network, "192.168.0.0/16");
  EXPECT_EQ(r.port, 53);
}

TEST(EgressRule, RefusesNamingTheFlagAndTheBadPart) {
  auto bad = [](const std::string& text, const std::string& part) {
    testutil::expect_error<UsageError>([&] { parse_egress_rule(text); },
                                       {"--allow " + text + ": ", part});
  };
  bad("10.0.0.300/8", "the address '10.0.0.300' is not a dotted quad");
  bad("example.com", "the address 'example.com'");
  bad("", "the address ''");
  bad("10.0.0.0/33", "the prefix length '33' is not 0 to 32");
  bad("10.0.0.0/", "the prefix length ''");
  bad("10.0.0.1:0", "the port '0' is not 1 to 65535");
  bad("10.0.0.1:65536", "the port '65536'");
  bad("10.0.0.1:", "the port ''");
  bad("10.0.0.1:80x", "the port '80x'");
  bad("10.0.0.1/32:8080:1", "the port '8080:1'");
}

TEST(Ruleset, DefaultAllowsNothingButReplies) {
  std::string s = namespace_ruleset({}, "10.200.0.2");
  EXPECT_NE(s.find("type filter hook forward priority filter; policy drop;"), std::string::npos);
  EXPECT_NE(s.find("ct state established,related accept"), std::string::npos);
  EXPECT_EQ(s.find("daddr"), std::string::npos) << s;
  // Refused fast, and the namespace's own addresses closed to the guest.
  EXPECT_NE(s.find("iifname \"wisp0\" meta l4proto tcp reject with tcp reset"), std::string::npos);
  EXPECT_NE(s.find("iifname \"wisp0\" drop"), std::string::npos);
  // A forged source address never leaves (it would miss the SNAT).
  EXPECT_NE(s.find("iifname \"wisp0\" ip saddr != 172.16.0.2 drop"), std::string::npos);
  EXPECT_NE(s.find("oifname \"veth0\" ip saddr 172.16.0.2 snat to 10.200.0.2"), std::string::npos);
}

TEST(Ruleset, EachRuleAllowsTcpAndUdpToItsCidrAndPort) {
  std::string s = namespace_ruleset(
      {parse_egress_rule("10.99.0.2/32:8080"), parse_egress_rule("10.0.0.0/8")}, "10.200.0.6");
  EXPECT_NE(s.find("iifname \"wisp0\" ip daddr 10.99.0.2/32 tcp dport 8080 accept"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("iifname \"wisp0\" ip daddr 10.99.0.2/32 udp dport 8080 accept"),
            std::string::npos);
  EXPECT_NE(s.find("iifname \"wisp0\" ip daddr 10.0.0.0/8 meta l4proto { tcp, udp } accept"),
            std::string::npos);
  // The forged-source drop first, then the accepts, then the catch-all reject.
  EXPECT_LT(s.find("saddr != 172.16.0.2 drop"), s.find("dport 8080 accept"));
  EXPECT_LT(s.find("dport 8080 accept"), s.find("reject"));
  EXPECT_NE(s.find("snat to 10.200.0.6"), std::string::npos);
}

manager::VmSpec parse_vm(const std::vector<std::string>& args,
                         std::vector<std::string>* operands = nullptr) {
  manager::VmSpec vm;
  OptionParser p("wisp exec");
  cli::add_vm_options(p, &vm);
  OptionParser::Result r = p.parse(args);
  if (operands) *operands = r.operands;
  cli::check_vm_options(vm);
  return vm;
}

TEST(NetOptions, BareNetNeverSwallowsTheNextArgument) {
  std::vector<std::string> operands;
  manager::VmSpec vm = parse_vm({"--net", "--allow", "10.1.2.3:80", "--dns", "10.0.0.53"});
  EXPECT_TRUE(vm.network.own);
  EXPECT_TRUE(vm.nets.empty());
  EXPECT_EQ(vm.network.allow, std::vector<std::string>{"10.1.2.3/32:80"});
  EXPECT_EQ(vm.network.dns, "10.0.0.53");
  vm = parse_vm({"--net", "NAME"}, &operands);
  EXPECT_TRUE(vm.network.own);
  EXPECT_EQ(operands, std::vector<std::string>{"NAME"});
  vm = parse_vm({"--net", "tap=t0,ip=10.0.0.2/24"});
  EXPECT_FALSE(vm.network.own);
  EXPECT_EQ(vm.nets, std::vector<std::string>{"tap=t0,ip=10.0.0.2/24"});
  vm = parse_vm({"--net=tap=t1"});
  EXPECT_EQ(vm.nets, std::vector<std::string>{"tap=t1"});
}

TEST(NetOptions, RefusesWhatCannotBeEnforced) {
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--allow", "10.0.0.0/8"});
      },
      {"--allow needs a bare --net"});
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--net", "--net", "tap=t0"});
      },
      {"one or the other"});
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--dns", "10.0.0.53"});
      },
      {"--dns needs a network"});
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--net", "--dns", "resolver"});
      },
      {"--dns resolver: expected an IPv4 address"});
}

TEST(NetOptions, TheVmmGetsTheNamespacesTapFirst) {
  manager::VmSpec vm;
  vm.network.own = true;
  std::vector<std::string> args = manager::vmm_run_args(vm, "/v.sock", "");
  std::string joined;
  for (const std::string& a : args) joined += a + " ";
  EXPECT_NE(joined.find("--net tap=wisp0,ip=172.16.0.2/30,gw=172.16.0.1 "), std::string::npos)
      << joined;
  EXPECT_EQ(joined.find("wisp.dns"), std::string::npos);
  vm.network.dns = "10.0.0.53";
  EXPECT_EQ(manager::vmm_cmdline(vm), "quiet wisp.dns=10.0.0.53");
}

TEST(NetOptions, NetLimitRidesOnTheNamespacesNic) {
  manager::VmSpec vm = parse_vm({"--net", "--net-limit", "tx-bw=1M,rx-ops=100,refill-ms=100"});
  EXPECT_EQ(vm.network.limits, "tx-bw=1M,rx-ops=100,refill-ms=100");
  std::string joined;
  for (const std::string& a : manager::vmm_run_args(vm, "/v.sock", "")) joined += a + " ";
  EXPECT_NE(joined.find("--net tap=wisp0,ip=172.16.0.2/30,gw=172.16.0.1,tx-bw=1M,rx-ops=100,"
                        "refill-ms=100 "),
            std::string::npos)
      << joined;
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--net-limit", "tx-bw=1M"});
      },
      {"--net-limit needs a bare --net"});
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--net", "--net-limit", "bw=1M"});
      },
      {"--net-limit \"bw=1M\"", "unknown key \"bw\""});
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--net", "--net-limit", "tx-bw"});
      },
      {"\"tx-bw\": expected KEY=VALUE"});
  testutil::expect_error<UsageError>(
      [] {
        parse_vm({"--net", "--net-limit", "refill-ms=100"});
      },
      {"no rate given"});
}

}  // namespace
}  // namespace wisp::host_net

namespace wisp {
namespace {

// wisp-vmm's side: --netns-fd is parsed with the jail's options and entered before any TAP.
TEST(VmmNetnsFd, ParsedInRangeAndEnteredOnlyWhenGiven) {
  VmmJailOptions o;
  OptionParser p("wisp-vmm run");
  add_vmm_jail_options(p, &o);
  p.parse(std::vector<std::string>{"--netns-fd", "6"});
  EXPECT_EQ(o.netns_fd, 6);
  testutil::expect_error<UsageError>(
      [&] {
        p.parse(std::vector<std::string>{"--netns-fd", "2"});
      },
      {"--netns-fd"});
  VmmJailOptions none;
  enter_vm_netns(&none);  // no --netns-fd: nothing to do
  EXPECT_FALSE(none.in_vm_netns);
  // A descriptor that is no namespace: a clear error, and it is closed either way.
  VmmJailOptions bad;
  bad.netns_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(bad.netns_fd, 3);
  testutil::expect_error<Error>([&] { enter_vm_netns(&bad); },
                                {"--netns-fd", "entering the network namespace"});
  EXPECT_FALSE(bad.in_vm_netns);
  EXPECT_EQ(bad.netns_fd, -1);
}

}  // namespace
}  // namespace wisp
