#include "snapshot/machine_snapshot.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "base/hex.h"
#include "snapshot/crc64.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/snapshot_trust.h"
#include "vmm/virtio/device_kinds.h"

namespace wisp::snapshot {
namespace {

std::string random_id() {
  uint8_t b[16];
  if (getrandom(b, sizeof(b), 0) != static_cast<ssize_t>(sizeof(b))) throw_errno("getrandom");
  return hex_bytes(b);
}

std::vector<MemoryFileRegion> file_layout(const std::vector<wisp::MemoryRegion>& regions) {
  std::vector<MemoryFileRegion> out;
  for (const wisp::MemoryRegion& r : regions)
    out.push_back({r.guest_base.value(), r.size, r.file_offset});
  return out;
}

SnapshotState describe(const MachineState& m, const GuestMemory& mem, const SaveOptions& options) {
  SnapshotState s;
  s.metadata.creator_version = options.creator_version;
  s.metadata.created_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  s.memory = file_layout(mem.regions());
  s.machine = m;
  // What the devices depend on outside the VM (a drive's image), as it is now: a restore
  // refuses a resource that changed since.
  for (VirtioSlotState& slot : s.machine.virtio) slot.spec = record_identity(slot.spec);
  s.id = random_id();
  return s;
}

// The machine a diff layer and its parent describe must be the same: memory and devices.
bool same_hardware(const SnapshotState& a, const SnapshotState& b) {
  if (a.memory != b.memory || a.machine.mem_bytes != b.machine.mem_bytes ||
      a.machine.virtio.size() != b.machine.virtio.size())
    return false;
  for (size_t i = 0; i < a.machine.virtio.size(); ++i)
    if (a.machine.virtio[i].spec != b.machine.virtio[i].spec) return false;
  return true;
}

bool bit(const Bytes& bitmap, uint64_t i) { return (bitmap[i / 8] >> (i % 8)) & 1; }

// One layer of a (possibly diff) snapshot chain, top first.
struct Layer {
  std::string dir;
  SnapshotState state;
  UniqueFd memory;
};

// `given`: the file opened already (SnapshotChain::base_memory), checked the same way.
UniqueFd open_memory(const std::string& dir, const SnapshotState& state, UniqueFd given = {}) {
  std::string path = dir + "/" + kMemoryFileName;
  if (given) path += " (the copy given as a descriptor)";
  UniqueFd fd = given ? std::move(given) : UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("memory file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("memory file " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": memory file is not a regular file");
  check_memory_file_size(state.memory, static_cast<uint64_t>(st.st_size), path);
  return fd;
}

}  // namespace

SaveResult save_machine_snapshot(const SnapshotFiles& files, const MachineState& state,
                                 const GuestMemory& memory, const SaveOptions& options) {
  uint64_t t0 = now_ns();
  SnapshotState s = describe(state, memory, options);
  if (options.diff && !memory.is_file_private())
    throw Error("a diff snapshot needs a VM restored from a snapshot (this one was booted)");
  // The pages worth reading: a diff's layer is exactly the written pages; a full snapshot
  // skips what the backing file has no data for.
  std::vector<bool> pages = options.diff ? memory.written_pages() : memory.data_pages();
  SaveResult result;
  if (options.diff) {
    s.diff.parent_dir = options.parent_dir;
    s.diff.parent_id = options.parent_id;
    s.diff.pages.assign((pages.size() + 7) / 8, 0);
    for (size_t i = 0; i < pages.size(); ++i)
      if (pages[i]) {
        s.diff.pages[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
        ++result.pages_in_layer;
      }
  }
  std::vector<RegionContents> regions;
  for (const wisp::MemoryRegion& r : memory.regions())
    regions.push_back({{r.guest_base.value(), r.size, r.file_offset}, {r.host, r.size}});
  result.state_ms = ms_since(t0);
  uint64_t t1 = now_ns();
  SnapshotWriteOptions write_options;
  write_options.data_pages = &pages;
  MemoryWriteStats stats = write_snapshot_files(files, s, regions, write_options);
  result.memory_ms = ms_since(t1);
  result.id = s.id;
  result.memory_file_bytes = stats.file_bytes;
  result.pages_written = stats.data_bytes / kPageSize;
  struct stat st;
  if (::fstat(files.memory_fd, &st) == 0)
    result.memory_disk_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  return result;
}

namespace {

// Reads a snapshot and, for a diff, its parents: each layer's state validated, its memory file
// opened and checked, and each parent the one its child was made on.
// Opens each layer's memory file (checked against its state).
std::vector<Layer> open_chain(SnapshotChain chain) {
  std::vector<Layer> layers;
  for (size_t i = 0; i < chain.dirs.size(); ++i) {
    const bool base = i + 1 == chain.dirs.size();
    UniqueFd fd = open_memory(chain.dirs[i], chain.states[i],
                              base ? std::move(chain.base_memory) : UniqueFd());
    layers.push_back({std::move(chain.dirs[i]), std::move(chain.states[i]), std::move(fd)});
  }
  return layers;
}

// Maps the base memory file privately and each diff layer's pages over it.
GuestMemory map_chain(std::vector<Layer>& chain) {
  const SnapshotState& top = chain.front().state;
  GuestMemory memory =
      GuestMemory::map_file_private(std::move(chain.back().memory), top.machine.mem_bytes);
  // Layers from the one just above the base up to the top: each covers its pages.
  for (size_t li = chain.size() - 1; li-- > 0;) {
    const Layer& layer = chain[li];
    const Bytes& bitmap = layer.state.diff.pages;
    uint64_t n = memory.page_count();
    for (uint64_t p = 0; p < n;) {
      if (!bit(bitmap, p)) {
        ++p;
        continue;
      }
      uint64_t run = p;
      while (run < n && bit(bitmap, run)) ++run;
      memory.overlay_file_pages(layer.memory.get(), p, run - p);
      p = run;
    }
  }
  return memory;
}

}  // namespace

namespace {

// The layers of the snapshot at `dir`, top first, each parent found by the parent rule
// (snapshot_trust.h) and checked against its child. Drives not admitted yet.
SnapshotChain read_layers(const std::string& dir) {
  SnapshotChain chain;
  std::string current = dir;
  for (;;) {
    if (chain.states.size() > kMaxDiffDepth)
      throw Error(dir + ": more than " + std::to_string(kMaxDiffDepth) + " diff layers");
    SnapshotState st = read_state_file(current + "/" + kStateFileName);
    if (!chain.states.empty()) {
      const std::string child_file = chain.dirs.back() + "/" + kStateFileName;
      const SnapshotState& child = chain.states.back();
      if (st.id != child.diff.parent_id)
        throw Error(child_file + ": parent " + current + " has snapshot id " + st.id +
                    ", the diff was made on " + child.diff.parent_id);
      if (!same_hardware(st, child))
        throw Error(child_file + ": machine differs from its parent's in " + current);
    }
    std::string next;
    if (st.is_diff())
      next = parent_snapshot_dir(current, st.diff.parent_dir, current + "/" + kStateFileName);
    chain.dirs.push_back(current);
    chain.states.push_back(std::move(st));
    if (next.empty()) return chain;
    current = next;
  }
}

}  // namespace

SnapshotChain read_snapshot_chain(const std::string& dir, const std::vector<BlockSpec>& drives) {
  SnapshotChain chain = read_layers(dir);
  admit_drives(chain, drives);
  return chain;
}

LoadedSnapshot load_machine_snapshot(const std::string& dir, const HostCpuid& host_cpuid) {
  return load_machine_snapshot(read_snapshot_chain(dir), host_cpuid);
}

namespace {

// The top layer's machine checked against this host, and the memory mapped. `check_drives`:
// the drive paths are the host's (a restore by directory), so their images are checked again.
LoadedSnapshot load_layers(std::vector<Layer> chain, const HostCpuid& host_cpuid,
                           bool check_drives) {
  const Layer& top = chain.front();
  const std::string top_file = top.dir + "/" + kStateFileName;
  const MachineState& machine = top.state.machine;
  for (const VirtioSlotState& slot : machine.virtio) {
    if (!check_drives) break;
    try {
      check_identity(slot.spec);
    } catch (const Error& e) {
      throw Error(top_file + ": " + e.what());
    }
  }
  // Restore maps the file as guest RAM directly: its layout must be the one wisp builds.
  if (file_layout(GuestMemory::layout(machine.mem_bytes)) != top.state.memory)
    throw Error(top_file + ": memory layout is not the one wisp uses for " +
                std::to_string(machine.mem_bytes) + " bytes of RAM");
  CpuidEntries host = host_cpuid(static_cast<uint32_t>(machine.vcpus.size()), machine.cpu_model);
  std::string why = cpu_mismatch(machine.cpuid, host);
  if (!why.empty()) throw Error(top_file + ": snapshot is from another CPU: " + why);

  LoadedSnapshot out{machine, map_chain(chain), top.state.id, static_cast<uint32_t>(chain.size())};
  return out;
}

// The memory file `fd` of a layer: a regular file of the size its state's layout says.
void check_memory_fd(int fd, const SnapshotState& state, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("memory file " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": memory file is not a regular file");
  check_memory_file_size(state.memory, static_cast<uint64_t>(st.st_size), path);
}

}  // namespace

LoadedSnapshot load_machine_snapshot(SnapshotChain snapshot_chain, const HostCpuid& host_cpuid) {
  return load_layers(open_chain(std::move(snapshot_chain)), host_cpuid, true);
}

LoadedSnapshot load_machine_snapshot(std::vector<SnapshotLayerFds> fds, const HostCpuid& host_cpuid,
                                     const std::string& name) {
  if (fds.empty()) throw Error(name + ": no snapshot layer");
  if (fds.size() > kMaxDiffDepth + 1)
    throw Error(name + ": more than " + std::to_string(kMaxDiffDepth) + " diff layers");
  std::vector<Layer> chain;
  for (size_t i = 0; i < fds.size(); ++i) {
    // The layers have no directory here: "NAME layer I" stands for it in messages.
    std::string dir = name + " layer " + std::to_string(i);
    SnapshotState st = read_state_fd(fds[i].state.get(), dir + "/" + kStateFileName);
    bool last = i + 1 == fds.size();
    if (st.is_diff() == last)
      throw Error(dir + (last ? ": the last layer is a diff (its parent is missing)"
                              : ": a full snapshot, yet more layers follow it"));
    if (!chain.empty()) {
      const SnapshotState& child = chain.back().state;
      if (st.id != child.diff.parent_id)
        throw Error(dir + ": has snapshot id " + st.id + ", the diff above was made on " +
                    child.diff.parent_id);
      if (!same_hardware(st, child)) throw Error(dir + ": machine differs from the diff's above");
    }
    check_memory_fd(fds[i].memory.get(), st, dir + "/" + kMemoryFileName);
    chain.push_back({std::move(dir), std::move(st), std::move(fds[i].memory)});
  }
  return load_layers(std::move(chain), host_cpuid, false);
}

uint64_t memory_digest(const std::string& dir) {
  // Reads guest memory only: the drives play no part.
  std::vector<Layer> chain = open_chain(read_layers(dir));
  GuestMemory memory = map_chain(chain);
  std::vector<bool> pages = memory.data_pages();
  const auto& regions = memory.regions();
  uint64_t crc = 0;
  for (const wisp::MemoryRegion& r : regions) {
    for (uint64_t off = 0; off < r.size; off += kPageSize) {
      uint64_t page = (r.file_offset + off) / kPageSize;
      if (!pages[page]) continue;
      std::span<const uint8_t> bytes(r.host + off, kPageSize);
      if (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; })) continue;
      uint8_t index[8];
      std::memcpy(index, &page, sizeof(index));
      crc = crc64(index, crc);
      crc = crc64(bytes, crc);
    }
  }
  return crc;
}

}  // namespace wisp::snapshot
