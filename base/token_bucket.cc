#include "base/token_bucket.h"

#include <algorithm>

#include "base/error.h"

namespace wisp {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
// Bounds a single request's debt so that budget_ - need stays far inside int64_t.
constexpr uint64_t kMaxRequestTokens = 1ull << 62;

}  // namespace

void TokenBucketConfig::validate(const std::string& what) const {
  auto check = [&](const char* field, uint64_t value, uint64_t max) {
    if (value > max)
      throw Error(what + ": " + field + " " + std::to_string(value) + " is above the limit " +
                  std::to_string(max));
  };
  check("size", size, kMaxTokens);
  check("one_time_burst", one_time_burst, kMaxTokens);
  check("refill_time_ms", refill_time_ms, kMaxRefillMs);
  if ((size == 0) != (refill_time_ms == 0))
    throw Error(what + ": size " + std::to_string(size) + " and refill_time_ms " +
                std::to_string(refill_time_ms) + " must both be 0 (no limit) or both be set");
  if (size == 0 && one_time_burst != 0)
    throw Error(what + ": one_time_burst " + std::to_string(one_time_burst) +
                " needs a size (a bucket of size 0 does not limit)");
}

TokenBucket::TokenBucket(const TokenBucketConfig& config, uint64_t now_ns)
    : config_(config),
      budget_(static_cast<int64_t>(config.size)),
      burst_(config.one_time_burst),
      last_ns_(now_ns) {}

void TokenBucket::refill(uint64_t now_ns) {
  uint64_t elapsed = now_ns > last_ns_ ? now_ns - last_ns_ : 0;
  last_ns_ = std::max(last_ns_, now_ns);
  const int64_t size = static_cast<int64_t>(config_.size);
  if (budget_ >= size) {
    remainder_ = 0;
    return;
  }
  // size tokens per refill_ns, exactly: the progress below one token carries over.
  const unsigned __int128 refill_ns =
      static_cast<unsigned __int128>(config_.refill_time_ms) * kNsPerMs;
  unsigned __int128 total = static_cast<unsigned __int128>(elapsed) * config_.size + remainder_;
  unsigned __int128 add = total / refill_ns;
  if (add >= static_cast<unsigned __int128>(size - budget_)) {
    budget_ = size;
    remainder_ = 0;
    return;
  }
  budget_ += static_cast<int64_t>(add);
  remainder_ = static_cast<uint64_t>(total % refill_ns);
}

bool TokenBucket::try_consume(uint64_t tokens, uint64_t now_ns) {
  if (!limits()) return true;
  refill(now_ns);
  uint64_t need = std::min(from_budget(tokens), kMaxRequestTokens);
  if (need == 0) {
    burst_ -= tokens;
    return true;
  }
  // Larger than the bucket: it can never fit, so it goes once the debt is paid (budget_ >= 0).
  const bool oversized = need > config_.size;
  if (oversized ? budget_ < 0 : budget_ < static_cast<int64_t>(need)) return false;
  budget_ -= static_cast<int64_t>(need);
  burst_ = 0;
  return true;
}

uint64_t TokenBucket::wait_ns(uint64_t tokens, uint64_t now_ns) {
  if (!limits()) return 0;
  refill(now_ns);
  uint64_t need = std::min(from_budget(tokens), kMaxRequestTokens);
  const int64_t target = need > config_.size ? 0 : static_cast<int64_t>(need);
  if (need == 0 || budget_ >= target) return 0;
  // Refilling adds size tokens per refill_ns; remainder_ of the next token is there already.
  const unsigned __int128 refill_ns =
      static_cast<unsigned __int128>(config_.refill_time_ms) * kNsPerMs;
  unsigned __int128 deficit = static_cast<unsigned __int128>(target - budget_) * refill_ns;
  deficit -= std::min<unsigned __int128>(deficit, remainder_);
  unsigned __int128 ns = (deficit + config_.size - 1) / config_.size;
  return static_cast<uint64_t>(std::min<unsigned __int128>(ns, UINT64_MAX));
}

int64_t TokenBucket::balance(uint64_t now_ns) {
  if (limits()) refill(now_ns);
  return budget_;
}

void RateLimitConfig::validate(const std::string& what) const {
  bandwidth.validate(what + " bandwidth");
  ops.validate(what + " ops");
}

RateLimiter::RateLimiter(const RateLimitConfig& config, uint64_t now_ns)
    : bandwidth_(config.bandwidth, now_ns), ops_(config.ops, now_ns) {}

uint64_t RateLimiter::consume(uint64_t bytes, uint64_t now_ns) {
  // Both or neither: ask both first, so a request the bytes refuse does not spend an op.
  uint64_t wait = std::max(bandwidth_.wait_ns(bytes, now_ns), ops_.wait_ns(1, now_ns));
  if (wait > 0) return wait;
  bandwidth_.try_consume(bytes, now_ns);
  ops_.try_consume(1, now_ns);
  return 0;
}

}  // namespace wisp
