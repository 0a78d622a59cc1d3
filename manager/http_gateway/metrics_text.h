// Wisp.stats() rendered in the Prometheus text exposition format, version 0.0.4: HELP and TYPE
// lines before each family, label values escaped (\\, \", \n), floats as Prometheus reads them
// (shortest round-trip form, +Inf, -Inf, NaN). Metric names are fixed here; names that come
// from serve (templates, stages, outcomes) only ever appear as label values.
#pragma once

#include <string>
#include <string_view>

#include "api/wisp.capnp.h"

namespace wisp::http_gateway {

// The Content-Type of the rendered text.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_metrics(api::serve::Stats::Reader stats);

// A label value escaped for the text format.
std::string escape_label_value(std::string_view value);

// A sample value as the text format writes it.
std::string format_sample(double value);

}  // namespace wisp::http_gateway
