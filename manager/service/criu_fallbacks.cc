#include "manager/service/criu_fallbacks.h"

namespace wisp::service {

bool CriuFallbacks::mark_unfit(const std::string& generation, const std::string& reason) {
  return unfit_.emplace(generation, reason).second;
}

const std::string* CriuFallbacks::unfit(const std::string& generation) const {
  auto it = unfit_.find(generation);
  return it == unfit_.end() ? nullptr : &it->second;
}

bool CriuFallbacks::claim_rebuild(const std::string& generation) {
  return rebuilds_.insert(generation).second;
}

void CriuFallbacks::release_rebuild(const std::string& generation) { rebuilds_.erase(generation); }

bool CriuFallbacks::rebuild_failed(const std::string& generation) {
  if (++failures_[generation] >= kRebuildAttempts) return false;
  rebuilds_.erase(generation);
  return true;
}

void CriuFallbacks::forget(const std::string& generation) {
  unfit_.erase(generation);
  failures_.erase(generation);
  // The claim stays: the generation is gone, so a late call of it (one that opened it before
  // the swap) must not start a second rebuild.
}

}  // namespace wisp::service
