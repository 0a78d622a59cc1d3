#include "manager/vm_net.h"

namespace wisp::manager {

std::vector<std::string> vmm_restore_net_args(const VmNet& net) {
  std::vector<std::string> args;
  for (const std::string& n : net.nets) args.insert(args.end(), {"--net", n});
  return args;
}

}  // namespace wisp::manager
