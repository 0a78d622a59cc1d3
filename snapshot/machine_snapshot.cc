#include "snapshot/machine_snapshot.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "snapshot/crc64.h"
#include "snapshot/device_codec.h"
#include "snapshot/snapshot_dir.h"
#include "base/error.h"
#include "base/hex.h"

namespace wisp::snapshot {
namespace {

constexpr const char* kSerialKind = "serial";
constexpr const char* kVirtioKind = "virtio-mmio";

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

std::string random_id() {
  uint8_t b[16];
  if (getrandom(b, sizeof(b), 0) != static_cast<ssize_t>(sizeof(b))) throw_errno("getrandom");
  return hex_bytes(b);
}

std::vector<CpuidLeaf> to_leaves(const CpuidEntries& entries) {
  std::vector<CpuidLeaf> out;
  for (const CpuidEntry& e : entries)
    out.push_back({e.function, e.index, e.eax, e.ebx, e.ecx, e.edx});
  return out;
}

snapshot::VcpuState to_file(const wisp::VcpuState& v) {
  snapshot::VcpuState o;
  o.id = v.id;
  o.regs = v.regs;
  o.sregs = v.sregs;
  o.fpu = v.fpu;
  o.xsave = v.xsave;
  o.xcrs = v.xcrs;
  for (const MsrEntry& m : v.msrs) o.msrs.push_back({m.index, m.value});
  o.lapic = v.lapic;
  o.events = v.vcpu_events;
  o.debugregs = v.debug_regs;
  o.mp_state = v.mp_state;
  o.tsc_khz = v.tsc_khz;
  return o;
}

wisp::VcpuState from_file(const snapshot::VcpuState& v, uint32_t vm_tsc_khz) {
  wisp::VcpuState o;
  o.id = v.id;
  o.regs = v.regs;
  o.sregs = v.sregs;
  o.fpu = v.fpu;
  o.xsave = v.xsave;
  o.xcrs = v.xcrs;
  for (const Msr& m : v.msrs) o.msrs.push_back({m.index, m.value});
  o.lapic = v.lapic;
  o.vcpu_events = v.events;
  o.debug_regs = v.debugregs;
  o.mp_state = v.mp_state;
  o.tsc_khz = v.tsc_khz ? v.tsc_khz : vm_tsc_khz;
  return o;
}

// A drive as the snapshot records it: absolute path (a clone may run from another directory)
// and the image's size and modification time, so a changed image is noticed at restore.
DriveConfig describe_drive(const DriveSpec& d) {
  char real[PATH_MAX];
  if (!::realpath(d.path.c_str(), real)) throw_errno("drive " + d.path);
  struct stat st;
  if (::stat(real, &st) != 0) throw_errno("drive " + d.path);
  return {real, d.read_only, static_cast<uint64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// Refuses a drive image that is not the one the snapshot was taken with.
void check_drive(const DriveConfig& d, const std::string& file) {
  struct stat st;
  if (::stat(d.path.c_str(), &st) != 0)
    throw Error(file + ": drive " + d.path + ": " + std::strerror(errno));
  int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (static_cast<uint64_t>(st.st_size) != d.size_bytes || mtime != d.mtime_ns)
    throw Error(file + ": drive " + d.path +
                " changed since the snapshot (size or modification time differs); the "
                "guest's cached blocks would not match it");
}

SnapshotState to_file(const MachineState& m, const GuestMemory& mem, const SaveOptions& options) {
  SnapshotState s;
  s.metadata.creator_version = options.creator_version;
  s.metadata.created_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  s.metadata.cpu_vendor = cpu_vendor(m.cpuid);
  s.metadata.cpuid = to_leaves(m.cpuid);
  for (const wisp::MemoryRegion& r : mem.regions())
    s.memory.push_back({r.guest_base.value(), r.size, r.file_offset});
  for (const wisp::VcpuState& v : m.vcpus) s.vcpus.push_back(to_file(v));
  s.irqchip = {m.vm.pic_master, m.vm.pic_slave, m.vm.ioapic};
  s.pit = m.vm.pit;
  s.clock = {m.vm.clock_ns, m.vm.clock_flags};
  s.devices.push_back({kSerialKind, "com1", encode_serial(m.serial)});
  for (size_t i = 0; i < m.virtio.size(); ++i)
    s.devices.push_back({kVirtioKind, "slot" + std::to_string(i),
                         encode_virtio({m.virtio[i].transport, m.virtio[i].device})});
  s.tsc_khz = m.vcpus.empty() ? 0 : m.vcpus[0].tsc_khz;
  s.machine.mem_bytes = m.mem_bytes;
  for (const DriveSpec& d : m.devices.drives) s.machine.drives.push_back(describe_drive(d));
  s.machine.rng = m.devices.rng;
  s.machine.vsock = m.devices.vsock;
  s.machine.vsock_cid = m.devices.vsock_cid;
  s.id = random_id();
  return s;
}

MachineState from_file(const SnapshotState& s, const std::string& file) {
  MachineState m;
  m.mem_bytes = s.machine.mem_bytes;
  for (const DriveConfig& d : s.machine.drives) {
    check_drive(d, file);
    m.devices.drives.push_back({d.path, d.read_only});
  }
  m.devices.rng = s.machine.rng;
  m.devices.vsock = s.machine.vsock;
  m.devices.vsock_cid = s.machine.vsock_cid;
  for (const CpuidLeaf& l : s.metadata.cpuid)
    m.cpuid.push_back({l.function, l.index, 0, l.eax, l.ebx, l.ecx, l.edx});
  m.vm.pic_master = s.irqchip.pic_master;
  m.vm.pic_slave = s.irqchip.pic_slave;
  m.vm.ioapic = s.irqchip.ioapic;
  m.vm.pit = s.pit;
  m.vm.clock_ns = s.clock.clock_ns;
  m.vm.clock_flags = s.clock.flags;
  for (const snapshot::VcpuState& v : s.vcpus) m.vcpus.push_back(from_file(v, s.tsc_khz));
  size_t serials = 0;
  for (const DeviceState& d : s.devices) {
    std::string what = file + ": device " + d.kind + " \"" + d.name + "\"";
    if (d.kind == kSerialKind) {
      m.serial = decode_serial(d.data, what);
      ++serials;
    } else if (d.kind == kVirtioKind) {
      auto slot = decode_virtio(d.data, what);
      m.virtio.push_back(wisp::VirtioSlotState{slot.transport, slot.device});
    } else {
      throw Error(what + ": unknown device kind");
    }
  }
  if (serials != 1)
    throw Error(file + ": expected one serial port, found " + std::to_string(serials));
  size_t expected = s.machine.drives.size() + (s.machine.rng ? 1 : 0) + (s.machine.vsock ? 1 : 0);
  if (m.virtio.size() != expected)
    throw Error(file + ": " + std::to_string(m.virtio.size()) +
                " virtio devices saved, the machine description has " + std::to_string(expected));
  return m;
}

bool bit(const Bytes& bitmap, uint64_t i) { return (bitmap[i / 8] >> (i % 8)) & 1; }

// One layer of a (possibly diff) snapshot chain, top first.
struct Layer {
  std::string dir;
  SnapshotState state;
  UniqueFd memory;
};

UniqueFd open_memory(const std::string& dir, const SnapshotState& state) {
  std::string path = dir + "/" + kMemoryFileName;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("memory file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("memory file " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": memory file is not a regular file");
  check_memory_file_size(state.memory, static_cast<uint64_t>(st.st_size), path);
  return fd;
}

}  // namespace

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

SaveResult save_machine_snapshot(const std::string& dir, const MachineState& state,
                                 const GuestMemory& memory, const SaveOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  SnapshotState s = to_file(state, memory, options);
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
  auto t1 = std::chrono::steady_clock::now();
  SnapshotWriteOptions write_options;
  write_options.data_pages = &pages;
  MemoryWriteStats stats = write_snapshot_dir(dir, s, regions, write_options);
  result.memory_ms = ms_since(t1);
  result.id = s.id;
  result.memory_file_bytes = stats.file_bytes;
  result.pages_written = stats.data_bytes / kPageSize;
  struct stat st;
  if (::stat((dir + "/" + kMemoryFileName).c_str(), &st) == 0)
    result.memory_disk_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  return result;
}

namespace {

// Reads a snapshot and, for a diff, its parents: each layer's state validated, its memory file
// opened and checked, and each parent the one its child was made on.
std::vector<Layer> read_chain(const std::string& dir) {
  std::vector<Layer> chain;
  std::string current = dir;
  for (;;) {
    if (chain.size() > kMaxDiffDepth)
      throw Error(dir + ": more than " + std::to_string(kMaxDiffDepth) + " diff layers");
    std::string file = current + "/" + kStateFileName;
    SnapshotState st = read_state_file(file);
    if (!chain.empty()) {
      const Layer& child = chain.back();
      if (st.id != child.state.diff.parent_id)
        throw Error(child.dir + "/" + kStateFileName + ": parent " + current + " has snapshot id " +
                    st.id + ", the diff was made on " + child.state.diff.parent_id);
      if (!(st.memory == child.state.memory) || !(st.machine == child.state.machine))
        throw Error(child.dir + "/" + kStateFileName + ": machine differs from its parent's in " +
                    current);
    }
    UniqueFd fd = open_memory(current, st);
    std::string next = st.is_diff() ? st.diff.parent_dir : "";
    chain.push_back({current, std::move(st), std::move(fd)});
    if (next.empty()) break;
    current = next;
  }

  return chain;
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

LoadedSnapshot load_machine_snapshot(const std::string& dir, const HostCpuid& host_cpuid) {
  std::vector<Layer> chain = read_chain(dir);
  const Layer& top = chain.front();
  const std::string top_file = top.dir + "/" + kStateFileName;
  MachineState machine = from_file(top.state, top_file);
  // Restore maps the file as guest RAM directly: its layout must be the one wisp builds.
  std::vector<MemoryRegion> expected;
  for (const wisp::MemoryRegion& r : GuestMemory::layout(top.state.machine.mem_bytes))
    expected.push_back({r.guest_base.value(), r.size, r.file_offset});
  if (!(expected == top.state.memory))
    throw Error(top_file + ": memory layout is not the one wisp uses for " +
                std::to_string(top.state.machine.mem_bytes) + " bytes of RAM");
  CpuidEntries host = host_cpuid(static_cast<uint32_t>(top.state.vcpus.size()));
  std::string why = cpu_mismatch(top.state.metadata, cpu_vendor(host), to_leaves(host));
  if (!why.empty()) throw Error(top_file + ": snapshot is from another CPU: " + why);

  LoadedSnapshot out{std::move(machine), map_chain(chain), top.state.id,
                     static_cast<uint32_t>(chain.size())};
  return out;
}

uint64_t memory_digest(const std::string& dir) {
  std::vector<Layer> chain = read_chain(dir);
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
