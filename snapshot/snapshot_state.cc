#include "snapshot/snapshot_state.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/error.h"
#include "base/hex.h"

namespace wisp::snapshot {
namespace {

[[noreturn]] void reject(const std::string& file, const std::string& what) {
  throw Error(file + ": invalid snapshot state: " + what);
}

void check_regions(const std::vector<MemoryFileRegion>& regions, const std::string& file) {
  if (regions.empty() || regions.size() > kMaxRegions) {
    reject(file, std::to_string(regions.size()) + " memory regions (expected 1.." +
                     std::to_string(kMaxRegions) + ")");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryFileRegion& r = regions[i];
    std::string who = "memory region " + std::to_string(i) + " (guest " + hex(r.guest_base) +
                      ", size " + hex(r.size) + ", file offset " + hex(r.file_offset) + ")";
    if (r.size == 0) reject(file, who + ": empty");
    if ((r.guest_base | r.size | r.file_offset) % kPageSize != 0) {
      reject(file, who + ": not 4 KiB page-aligned");
    }
    if (r.guest_base + r.size < r.guest_base || r.file_offset + r.size < r.file_offset) {
      reject(file, who + ": wraps around the address space");
    }
  }
  // Sorted by start, each range must end before the next begins (guest space, then file).
  auto check_disjoint = [&](auto start, const char* space) {
    std::vector<const MemoryFileRegion*> sorted;
    for (const MemoryFileRegion& r : regions) sorted.push_back(&r);
    std::sort(sorted.begin(), sorted.end(),
              [&](auto* a, auto* b) { return start(*a) < start(*b); });
    for (size_t i = 1; i < sorted.size(); ++i) {
      if (start(*sorted[i - 1]) + sorted[i - 1]->size > start(*sorted[i])) {
        reject(file,
               std::string("memory regions overlap in ") + space + " at " + hex(start(*sorted[i])));
      }
    }
  };
  check_disjoint([](const MemoryFileRegion& r) { return r.guest_base; }, "guest memory");
  check_disjoint([](const MemoryFileRegion& r) { return r.file_offset; }, "the memory file");
}

// The machine must have exactly the memory the layout maps, and a diff's bitmap must cover
// exactly the memory file's pages.
void check_memory_and_diff(const SnapshotState& state, const std::string& file) {
  uint64_t total = 0;
  for (const MemoryFileRegion& r : state.memory) total += r.size;
  if (state.machine.mem_bytes != total) {
    reject(file, "machine memory size " + std::to_string(state.machine.mem_bytes) +
                     " does not match the memory layout's " + std::to_string(total) + " bytes");
  }
  if (state.id.size() > kMaxNameBytes) reject(file, "snapshot id too long");
  if (state.is_diff()) {
    if (state.diff.parent_id.size() > kMaxNameBytes || state.diff.parent_dir.empty() ||
        state.diff.parent_dir.size() > kMaxPathBytes)
      reject(file, "diff snapshot with a malformed parent reference");
    uint64_t pages = memory_file_size(state.memory) / kPageSize;
    if (state.diff.pages.size() != (pages + 7) / 8) {
      reject(file, "diff page bitmap has " + std::to_string(state.diff.pages.size()) +
                       " bytes, the memory layout needs " + std::to_string((pages + 7) / 8));
    }
  } else if (!state.diff.pages.empty() || !state.diff.parent_dir.empty()) {
    reject(file, "diff fields set on a full snapshot (no parent id)");
  }
}

}  // namespace

void validate_state(const SnapshotState& state, const std::string& file) {
  try {
    state.machine.validate();
  } catch (const Error& e) {
    reject(file, e.what());
  }
  check_regions(state.memory, file);
  check_memory_and_diff(state, file);
}

uint64_t memory_file_size(const std::vector<MemoryFileRegion>& regions) {
  uint64_t end = 0;
  for (const MemoryFileRegion& r : regions) end = std::max(end, r.file_offset + r.size);
  return end;
}

void check_memory_file_size(const std::vector<MemoryFileRegion>& regions, uint64_t file_size,
                            const std::string& memory_file) {
  uint64_t expected = memory_file_size(regions);
  if (file_size != expected) {
    throw Error(memory_file + ": memory file is " + std::to_string(file_size) +
                " bytes but the state's memory layout needs " + std::to_string(expected) +
                (file_size < expected ? " (truncated?)" : " (wrong memory file?)"));
  }
}

std::vector<MemoryFileRegion> pack_regions(
    const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  std::vector<MemoryFileRegion> out;
  uint64_t offset = 0;
  for (auto [base, size] : ranges) {
    out.push_back({base, size, offset});
    offset += size;
  }
  return out;
}

std::string cpu_vendor(const CpuidEntries& cpuid) {
  for (const CpuidEntry& e : cpuid) {
    if (e.function != 0) continue;
    char v[13] = {};
    std::memcpy(v, &e.ebx, 4);
    std::memcpy(v + 4, &e.edx, 4);
    std::memcpy(v + 8, &e.ecx, 4);
    return v;
  }
  return "";
}

std::string cpu_mismatch(const CpuidEntries& saved, const CpuidEntries& host) {
  std::string saved_vendor = cpu_vendor(saved), host_vendor = cpu_vendor(host);
  if (saved_vendor != host_vendor)
    return "snapshot CPU vendor \"" + saved_vendor + "\", host \"" + host_vendor + "\"";
  // The registers the guest saw; `flags` is how KVM indexes an entry, not a feature.
  auto same_registers = [](const CpuidEntry& a, const CpuidEntry& b) {
    return a.eax == b.eax && a.ebx == b.ebx && a.ecx == b.ecx && a.edx == b.edx;
  };
  for (const CpuidEntry& leaf : saved) {
    auto it = std::find_if(host.begin(), host.end(), [&](const CpuidEntry& h) {
      return h.function == leaf.function && h.index == leaf.index;
    });
    std::string where = "CPUID leaf " + hex(leaf.function) + "." + std::to_string(leaf.index);
    if (it == host.end()) return where + " is missing on this host";
    if (!same_registers(*it, leaf)) return where + " differs (different CPU feature set)";
  }
  return "";
}

}  // namespace wisp::snapshot
