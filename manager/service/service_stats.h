// What `wisp serve` counts for Wisp.stats() (and the gateway's /metrics): latency histograms
// per stage with fixed buckets (Prometheus style) and each template's call outcomes.
//
// Threads: serve's loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace wisp::service {

class Histogram {
 public:
  // Upper bounds in seconds, 1 ms to 30 s: a restore on bare metal to a cold boot in the testbed.
  static const std::vector<double>& bounds();
  void observe(double seconds);
  // Cumulative counts, one per bound and a last one for +Inf (== count()).
  std::vector<uint64_t> cumulative() const;
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<uint64_t> buckets_ = std::vector<uint64_t>(bounds().size() + 1, 0);
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The stages Timings reports, in Stats order: issue 12's four, then the parts of reconnect
// (connect for a clone of the pool, resume for a warm one; reseed for both) and of invoke
// (the agent's own time for the handler); last criu: a call served from the template's CRIU
// image, its cold boot and worker restore (in place of restore, reconnect and connect).
inline const char* const kStages[] = {"restore", "reconnect", "invoke",  "total", "connect",
                                      "resume",  "reseed",    "handler", "criu"};

class ServiceStats {
 public:
  // `stage` is one of kStages; anything else is ignored.
  void observe(const std::string& stage, double ms);
  // `outcome`: "ok", "timeout", "limit", "vm_failed", "overloaded", "error".
  void count(const std::string& template_name, const std::string& outcome);
  const std::map<std::string, Histogram>& stages() const { return stages_; }
  const std::map<std::string, std::map<std::string, uint64_t>>& outcomes() const {
    return outcomes_;
  }
  // A call of `template_name` served from its CRIU image.
  void count_criu_fallback(const std::string& template_name) { ++criu_fallbacks_[template_name]; }
  const std::map<std::string, uint64_t>& criu_fallbacks() const { return criu_fallbacks_; }
  // A warm clone of `template_name` read `pages` of its working set ahead.
  void count_warm_touch(const std::string& template_name, uint64_t pages) {
    warm_touched_pages_[template_name] += pages;
  }
  const std::map<std::string, uint64_t>& warm_touched_pages() const { return warm_touched_pages_; }

 private:
  std::map<std::string, Histogram> stages_;
  std::map<std::string, std::map<std::string, uint64_t>> outcomes_;
  std::map<std::string, uint64_t> criu_fallbacks_;
  std::map<std::string, uint64_t> warm_touched_pages_;
};

// The outcome word of an error description ("overloaded: ..." -> "overloaded").
std::string outcome_of_error(const std::string& description);

}  // namespace wisp::service
