// The rate-limit keys a device option takes among its KEY=VALUE items (`--drive PATH,bw=...`,
// `--net tap=NAME,tx-bw=...`), turned into a RateLimitConfig (base/token_bucket.h):
//   [PREFIX]bw=RATE        bytes per second (K, M, G: powers of 1024)
//   [PREFIX]bw-burst=SIZE  a one-time burst of bytes on top (spent first, never refilled)
//   [PREFIX]ops=RATE       requests per second (a disk request, a frame)
//   [PREFIX]ops-burst=N    a one-time burst of requests
//   refill-ms=MS           the option's buckets hold MS worth of their rate and refill over MS
//                          (default 1000: a second's worth may come at once)
// PREFIX is "" for --drive, "rx-" and "tx-" for --net (each direction its own limiter).
#pragma once

#include <cstdint>
#include <string>

#include "base/token_bucket.h"

namespace wisp {

constexpr uint64_t kDefaultRefillMs = 1000;

// One limiter's keys, gathered while a device option is parsed.
class RateLimitKeys {
 public:
  // `option` names the whole option in errors ("--drive \"d.img,bw=x\"").
  RateLimitKeys(std::string option, std::string prefix);

  // Takes KEY=VALUE when KEY is one of this limiter's; false otherwise. Throws UsageError
  // naming the key for a bad or repeated value.
  bool take(const std::string& key, const std::string& value);
  bool given() const { return bw_ || bw_burst_ || ops_ || ops_burst_; }
  // The buckets for `refill_ms` (see the file comment). Throws UsageError for a burst without
  // its rate, or a rate too small to put a token in a bucket of refill_ms.
  RateLimitConfig config(uint64_t refill_ms) const;

 private:
  TokenBucketConfig bucket(const char* rate_key, uint64_t rate, uint64_t burst,
                           uint64_t refill_ms) const;

  std::string option_, prefix_;
  uint64_t bw_ = 0, bw_burst_ = 0, ops_ = 0, ops_burst_ = 0;
};

// refill-ms's value: 1 ms to a day. Throws UsageError naming `option`.
uint64_t parse_refill_ms(const std::string& option, const std::string& value);

// "bw=1M/s+burst 4M, ops=100/s, refill 1000 ms" for logs; "" when `config` does not limit.
std::string describe_rate_limit(const RateLimitConfig& config);

}  // namespace wisp
