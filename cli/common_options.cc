#include "cli/common_options.h"

#include "base/ipv4.h"
#include "base/rate_limit_option.h"
#include "manager/host_net/address_plan.h"
#include "manager/host_net/egress_rule.h"

namespace wisp::cli {

namespace {

const char kVmOptionsHelp[] = R"(VM options, passed to the VMM (see wisp run --help):
  --kernel PATH      the guest kernel (default: <wisp>/../guest/vmlinux)
  --initrd PATH      the guest initramfs (default: <wisp>/../guest/agent-initramfs.cpio.gz,
                     which runs wisp-agent as PID 1; none with --rootfs)
  --rootfs IMAGE     boot the agent from an ext4 root filesystem image instead (e.g.
                     <wisp>/../guest/python-rootfs.ext4, Debian with python3): attached
                     read-only, writes go to a per-VM tmpfs overlay
  --mem SIZE         guest RAM: MiB, or with a suffix M or G (16 MiB to 64 GiB)
  --vcpus N          vCPUs (1 to 254)
  --cmdline STR      appended to the kernel command line after "quiet"
  --raw-cmdline      --cmdline is the whole kernel command line
  --drive PATH[,ro][,bw=RATE][,ops=RATE]...
                     a virtio-blk disk (repeatable); --no-rng: no virtio-rng. Rate limit:
                     bw= bytes/s, ops= requests/s, bw-burst=/ops-burst= a one-time extra,
                     refill-ms= the buckets' period (see wisp run --help); a template's
                     clones keep its limits
  --net              a virtio-net NIC in a network namespace of the VM's own: wisp makes it,
                     with the TAP wisp0 inside, a veth pair to the host (host end wvN, a /30
                     of 10.200.0.0/16 per VM) and NAT; the guest's eth0 is always 172.16.0.2/30,
                     gateway 172.16.0.1, MTU 1500, in every VM and clone; egress is what --allow
                     lets through and nothing else. To go beyond this host, route or masquerade
                     10.200.0.0/16 on the host. A handler needs --network to use it
  --allow CIDR[:PORT]
                     with --net: the guest may open TCP and UDP flows to CIDR (only to PORT
                     when given; e.g. 10.1.2.3/32:8080, 0.0.0.0/0 for anywhere); repeatable;
                     none by default: the host's own addresses are unreachable unless allowed
  --net-limit KEYS   with --net: its NIC's rate limits, the rx-/tx- keys of --net tap= below
                     (e.g. tx-bw=10M,rx-bw=10M,refill-ms=100); a template's clones keep them
  --dns ADDR         the guest's resolver (/etc/resolv.conf, as the handler sees it); none by
                     default
  --net tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR][,rx-bw=RATE][,tx-bw=RATE]...
                     a virtio-net NIC on the existing TAP NAME (repeatable); with ip= the
                     agent gives eth0 that address and default route (MTU 1500); rate
                     limits per direction as --drive's, with rx-/tx- (rx-ops=, tx-bw-burst=...)
  --no-hugepages     guest RAM on 4 KiB pages (default: 2 MiB huge pages; to measure against)
  --portable         a baseline CPU: the guest sees no instruction-set feature beyond x86-64-v2
                     (no AVX*, AVX-512, FMA, BMI, XSAVE...), so what it runs and checkpoints
                     runs on any host CPU at least that new; a template records it
  --vsock-cid N      the guest's vsock CID (default 3)
  --console MODE     none (default) or FILE: where the guest console goes
  -v, --verbose      VMM diagnostics on stderr (twice: debug)
)";

// --net-limit's KEY=VALUE items, checked here so that a bad one is a usage error before any
// VM boots: the rate keys of `--net tap=` (base/rate_limit_option.h), which wisp-vmm applies.
void check_net_limit(const std::string& v) {
  const std::string option = "--net-limit \"" + v + "\"";
  RateLimitKeys rx(option, "rx-"), tx(option, "tx-");
  uint64_t refill_ms = kDefaultRefillMs;
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find(',', start);
    if (end == std::string::npos) end = v.size();
    const std::string item = v.substr(start, end - start);
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError(option + ": \"" + item + "\": expected KEY=VALUE");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "refill-ms")
      refill_ms = parse_refill_ms(option, value);
    else if (!rx.take(key, value) && !tx.take(key, value))
      throw UsageError(option + ": unknown key \"" + key +
                       "\" (rx-bw, rx-ops, tx-bw, tx-ops, their -burst, refill-ms)");
    start = end + 1;
  }
  if (!rx.given() && !tx.given()) throw UsageError(option + ": no rate given");
  rx.config(refill_ms);
  tx.config(refill_ms);
}

}  // namespace

