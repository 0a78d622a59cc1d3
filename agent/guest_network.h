// Brings the guest's network up at boot (the agent is PID 1, and the kernel has no IP_PNP):
// loopback always, and eth0 with the address, MTU and default route of the kernel command
// line's wisp.net word when there is one (guest_net_config.h). By ioctl, no tools needed.
#pragma once

namespace wisp::agent {

// Logs (to the console) what it could not do; never throws: a VM without its network still
// runs handlers that need none.
void set_up_guest_network();

}  // namespace wisp::agent
