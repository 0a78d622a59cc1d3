#include "manager/service/service_stats.h"

#include <algorithm>

namespace wisp::service {

const std::vector<double>& Histogram::bounds() {
  static const std::vector<double> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10,   30};
  return kBounds;
}

void Histogram::observe(double seconds) {
  const auto& b = bounds();
  size_t i = static_cast<size_t>(std::lower_bound(b.begin(), b.end(), seconds) - b.begin());
  ++buckets_[i];
  sum_ += seconds;
  ++count_;
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out(buckets_.size());
  uint64_t total = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) out[i] = total += buckets_[i];
  return out;
}

void ServiceStats::observe(const std::string& stage, double ms) {
  for (const char* s : kStages)
    if (stage == s) stages_[stage].observe(ms / 1000.0);
}

void ServiceStats::count(const std::string& template_name, const std::string& outcome) {
  ++outcomes_[template_name][outcome];
}

std::string outcome_of_error(const std::string& description) {
  // RPC adds "remote exception: " in front of a description that crossed a connection.
  std::string d = description;
  const std::string remote = "remote exception: ";
  if (d.rfind(remote, 0) == 0) d = d.substr(remote.size());
  if (d.rfind("overloaded:", 0) == 0) return "overloaded";
  if (d.rfind("vm-failed:", 0) == 0) return "vm_failed";
  return "error";
}

}  // namespace wisp::service
