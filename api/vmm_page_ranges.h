// api/vmm.capnp's PageRange lists as (first page, count) pairs, both ways: the VMM's control
// server, the manager's synchronous client and serve's asynchronous link all speak them.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "api/vmm.capnp.h"

namespace wisp::api {

using PageRuns = std::vector<std::pair<uint64_t, uint64_t>>;

// Fills the `ranges` field of `message` (a builder of a request or results that has one).
template <typename Builder>
void put_page_ranges(Builder&& message, const PageRuns& runs) {
  auto out = message.initRanges(static_cast<unsigned>(runs.size()));
  for (size_t i = 0; i < runs.size(); ++i) {
    out[i].setFirst(runs[i].first);
    out[i].setCount(runs[i].second);
  }
}

inline PageRuns page_runs_of(capnp::List<PageRange>::Reader list) {
  PageRuns out;
  out.reserve(list.size());
  for (auto r : list) out.emplace_back(r.getFirst(), r.getCount());
  return out;
}

}  // namespace wisp::api
