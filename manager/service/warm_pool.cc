#include "manager/service/warm_pool.h"

#include <algorithm>

#include "base/log.h"

namespace wisp::service {

WarmPools::WarmPools(kj::Timer& timer, Maker maker) : timer_(timer), maker_(std::move(maker)) {}

WarmPools::~WarmPools() { stop(); }

void WarmPools::start(const std::map<std::string, uint32_t>& targets) {
  for (const auto& [name, n] : targets) {
    pools_[name].target = n;
    fill(name);
  }
}

void WarmPools::fill(const std::string& name) {
  if (stopped_) return;
  Pool& p = pools_[name];
  if (p.paused) return;
  while (p.ready.size() + p.filling < p.target) {
    ++p.filling;
    tasks_.add(
        kj::evalNow([&] { return maker_(name); })
            .then(
                [this, name](kj::Own<Clone> clone) {
                  Pool& p = pools_[name];
                  --p.filling;
                  if (!stopped_) p.ready.push_back(kj::mv(clone));
                },
                [this, name](kj::Exception&& e) {
                  --pools_[name].filling;
                  // Paused by its failure (a snapshot that does not fit): said once, by serve.
                  if (pools_[name].paused) return;
                  LOG_WARN("serve: warm clone of %s: %s (retrying in %llu ms)", name.c_str(),
                           e.getDescription().cStr(), static_cast<unsigned long long>(kRetryMs));
                  tasks_.add(timer_.afterDelay(static_cast<int64_t>(kRetryMs) * kj::MILLISECONDS)
                                 .then([this, name] { fill(name); }));
                }));
  }
}

kj::Maybe<kj::Own<Clone>> WarmPools::take(const std::string& name,
                                          const std::string& generation_dir) {
  auto it = pools_.find(name);
  if (it == pools_.end()) return nullptr;
  Pool& p = it->second;
  kj::Maybe<kj::Own<Clone>> out;
  while (!p.ready.empty()) {
    kj::Own<Clone> c = kj::mv(p.ready.front());
    p.ready.pop_front();
    if (c->generation_dir() == generation_dir && c->alive()) {
      out = kj::mv(c);
      break;
    }
    // An old generation (rebuilt template) or a dead VM: dropped (destroyed by the reaper).
  }
  if (out == nullptr) fill(name);  // else the taker calls refill() once its clone runs
  return out;
}

void WarmPools::refill(const std::string& name) {
  if (pools_.count(name)) fill(name);
}

uint32_t WarmPools::ready(const std::string& name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? 0 : static_cast<uint32_t>(it->second.ready.size());
}

uint32_t WarmPools::target(const std::string& name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? 0 : it->second.target;
}

uint32_t WarmPools::filling(const std::string& name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? 0 : it->second.filling;
}

bool WarmPools::pause(const std::string& name) {
  auto it = pools_.find(name);
  if (it == pools_.end() || it->second.paused) return false;
  it->second.paused = true;
  it->second.ready.clear();
  return true;
}

void WarmPools::resume(const std::string& name) {
  auto it = pools_.find(name);
  if (it == pools_.end() || !it->second.paused) return;
  it->second.paused = false;
  fill(name);
}

bool WarmPools::paused(const std::string& name) const {
  auto it = pools_.find(name);
  return it != pools_.end() && it->second.paused;
}

void WarmPools::stop() {
  stopped_ = true;
  for (auto& [name, p] : pools_) p.ready.clear();
}

}  // namespace wisp::service
