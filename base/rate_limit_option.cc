#include "base/rate_limit_option.h"

#include "base/options.h"

namespace wisp {
namespace {

constexpr uint64_t kMsPerSecond = 1000;

}  // namespace

RateLimitKeys::RateLimitKeys(std::string option, std::string prefix)
    : option_(std::move(option)), prefix_(std::move(prefix)) {}

bool RateLimitKeys::take(const std::string& key, const std::string& value) {
  if (key.compare(0, prefix_.size(), prefix_) != 0) return false;
  std::string k = key.substr(prefix_.size());
  uint64_t* out = k == "bw"          ? &bw_
                  : k == "bw-burst"  ? &bw_burst_
                  : k == "ops"       ? &ops_
                  : k == "ops-burst" ? &ops_burst_
                                     : nullptr;
  if (!out) return false;
  if (*out != 0) throw UsageError(option_ + ": " + key + " is given twice");
  *out = parse_size(option_ + " " + key, value, 1, 1, TokenBucketConfig::kMaxTokens);
  return true;
}

TokenBucketConfig RateLimitKeys::bucket(const char* rate_key, uint64_t rate, uint64_t burst,
                                        uint64_t refill_ms) const {
  std::string name = prefix_ + rate_key;
  if (rate == 0) {
    if (burst != 0) throw UsageError(option_ + ": " + name + "-burst needs " + name);
    return {};
  }
  // The bucket holds refill_ms worth of the rate; rate <= 2^40 and refill_ms <= a day, so the
  // product fits in 64 bits.
  uint64_t size = rate * refill_ms / kMsPerSecond;
  if (size == 0)
    throw UsageError(option_ + ": " + name + "=" + std::to_string(rate) +
                     " per second is less than one in refill-ms=" + std::to_string(refill_ms));
  TokenBucketConfig b{size, burst, refill_ms};
  b.validate(option_ + " " + name);
  return b;
}

RateLimitConfig RateLimitKeys::config(uint64_t refill_ms) const {
  RateLimitConfig c;
  c.bandwidth = bucket("bw", bw_, bw_burst_, refill_ms);
  c.ops = bucket("ops", ops_, ops_burst_, refill_ms);
  return c;
}

uint64_t parse_refill_ms(const std::string& option, const std::string& value) {
  return parse_count(option + " refill-ms", value, 1, TokenBucketConfig::kMaxRefillMs);
}

std::string describe_rate_limit(const RateLimitConfig& config) {
  auto one = [](const char* what, const TokenBucketConfig& b) -> std::string {
    if (!b.limits()) return "";
    std::string s = std::string(what) + " " + std::to_string(b.size) + " per " +
                    std::to_string(b.refill_time_ms) + " ms";
    if (b.one_time_burst) s += " (+" + std::to_string(b.one_time_burst) + " once)";
    return s;
  };
  std::string bw = one("bytes", config.bandwidth), ops = one("ops", config.ops);
  return bw + (!bw.empty() && !ops.empty() ? ", " : "") + ops;
}

}  // namespace wisp
