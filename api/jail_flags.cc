#include "api/jail_flags.h"

#include <charconv>
#include <cstdio>

namespace wisp {
namespace {

constexpr uint32_t kNobody = 65534;
constexpr uint32_t kInvalidUid = 4294967295;  // (uid_t)-1: "no change" to setresuid

bool parse_uid(const std::string& text, uint32_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

void parse_uid_range(const std::string& text, uint32_t* first, uint32_t* last) {
  size_t dash = text.find('-');
  bool ok = dash != std::string::npos && parse_uid(text.substr(0, dash), first) &&
            parse_uid(text.substr(dash + 1), last) && *first > 0 && *first <= *last &&
            *last < kInvalidUid;
  if (!ok)
    throw UsageError("--jail-uid-range " + text +
                     ": expected FIRST-LAST, two decimal uids with 0 < FIRST <= LAST < " +
                     std::to_string(kInvalidUid) + " (the default is 2000000000-2000065535)");
  // nobody owns whatever an NFS server squashes; a VMM running as it could reach those files.
  if (*first <= kNobody && kNobody <= *last)
    throw UsageError("--jail-uid-range " + text + ": includes " + std::to_string(kNobody) +
                     ", the nobody user; choose a range that no user or service has");
}

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
      .value("jail-uid-range",
             [flags](const std::string& v) {
               uint32_t first = 0, last = 0;
               parse_uid_range(v, &first, &last);
               flags->uid_first = first;
               flags->uid_last = last;
             })
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
