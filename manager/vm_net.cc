#include "manager/vm_net.h"

#include "manager/host_net/address_plan.h"

namespace wisp::manager {

VmNet record_net(const std::vector<std::string>& nets, const VmNetworkSpec& network) {
  VmNet net;
  net.nets = nets;
  net.own = network.own;
  net.allow = network.allow;
  if (!network.dns.empty()) net.dns.push_back(network.dns);
  return net;
}

VmNetworkSpec clone_network(const VmNet& net) {
  VmNetworkSpec spec;
  spec.own = net.own;
  spec.allow = net.allow;
  if (!net.dns.empty()) spec.dns = net.dns.front();
  return spec;
}

std::vector<std::string> vmm_restore_net_args(const VmNet& net) {
  std::vector<std::string> args;
  if (net.own) args.insert(args.end(), {"--net", std::string("tap=") + host_net::kTapName});
  for (const std::string& n : net.nets) args.insert(args.end(), {"--net", n});
  return args;
}

}  // namespace wisp::manager
