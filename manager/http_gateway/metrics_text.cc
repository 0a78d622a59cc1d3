#include "manager/http_gateway/metrics_text.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace wisp::http_gateway {
namespace {

class MetricsWriter {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels` is already rendered: "" or {a="x",b="y"}.
  void sample(std::string_view name, const std::string& labels, double value) {
    out_ += name;
    out_ += labels;
    out_ += ' ';
    out_ += format_sample(value);
    out_ += '\n';
  }
  void sample_u64(std::string_view name, const std::string& labels, uint64_t value) {
    out_ += name;
    out_ += labels;
    out_ += ' ';
    out_ += std::to_string(value);
    out_ += '\n';
  }
  void gauge(const char* name, const char* help, uint64_t value) {
    family(name, "gauge", help);
    sample_u64(name, "", value);
  }
  void comment(const std::string& line) {
    out_ += "# ";
    out_ += line;
    out_ += '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + escape_label_value(value) + "\"";
}

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// A histogram serve sent is rendered only when it is one Prometheus can read: one count per
// bound plus +Inf, bounds increasing, counts cumulative. Else it is left out, with a comment.
bool histogram_is_valid(api::serve::StageHistogram::Reader h) {
  auto bounds = h.getBucketBounds();
  auto counts = h.getBucketCounts();
  if (counts.size() != bounds.size() + 1) return false;
  for (unsigned i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) return false;
    if (i > 0 && !(bounds[i] > bounds[i - 1])) return false;
  }
  for (unsigned i = 1; i < counts.size(); ++i)
    if (counts[i] < counts[i - 1]) return false;
  return counts[counts.size() - 1] == h.getCount();
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_sample(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

std::string render_metrics(api::serve::Stats::Reader stats) {
  MetricsWriter w;
  w.family("wisp_invocations_total", "counter",
           "Invocations by template and outcome (ok: ran to an exit code; timeout, limit, "
           "vm_failed, overloaded, error).");
  for (auto t : stats.getTemplates()) {
    for (auto o : t.getOutcomes()) {
      w.sample_u64("wisp_invocations_total",
                   "{" + label("template", text(t.getName())) + "," +
                       label("outcome", text(o.getOutcome())) + "}",
                   o.getCount());
    }
  }
  w.family("wisp_criu_fallbacks_total", "counter",
           "Invocations served from the template's CRIU image (its VM snapshot does not fit "
           "this host), by template.");
  for (auto t : stats.getTemplates())
    if (t.getCriuFallbacks() > 0)
      w.sample_u64("wisp_criu_fallbacks_total", "{" + label("template", text(t.getName())) + "}",
                   t.getCriuFallbacks());
  w.family("wisp_warm_touched_pages_total", "counter",
           "Guest pages warm clones read ahead before being paused (their template's working "
           "set), by template.");
  for (auto t : stats.getTemplates())
    if (t.getWarmTouchedPages() > 0)
      w.sample_u64("wisp_warm_touched_pages_total",
                   "{" + label("template", text(t.getName())) + "}", t.getWarmTouchedPages());
  w.family("wisp_stage_duration_seconds", "histogram",
           "Latency of each stage of an invocation (restore, reconnect, invoke, total, ...; "
           "criu: a CRIU fallback's cold boot and worker restore).");
  for (auto h : stats.getStages()) {
    std::string stage = label("stage", text(h.getStage()));
    if (!histogram_is_valid(h)) {
      w.comment("stage histogram left out (malformed): " + escape_label_value(text(h.getStage())));
      continue;
    }
    auto bounds = h.getBucketBounds();
    auto counts = h.getBucketCounts();
    for (unsigned i = 0; i < counts.size(); ++i) {
      std::string le = i < bounds.size() ? format_sample(bounds[i]) : "+Inf";
      w.sample_u64("wisp_stage_duration_seconds_bucket", "{" + stage + "," + label("le", le) + "}",
                   counts[i]);
    }
    w.sample("wisp_stage_duration_seconds_sum", "{" + stage + "}", h.getSum());
    w.sample_u64("wisp_stage_duration_seconds_count", "{" + stage + "}", h.getCount());
  }
  w.family("wisp_warm_clones_ready", "gauge", "Warm clones restored and waiting, by template.");
  for (auto t : stats.getTemplates())
    w.sample_u64("wisp_warm_clones_ready", "{" + label("template", text(t.getName())) + "}",
                 t.getWarmReady());
  w.family("wisp_warm_clones_target", "gauge", "Warm clones serve keeps, by template.");
  for (auto t : stats.getTemplates())
    w.sample_u64("wisp_warm_clones_target", "{" + label("template", text(t.getName())) + "}",
                 t.getWarmTarget());
  w.family("wisp_in_flight", "gauge", "Calls running now, by template.");
  for (auto t : stats.getTemplates())
    w.sample_u64("wisp_in_flight", "{" + label("template", text(t.getName())) + "}",
                 t.getInFlight());
  w.gauge("wisp_pool_idle", "Pre-jailed VMM processes waiting for an order.", stats.getPoolIdle());
  w.gauge("wisp_pool_target", "Pre-jailed VMM processes serve keeps.", stats.getPoolTarget());
  w.gauge("wisp_huge_page_layer_files",
          "Memory files the pool's restores map from serve's tmpfs of 2 MiB pages.",
          stats.getHugePageLayerFiles());
  w.gauge("wisp_huge_page_layer_bytes", "What those copies hold.", stats.getHugePageLayerBytes());
  w.gauge("wisp_vms_running", "VMMs with a guest (clones, sandboxes, template builds).",
          stats.getVmsRunning());
  w.gauge("wisp_vms_max", "The VM count limit (--max-vms).", stats.getMaxVms());
  w.gauge("wisp_memory_committed_bytes", "Guest memory admitted (the --max-memory budget's use).",
          stats.getMemoryCommittedMib() * 1024 * 1024);
  w.gauge("wisp_memory_max_bytes", "The guest memory budget (--max-memory).",
          stats.getMaxMemoryMib() * 1024 * 1024);
  w.gauge("wisp_sandboxes", "Sandboxes alive.", stats.getSandboxes());
  w.gauge("wisp_requests_waiting", "Requests queued for capacity.", stats.getWaiting());
  w.gauge("wisp_draining", "1 while serve drains (takes no new work).",
          stats.getDraining() ? 1 : 0);
  return w.take();
}

}  // namespace wisp::http_gateway
