// parse_agent_address: "vsock:CID" selects AF_VSOCK, anything else is a --vsock-uds path.
#include <gtest/gtest.h>

#include "api/agent_client.h"

namespace wisp::client {
namespace {

TEST(AgentAddress, PathIsAUnixSocket) {
  ConnectOptions o;
  o.vsock_cid = 7;
  parse_agent_address("/tmp/vm.sock", &o);
  EXPECT_EQ(o.uds_path, "/tmp/vm.sock");
  EXPECT_EQ(o.vsock_cid, 0u);
  parse_agent_address("vsock", &o);  // a relative path that merely looks similar
  EXPECT_EQ(o.uds_path, "vsock");
}

TEST(AgentAddress, VsockCid) {
  ConnectOptions o;
  o.uds_path = "/tmp/vm.sock";
  parse_agent_address("vsock:3", &o);
  EXPECT_EQ(o.vsock_cid, 3u);
  EXPECT_TRUE(o.uds_path.empty());
  parse_agent_address("vsock:4294967294", &o);
  EXPECT_EQ(o.vsock_cid, 4294967294u);
}

TEST(AgentAddress, RejectsBadCids) {
  for (const char* bad : {"vsock:", "vsock:0", "vsock:1", "vsock:2", "vsock:4294967295",
                          "vsock:99999999999", "vsock:-3", "vsock:3x", "vsock: 3", "vsock:0x10"}) {
    ConnectOptions o;
    EXPECT_THROW(parse_agent_address(bad, &o), Error) << bad;
  }
}

}  // namespace
}  // namespace wisp::client
