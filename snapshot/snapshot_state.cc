#include "snapshot/snapshot_state.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>

#include "base/error.h"
#include "base/hex.h"

namespace wisp::snapshot {
namespace {


[[noreturn]] void reject(const std::string& file, const std::string& what) {
  throw Error(file + ": invalid snapshot state: " + what);
}

void check_blob(const Bytes& blob, const std::string& what, const std::string& file) {
  if (blob.size() > kMaxBlobBytes) {
    reject(file, what + " is " + std::to_string(blob.size()) + " bytes (limit " +
                     std::to_string(kMaxBlobBytes) + ")");
  }
}

void check_vcpus(const SnapshotState& s, const std::string& file) {
  if (s.vcpus.empty() || s.vcpus.size() > kMaxVcpus) {
    reject(file, std::to_string(s.vcpus.size()) + " vCPUs (expected 1.." +
                     std::to_string(kMaxVcpus) + ")");
  }
  std::vector<bool> seen(s.vcpus.size());
  for (const VcpuState& v : s.vcpus) {
    std::string who = "vCPU " + std::to_string(v.id);
    if (v.id >= s.vcpus.size()) {
      reject(file, who + ": id out of range for " + std::to_string(s.vcpus.size()) + " vCPUs");
    }
    if (seen[v.id]) reject(file, who + ": duplicate id");
    seen[v.id] = true;
    if (v.lapic.size() != kLapicBytes) {
      reject(file, who + ": LAPIC state is " + std::to_string(v.lapic.size()) +
                       " bytes (expected " + std::to_string(kLapicBytes) + ")");
    }
    if (v.msrs.size() > kMaxMsrsPerVcpu) {
      reject(file, who + ": " + std::to_string(v.msrs.size()) + " MSRs (limit " +
                       std::to_string(kMaxMsrsPerVcpu) + ")");
    }
    for (auto [blob, name] : {std::pair{&v.regs, "regs"},
                              {&v.sregs, "sregs"},
                              {&v.fpu, "fpu"},
                              {&v.xsave, "xsave"},
                              {&v.xcrs, "xcrs"},
                              {&v.events, "events"},
                              {&v.debugregs, "debugregs"}}) {
      check_blob(*blob, who + " " + name, file);
    }
  }
}

void check_regions(const std::vector<MemoryRegion>& regions, const std::string& file) {
  if (regions.empty() || regions.size() > kMaxRegions) {
    reject(file, std::to_string(regions.size()) + " memory regions (expected 1.." +
                     std::to_string(kMaxRegions) + ")");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegion& r = regions[i];
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
    std::vector<const MemoryRegion*> sorted;
    for (const MemoryRegion& r : regions) sorted.push_back(&r);
    std::sort(sorted.begin(), sorted.end(),
              [&](auto* a, auto* b) { return start(*a) < start(*b); });
    for (size_t i = 1; i < sorted.size(); ++i) {
      if (start(*sorted[i - 1]) + sorted[i - 1]->size > start(*sorted[i])) {
        reject(file,
               std::string("memory regions overlap in ") + space + " at " + hex(start(*sorted[i])));
      }
    }
  };
  check_disjoint([](const MemoryRegion& r) { return r.guest_base; }, "guest memory");
  check_disjoint([](const MemoryRegion& r) { return r.file_offset; }, "the memory file");
}

void check_devices(const std::vector<DeviceState>& devices, const std::string& file) {
  if (devices.size() > kMaxDevices) {
    reject(file,
           std::to_string(devices.size()) + " devices (limit " + std::to_string(kMaxDevices) + ")");
  }
  std::set<std::pair<std::string, std::string>> seen;
  for (const DeviceState& d : devices) {
    if (d.kind.empty() || d.kind.size() > kMaxNameBytes || d.name.size() > kMaxNameBytes) {
      reject(file, "device entry with a missing or overlong kind/name");
    }
    std::string who = "device " + d.kind + " \"" + d.name + "\"";
    if (!seen.emplace(d.kind, d.name).second) reject(file, who + ": listed twice");
    check_blob(d.data, who, file);
  }
}

}  // namespace

// The machine description must agree with the memory layout, and a diff's bitmap must cover
// exactly the memory file's pages.
static void check_machine(const SnapshotState& state, const std::string& file) {
  const MachineConfigState& m = state.machine;
  uint64_t total = 0;
  for (const MemoryRegion& r : state.memory) total += r.size;
  if (m.mem_bytes != total) {
    reject(file, "machine memory size " + std::to_string(m.mem_bytes) +
                     " does not match the memory layout's " + std::to_string(total) + " bytes");
  }
  if (m.drives.size() > kMaxDrives) reject(file, "too many drives");
  for (const DriveConfig& d : m.drives) {
    if (d.path.empty() || d.path.size() > kMaxPathBytes || d.path.find('\0') != std::string::npos)
      reject(file, "a drive has an empty, over-long or malformed path");
  }
  if (m.vsock && (m.vsock_cid < 3 || m.vsock_cid >= 0xffffffffull))
    reject(file, "vsock guest CID " + std::to_string(m.vsock_cid) + " is reserved or too large");
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

void validate_state(const SnapshotState& state, const std::string& file) {
  if (state.metadata.cpuid.size() > kMaxCpuidLeaves) {
    reject(file, std::to_string(state.metadata.cpuid.size()) + " CPUID leaves (limit " +
                     std::to_string(kMaxCpuidLeaves) + ")");
  }
  check_vcpus(state, file);
  check_regions(state.memory, file);
  check_devices(state.devices, file);
  for (auto [blob, name] : {std::pair{&state.irqchip.pic_master, "PIC master"},
                            {&state.irqchip.pic_slave, "PIC slave"},
                            {&state.irqchip.ioapic, "IOAPIC"},
                            {&state.pit, "PIT"}}) {
    check_blob(*blob, name, file);
  }
  check_machine(state, file);
}

uint64_t memory_file_size(const std::vector<MemoryRegion>& regions) {
  uint64_t end = 0;
  for (const MemoryRegion& r : regions) end = std::max(end, r.file_offset + r.size);
  return end;
}

void check_memory_file_size(const std::vector<MemoryRegion>& regions, uint64_t file_size,
                            const std::string& memory_file) {
  uint64_t expected = memory_file_size(regions);
  if (file_size != expected) {
    throw Error(memory_file + ": memory file is " + std::to_string(file_size) +
                " bytes but the state's memory layout needs " + std::to_string(expected) +
                (file_size < expected ? " (truncated?)" : " (wrong memory file?)"));
  }
}

std::vector<MemoryRegion> pack_regions(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  std::vector<MemoryRegion> out;
  uint64_t offset = 0;
  for (auto [base, size] : ranges) {
    out.push_back({base, size, offset});
    offset += size;
  }
  return out;
}

std::string cpu_mismatch(const Metadata& saved, const std::string& host_vendor,
                         const std::vector<CpuidLeaf>& host_cpuid) {
  if (saved.cpu_vendor != host_vendor) {
    return "snapshot CPU vendor \"" + saved.cpu_vendor + "\", host \"" + host_vendor + "\"";
  }
  for (const CpuidLeaf& leaf : saved.cpuid) {
    auto it = std::find_if(host_cpuid.begin(), host_cpuid.end(), [&](const CpuidLeaf& h) {
      return h.function == leaf.function && h.index == leaf.index;
    });
    std::string where = "CPUID leaf " + hex(leaf.function) + "." + std::to_string(leaf.index);
    if (it == host_cpuid.end()) return where + " is missing on this host";
    if (!(*it == leaf)) return where + " differs (different CPU feature set)";
  }
  return "";
}

}  // namespace wisp::snapshot
