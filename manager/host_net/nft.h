// nftables: a ruleset text applied in the calling thread's network namespace by Debian's `nft`
// (package nftables), as `nft -f -`. Not libnftables: wisp is linked statically (its start-up
// latency), and Debian ships libnftables (and libnftnl) as shared libraries only.
#pragma once

#include <string>

namespace wisp::host_net {

// Applies `ruleset` atomically (all of it or nothing). Throws Error with nft's own message,
// which names the line and the token it rejects, or saying that nft is not installed.
void apply_nft_ruleset(const std::string& ruleset);

}  // namespace wisp::host_net
