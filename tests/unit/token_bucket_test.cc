#include "base/token_bucket.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "tests/unit/expect_error.h"

namespace wisp {
namespace {

using testutil::expect_error;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 5'000 * kMs;  // an arbitrary clock origin

TokenBucketConfig bucket(uint64_t size, uint64_t burst, uint64_t refill_ms) {
  return {size, burst, refill_ms};
}

TEST(TokenBucket, StartsFullAndRefillsContinuously) {
  TokenBucket b(bucket(1000, 0, 100), kT0);  // 1000 tokens per 100 ms
  EXPECT_TRUE(b.try_consume(1000, kT0));
  EXPECT_FALSE(b.try_consume(1, kT0));
  EXPECT_EQ(b.balance(kT0), 0);
  // 10 tokens per ms, with no loss at fractions of a token.
  EXPECT_EQ(b.balance(kT0 + 1 * kMs), 10);
  EXPECT_EQ(b.balance(kT0 + 1 * kMs + 50'000), 10);  // 0.5 token in progress
  EXPECT_EQ(b.balance(kT0 + 1 * kMs + 100'000), 11);
  EXPECT_TRUE(b.try_consume(11, kT0 + 1 * kMs + 100'000));
  // Never above size.
  EXPECT_EQ(b.balance(kT0 + 10'000 * kMs), 1000);
}

TEST(TokenBucket, RefusedRequestTakesNothing) {
  TokenBucket b(bucket(100, 0, 10), kT0);
  EXPECT_TRUE(b.try_consume(60, kT0));
  EXPECT_FALSE(b.try_consume(50, kT0));
  EXPECT_EQ(b.balance(kT0), 40);
  EXPECT_TRUE(b.try_consume(40, kT0));
}

TEST(TokenBucket, OneTimeBurstIsSpentFirstAndNeverRefills) {
  TokenBucket b(bucket(100, 250, 10), kT0);
  EXPECT_TRUE(b.try_consume(200, kT0));  // burst alone
  EXPECT_EQ(b.one_time_burst_left(), 50u);
  EXPECT_EQ(b.balance(kT0), 100);
  EXPECT_TRUE(b.try_consume(120, kT0));  // 50 of burst, 70 of budget
  EXPECT_EQ(b.one_time_burst_left(), 0u);
  EXPECT_EQ(b.balance(kT0), 30);
  EXPECT_EQ(b.balance(kT0 + 1000 * kMs), 100);
  EXPECT_EQ(b.one_time_burst_left(), 0u);
}

TEST(TokenBucket, OversizedRequestGoesWhenNoDebtAndLeavesOne) {
  // Firecracker's OverConsumption: a request larger than the bucket goes (the bucket empties)
  // and the limiter then blocks for (tokens beyond the budget / size) * refill_time.
  TokenBucket b(bucket(100, 0, 10), kT0);
  EXPECT_TRUE(b.try_consume(30, kT0));
  EXPECT_TRUE(b.try_consume(370, kT0));  // 70 in the bucket, 300 beyond: 3 refill times
  EXPECT_EQ(b.balance(kT0), -300);
  EXPECT_EQ(b.wait_ns(1, kT0), 30 * kMs + 100'000);  // debt, then one token
  EXPECT_EQ(b.wait_ns(400, kT0), 30 * kMs);          // another oversized: only the debt
  EXPECT_FALSE(b.try_consume(400, kT0 + 30 * kMs - 1));
  EXPECT_TRUE(b.try_consume(400, kT0 + 30 * kMs));
  // Even from an empty bucket (no debt) it goes.
  TokenBucket e(bucket(100, 0, 10), kT0);
  EXPECT_TRUE(e.try_consume(100, kT0));
  EXPECT_TRUE(e.try_consume(1000, kT0));
  EXPECT_EQ(e.balance(kT0), -1000);
}

TEST(TokenBucket, WaitIsExactlyUntilTheNextFit) {
  TokenBucket b(bucket(3, 0, 1), kT0);  // 3 tokens per ms: one every 333,333.3 ns
  EXPECT_TRUE(b.try_consume(3, kT0));
  uint64_t w = b.wait_ns(1, kT0);
  EXPECT_EQ(w, 333'334u);
  EXPECT_FALSE(b.try_consume(1, kT0 + w - 1));
  EXPECT_TRUE(b.try_consume(1, kT0 + w));
  // Progress below a token counts: the next one needs a little less than a full third.
  EXPECT_EQ(b.wait_ns(1, kT0 + w), 333'333u);
  EXPECT_EQ(b.wait_ns(0, kT0 + w), 0u);
}

TEST(TokenBucket, SustainedRateMatchesSizeOverRefillTime) {
  // A caller that always waits exactly wait_ns() gets size tokens per refill time, whatever
  // its request size (small, or larger than the bucket).
  for (uint64_t request : {1000ull, 64 * 1024ull, 300 * 1024ull}) {
    TokenBucket b(bucket(100 * 1024, 0, 100), kT0);  // 1 MiB/s
    uint64_t now = kT0, sent = 0;
    while (now < kT0 + 10'000 * kMs) {
      if (uint64_t w = b.wait_ns(request, now)) {
        now += w;
        continue;
      }
      ASSERT_TRUE(b.try_consume(request, now));
      sent += request;
    }
    double rate = static_cast<double>(sent) / 10.0;  // bytes per second
    EXPECT_NEAR(rate, 1024.0 * 1024.0, 1024.0 * 1024.0 * 0.04) << "request " << request;
  }
}

TEST(TokenBucket, ZeroSizeDoesNotLimit) {
  TokenBucket b;
  EXPECT_FALSE(b.limits());
  EXPECT_TRUE(b.try_consume(UINT64_MAX, kT0));
  EXPECT_EQ(b.wait_ns(UINT64_MAX, kT0), 0u);
}

TEST(TokenBucket, HugeTimesAndSizesDoNotOverflow) {
  TokenBucket b(bucket(TokenBucketConfig::kMaxTokens, 0, TokenBucketConfig::kMaxRefillMs), 0);
  EXPECT_TRUE(b.try_consume(TokenBucketConfig::kMaxTokens, 0));
  EXPECT_EQ(b.balance(UINT64_MAX), static_cast<int64_t>(TokenBucketConfig::kMaxTokens));
  EXPECT_TRUE(b.try_consume(UINT64_MAX, UINT64_MAX));  // oversized, debt bounded
  EXPECT_GT(b.wait_ns(1, UINT64_MAX), 0u);
  // A clock that goes backwards refills nothing.
  TokenBucket c(bucket(10, 0, 1), kT0);
  EXPECT_TRUE(c.try_consume(10, kT0));
  EXPECT_EQ(c.balance(kT0 - kMs), 0);
}

TEST(RateLimiter, BytesAndOpsTogetherAllOrNothing) {
  RateLimitConfig cfg;
  cfg.bandwidth = bucket(1000, 0, 100);  // 10 KB/s
  cfg.ops = bucket(2, 0, 100);           // 20 ops/s
  RateLimiter l(cfg, kT0);
  EXPECT_EQ(l.consume(100, kT0), 0u);
  EXPECT_EQ(l.consume(100, kT0), 0u);
  // Ops run out first: 50 ms for one op; the bytes bucket is not charged meanwhile.
  EXPECT_EQ(l.consume(100, kT0), 50 * kMs);
  EXPECT_EQ(l.bandwidth().balance(kT0), 800);
  EXPECT_EQ(l.consume(100, kT0 + 50 * kMs), 0u);
  // Now bytes: 1000 wanted, ~1300 there after 50 ms... but the ops bucket is empty again.
  EXPECT_EQ(l.consume(900, kT0 + 50 * kMs), 50 * kMs);
  EXPECT_EQ(l.ops().balance(kT0 + 50 * kMs), 0);
  // Bytes refuse, ops untouched.
  RateLimiter m(cfg, kT0);
  EXPECT_EQ(m.consume(1000, kT0), 0u);
  EXPECT_EQ(m.consume(10, kT0), 1 * kMs);
  EXPECT_EQ(m.ops().balance(kT0), 1);
}

TEST(RateLimiter, UnlimitedBucketsPassEverything) {
  RateLimitConfig cfg;
  cfg.ops = bucket(1, 0, 1000);
  RateLimiter l(cfg, kT0);
  EXPECT_TRUE(l.limits());
  EXPECT_EQ(l.consume(1ull << 40, kT0), 0u);  // no byte limit
  EXPECT_GT(l.consume(0, kT0), 0u);
  EXPECT_FALSE(RateLimiter().limits());
  EXPECT_EQ(RateLimiter().consume(123, kT0), 0u);
}

TEST(TokenBucketConfig, ValidateNamesTheField) {
  expect_error([] { bucket(10, 0, 0).validate("drive 0 bandwidth"); },
               {"drive 0 bandwidth", "refill_time_ms"});
  expect_error([] { bucket(0, 0, 10).validate("x"); }, {"size 0", "both"});
  expect_error([] { bucket(0, 5, 0).validate("x"); }, {"one_time_burst 5"});
  expect_error([] { bucket(TokenBucketConfig::kMaxTokens + 1, 0, 10).validate("x"); },
               {"size", "above the limit"});
  expect_error([] { bucket(1, 0, TokenBucketConfig::kMaxRefillMs + 1).validate("x"); },
               {"refill_time_ms"});
  bucket(0, 0, 0).validate("x");
  bucket(10, 5, 10).validate("x");
}

}  // namespace
}  // namespace wisp
