#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "agent/guest_net_config.h"

namespace wisp::agent {
namespace {

uint32_t ip(const char* s) {
  in_addr a;
  EXPECT_EQ(inet_pton(AF_INET, s, &a), 1);
  return a.s_addr;
}

TEST(GuestNetConfig, ParsesTheVmmsWord) {
  std::string error;
  auto c = parse_guest_net("console=ttyS0 quiet wisp.net=10.0.2.15/24,10.0.2.2,1500 rw\n", &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(*c, (GuestNetConfig{ip("10.0.2.15"), 24, ip("10.0.2.2"), 1500}));
  c = parse_guest_net("wisp.net=192.168.7.2/32,-,9000", &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(c->gateway, 0u);
  EXPECT_EQ(c->mtu, 9000u);
}

TEST(GuestNetConfig, NoWordIsNoConfig) {
  std::string error;
  EXPECT_FALSE(parse_guest_net("console=ttyS0 quiet", &error));
  EXPECT_EQ(error, "");
}

TEST(GuestNetConfig, MalformedWordsAreRefusedWithAReason) {
  for (const char* bad :
       {"wisp.net=10.0.0.1", "wisp.net=10.0.0.1/24", "wisp.net=10.0.0.1/24,10.0.0.2",
        "wisp.net=10.0.0.256/24,-,1500", "wisp.net=10.0.0.1/0,-,1500",
        "wisp.net=10.0.0.1/33,-,1500", "wisp.net=10.0.0.1/24,gw,1500", "wisp.net=10.0.0.1/24,-,67",
        "wisp.net=10.0.0.1/24,-,1500,x", "wisp.net=10.0.0.1/24,-,99999999999"}) {
    std::string error;
    EXPECT_FALSE(parse_guest_net(bad, &error)) << bad;
    EXPECT_NE(error.find("wisp.net="), std::string::npos) << bad;
  }
}

TEST(GuestDns, TheLastWordIsTheResolver) {
  std::string error;
  EXPECT_EQ(parse_guest_dns("quiet wisp.dns=10.0.0.53", &error), "10.0.0.53");
  EXPECT_EQ(parse_guest_dns("wisp.dns=1.1.1.1 wisp.dns=10.0.0.53 quiet", &error), "10.0.0.53");
  EXPECT_EQ(parse_guest_dns("quiet wisp.net=172.16.0.2/30,172.16.0.1,1500", &error), std::nullopt);
  EXPECT_EQ(error, "");
  EXPECT_EQ(resolv_conf("10.0.0.53"), "nameserver 10.0.0.53\n");
}

TEST(GuestDns, AMalformedWordIsRefusedWithAReason) {
  for (const char* bad :
       {"wisp.dns=", "wisp.dns=resolver", "wisp.dns=10.0.0.300", "wisp.dns=10.0.0.1;reboot"}) {
    std::string error;
    EXPECT_EQ(parse_guest_dns(bad, &error), std::nullopt) << bad;
    EXPECT_NE(error.find("not an IPv4 address"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace wisp::agent
