// Rate limiting with Firecracker's RateLimiter semantics: a token bucket per resource (bytes,
// operations), each {size, one_time_burst, refill_time_ms}, and a RateLimiter of two such buckets
// that a device asks before it takes a request off a queue. Pure logic: the caller passes the
// time (CLOCK_MONOTONIC nanoseconds, base/clock.h), so tests drive it with a fake clock, and the
// caller owns the timer that wakes it when a request did not fit (vmm/virtio/rate_limit_timer.h).
//
// Semantics (Firecracker's src/vmm/src/rate_limiter, matched where it matters to a guest):
// - A bucket starts full (`size` tokens) and refills continuously: `size` tokens per
//   `refill_time_ms`, never above `size`.
// - `one_time_burst` tokens are there once, on top, spent first, and never refill.
// - A request that does not fit takes nothing; the caller leaves it on its queue and tries again
//   after wait_ns(). (Firecracker retries on a fixed 100 ms timer; we compute the wait.)
// - A request larger than `size` could never fit: it goes through as soon as the bucket has no
//   debt, and the tokens beyond what the bucket held become a debt that refilling pays off before
//   anything else fits. That is Firecracker's OverConsumption (the bucket is emptied and the
//   limiter blocks for ratio * refill_time), written as a negative balance.
// - A bucket of size 0 (or refill time 0) does not limit.
//
// Threads: none of its own; the owner serialises calls (a device calls it with its lock held).
#pragma once

#include <cstdint>
#include <string>

namespace wisp {

struct TokenBucketConfig {
  // Bounds for configurations read from users and snapshots: a terabyte of tokens, a day of
  // refill. Keeps every product in the refill arithmetic inside 128 bits with room to spare.
  static constexpr uint64_t kMaxTokens = 1ull << 40;
  static constexpr uint64_t kMaxRefillMs = 86'400'000;

  uint64_t size = 0;  // tokens the bucket holds when full; 0 = no limit
  uint64_t one_time_burst = 0;
  uint64_t refill_time_ms = 0;  // time to refill from empty to full
  bool operator==(const TokenBucketConfig&) const = default;

  bool limits() const { return size > 0 && refill_time_ms > 0; }
  // Throws Error("<what>: ...") naming the field out of range, or a size without a refill
  // time (and the other way round).
  void validate(const std::string& what) const;
};

class TokenBucket {
 public:
  TokenBucket() = default;  // does not limit
  TokenBucket(const TokenBucketConfig& config, uint64_t now_ns);

  bool limits() const { return config_.limits(); }
  // Takes `tokens` if they fit now (see the file comment); false and nothing taken otherwise.
  bool try_consume(uint64_t tokens, uint64_t now_ns);
  // 0 when `tokens` would fit now, else the nanoseconds until they will (rounded up).
  uint64_t wait_ns(uint64_t tokens, uint64_t now_ns);

  // What is left, after refilling up to now_ns: for tests and logs. Negative = a debt.
  int64_t balance(uint64_t now_ns);
  uint64_t one_time_burst_left() const { return burst_; }

 private:
  void refill(uint64_t now_ns);
  // The tokens `tokens` needs from the refilling part (after the burst), and whether the
  // request is larger than the bucket (then it only needs the debt paid off).
  uint64_t from_budget(uint64_t tokens) const { return tokens > burst_ ? tokens - burst_ : 0; }

  TokenBucketConfig config_;
  int64_t budget_ = 0;      // refilling tokens; negative after an oversized request
  uint64_t burst_ = 0;      // what is left of one_time_burst
  uint64_t last_ns_ = 0;    // the time budget_ was refilled to
  uint64_t remainder_ = 0;  // refill progress below one token (in token * ns units)
};

struct RateLimitConfig {
  TokenBucketConfig bandwidth;  // tokens are bytes
  TokenBucketConfig ops;        // tokens are requests (a frame, a disk request)
  bool operator==(const RateLimitConfig&) const = default;

  bool limits() const { return bandwidth.limits() || ops.limits(); }
  void validate(const std::string& what) const;  // "<what> bandwidth: ..." / "<what> ops: ..."
};

class RateLimiter {
 public:
  RateLimiter() = default;  // does not limit
  RateLimiter(const RateLimitConfig& config, uint64_t now_ns);

  bool limits() const { return bandwidth_.limits() || ops_.limits(); }
  // One operation of `bytes`: 0 when it may go now (both buckets charged), else the nanoseconds
  // to wait before asking again (neither bucket charged: a request is all or nothing, so the
  // device never has to give tokens back).
  uint64_t consume(uint64_t bytes, uint64_t now_ns);

  TokenBucket& bandwidth() { return bandwidth_; }
  TokenBucket& ops() { return ops_; }

 private:
  TokenBucket bandwidth_;
  TokenBucket ops_;
};

}  // namespace wisp
