#include "api/jail_flags.h"

#include <cstdio>

namespace wisp {
namespace {

// "FIRST-LAST", 0 < FIRST <= LAST < 4294967295 (uid 0 is root; -1 means "no change").
void parse_uid_range(const std::string& text, JailFlags* flags) {
  const std::string option = "--jail-uid-range";
  size_t dash = text.find('-');
  if (dash == std::string::npos)
    throw UsageError(option + " " + text + ": expected FIRST-LAST, e.g. 2000000000-2000065535");
  uint64_t first = parse_count(option, text.substr(0, dash), 1, 4294967294ull);
  uint64_t last = parse_count(option, text.substr(dash + 1), 1, 4294967294ull);
  if (last < first) throw UsageError(option + " " + text + ": LAST is below FIRST");
  flags->uid_first = static_cast<uint32_t>(first);
  flags->uid_last = static_cast<uint32_t>(last);
}

}  // namespace

const char kJailOptionsHelp[] =
    R"(  --jail-uid-range FIRST-LAST
                   the uids (gid = uid) jailed VMMs run as, one per VM
                   (default 2000000000-2000065535)
  --cpu-quota PERCENT
                   limit the VMM to PERCENT of one CPU (cgroup cpu.max; 200 = two CPUs)
  --no-jail        debugging only: run the VMM without its jail (namespaces, root, uid,
                   capabilities, seccomp, cgroup); prints a warning
  --no-cgroup      debugging only: jail the VMM but put it in no cgroup; prints a warning
)";

void add_jail_options(OptionParser& parser, JailFlags* flags) {
  parser.flag("no-jail", [flags] { flags->jail = false; })
      .flag("no-cgroup", [flags] { flags->cgroup = false; })
      .value("jail-uid-range", [flags](const std::string& v) { parse_uid_range(v, flags); })
      .value("cpu-quota",
             [flags](const std::string& v) {
               flags->cpu_quota_percent =
                   static_cast<uint32_t>(parse_count("--cpu-quota", v, 1, 100000));
             })
      .value("jail-memory-max", [flags](const std::string& v) {
        flags->memory_max = parse_size("--jail-memory-max", v, 1ull << 20, 1ull << 20, 1ull << 40);
      });
}

std::vector<std::string> jail_args(const JailFlags& flags) {
  std::vector<std::string> args;
  if (!flags.jail) args.push_back("--no-jail");
  if (!flags.cgroup) args.push_back("--no-cgroup");
  if (flags.uid_first)
    args.insert(args.end(), {"--jail-uid-range", std::to_string(*flags.uid_first) + "-" +
                                                     std::to_string(*flags.uid_last)});
  if (flags.cpu_quota_percent)
    args.insert(args.end(), {"--cpu-quota", std::to_string(*flags.cpu_quota_percent)});
  if (flags.memory_max)
    args.insert(args.end(), {"--jail-memory-max", std::to_string(*flags.memory_max >> 20)});
  return args;
}

void warn_debug_jail_flags(const JailFlags& flags) {
  if (!flags.jail)
    std::fputs(
        "wisp: warning: --no-jail: the VMM runs with every privilege of this process and no "
        "seccomp filter; for debugging only\n",
        stderr);
  else if (!flags.cgroup)
    std::fputs(
        "wisp: warning: --no-cgroup: the VMM's memory, pids and CPU are not limited; for "
        "debugging only\n",
        stderr);
}

}  // namespace wisp