std::string vm_options_help() { return std::string(kVmOptionsHelp) + kJailOptionsHelp; }

void add_vm_options(OptionParser& parser, manager::VmSpec* vm) {
  using manager::kMaxGuestMemBytes, manager::kMaxGuestVcpus, manager::kMinGuestMemBytes;
  parser.text("kernel", &vm->kernel)
      .text("initrd", &vm->initrd, /*allow_empty=*/true)
      .text("rootfs", &vm->rootfs)
      .text("cmdline", &vm->cmdline, /*allow_empty=*/true)
      .flag("raw-cmdline", &vm->raw_cmdline)
      .size("mem", &vm->mem_bytes, 1ull << 20, kMinGuestMemBytes, kMaxGuestMemBytes)
      .count("vcpus", &vm->vcpus, 1, kMaxGuestVcpus)
      .value("drive", [vm](const std::string& v) { vm->drives.push_back(v); })
      .optional_value(
          "net", "tap=", [vm] { vm->network.own = true; },
          [vm](const std::string& v) {
            if (v.rfind("tap=", 0) != 0)
              throw UsageError("--net \"" + v + "\": expected tap=NAME[,mac=MAC][,ip=...]");
            vm->nets.push_back(v);
          })
      .value("allow",
             [vm](const std::string& v) {
               vm->network.allow.push_back(host_net::to_string(host_net::parse_egress_rule(v)));
             })
      .value("net-limit",
             [vm](const std::string& v) {
               check_net_limit(v);
               vm->network.limits = v;
             })
      .value("dns",
             [vm](const std::string& v) {
               if (!parse_ipv4(v))
                 throw UsageError("--dns " + v + ": expected an IPv4 address (e.g. 10.0.0.53)");
               vm->network.dns = v;
             })
      .flag("no-rng", [vm] { vm->rng = false; })
      .flag("no-hugepages", [vm] { vm->huge_pages = false; })
      .flag("portable", &vm->portable)
      .text("vsock-cid", &vm->vsock_cid)
      .value("console",
             [vm](const std::string& v) {
               if (v.empty() || v == "stdio")
                 throw UsageError(
                     "--console: expected none or FILE (stdio would mix with "
                     "the command's output)");
               vm->console = v;
             })
      .flag(
          "verbose", [vm] { ++vm->verbose; }, 'v');
  // wisp sets these itself for the VM it boots.
  auto refuse = [](const std::string& name) { throw UsageError("--" + name + " is set by wisp"); };
  parser.value("vsock-uds", [refuse](const std::string&) { refuse("vsock-uds"); })
      .value("control-socket", [refuse](const std::string&) { refuse("control-socket"); })
      .flag("no-initrd", [refuse] { refuse("no-initrd"); });
  add_jail_options(parser, &vm->jail);
}

void check_vm_options(const manager::VmSpec& vm) {
  if (!vm.network.allow.empty() && !vm.network.own)
    throw UsageError("--allow needs a bare --net (the VM's own network, where it is enforced)");
  if (vm.network.own && !vm.nets.empty())
    throw UsageError("--net and --net tap=NAME: give the VM one or the other");
  if (!vm.network.limits.empty() && !vm.network.own)
    throw UsageError("--net-limit needs a bare --net (--net tap=NAME takes the keys itself)");
  if (!vm.network.dns.empty() && !vm.network.own && vm.nets.empty())
    throw UsageError("--dns needs a network: --net or --net tap=NAME");
}

void add_env_option(OptionParser& parser, std::vector<std::string>* env) {
  parser.value("env", [env](const std::string& v) {
    if (v.find('=') == std::string::npos || v[0] == '=')
      throw UsageError("--env " + v + ": expected KEY=VALUE");
    env->push_back(v);
  });
}

void add_mode_option(OptionParser& parser, std::string* mode) {
  parser.value("mode", [mode](const std::string& v) {
    if (v != "exec" && v != "worker") throw UsageError("--mode " + v + ": expected exec or worker");
    *mode = v;
  });
}

}  // namespace wisp::cli
