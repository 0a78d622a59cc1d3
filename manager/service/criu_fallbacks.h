// What serve knows of template generations whose VM snapshot does not fit this host (issue
// 17): a call of such a generation is served from the template's CRIU image without trying
// its snapshot again, its warm clones stop being made, and its snapshot is re-made once in
// the background (one rebuild per generation, shared by every call that fell back), after
// which calls are warm again (a new generation).
//
// Pure bookkeeping, keyed by generation directory (manager::OpenTemplate::dir: a rebuilt or
// re-created template is a new one). Threads: serve's loop thread.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>

namespace wisp::service {

class CriuFallbacks {
 public:
  // Records that `generation` does not fit (why: `reason`). True the first time (log it).
  bool mark_unfit(const std::string& generation, const std::string& reason);
  // Why `generation` does not fit, or nullptr when it is not known not to.
  const std::string* unfit(const std::string& generation) const;

  // A rebuild of `generation` is wanted (a call fell back): true for the first caller only,
  // which starts it; later calls share that rebuild.
  bool claim_rebuild(const std::string& generation);
  // The claimed rebuild did not start (no capacity for its VM): the next fallback may claim.
  void release_rebuild(const std::string& generation);
  // The claimed rebuild failed. Up to kRebuildAttempts per generation the next fallback may
  // claim it again (true); after that its calls keep falling back until `wisp template
  // rebuild` (false): a re-make that fails for good must not boot a VM on every call.
  static constexpr int kRebuildAttempts = 3;
  bool rebuild_failed(const std::string& generation);
  // Its rebuild ended (published, or skipped because the template changed meanwhile): the
  // generation is no longer current, its entries go.
  void forget(const std::string& generation);

  size_t unfit_count() const { return unfit_.size(); }

 private:
  std::map<std::string, std::string> unfit_;  // generation -> reason
  std::set<std::string> rebuilds_;            // generations whose rebuild was claimed
  std::map<std::string, int> failures_;       // generation -> rebuilds of it that failed
};

}  // namespace wisp::service
