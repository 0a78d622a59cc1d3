// save_machine_snapshot / load_machine_snapshot without KVM: a hand-built MachineState and
// GuestMemory go to disk and come back; diff snapshots layer over their parent.
#include "snapshot/machine_snapshot.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/snapshot_trust.h"
#include "tests/unit/expect_error.h"
#include "vmm/arch/cpuid_baseline.h"

namespace wisp::snapshot {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMem = 16 << 20;
constexpr uint64_t kPages = kMem / kPageSize;
// Pages the tests fill with a non-zero pattern before the first snapshot.
const std::vector<uint64_t> kDataPages = {0, 1, 17, 1000, kPages - 1};

Bytes fill(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 13);
  return b;
}

// Leaf 0 says "GenuineIntel" (EBX, EDX, ECX), leaf 1 a feature set.
CpuidEntries intel_cpuid() {
  return {{0, 0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69},
          {1, 0, 0, 0x806c1, 0x800, 0xfeda3203, 0x178bfbff}};
}

// A host whose KVM supports `cpuid`: the baseline model masks it as the VMM would.
HostCpuid host_with(CpuidEntries cpuid) {
  return [cpuid](uint32_t vcpus, CpuModel model) {
    EXPECT_EQ(vcpus, 1u);
    return model == CpuModel::kX86_64_v2 ? x86_64_v2_cpuid(cpuid) : cpuid;
  };
}

MachineState sample_machine() {
  MachineState m;
  m.mem_bytes = kMem;
  m.cpuid = intel_cpuid();
  m.vm.pic_master = fill(KvmImageSize::kIrqchip, 1);
  m.vm.pic_slave = fill(KvmImageSize::kIrqchip, 2);
  m.vm.ioapic = fill(KvmImageSize::kIrqchip, 3);
  m.vm.pit = fill(KvmImageSize::kPit, 4);
  m.vm.clock_ns = 123456789;
  m.vm.clock_flags = 2;
  VcpuState v;
  v.regs = fill(KvmImageSize::kRegs, 5);
  v.sregs = fill(KvmImageSize::kSregs, 6);
  v.fpu = fill(KvmImageSize::kFpu, 7);
  v.xsave = Bytes(KvmImageSize::kXsaveMin, 0);
  v.xcrs = fill(KvmImageSize::kXcrs, 8);
  v.lapic = fill(KvmImageSize::kLapic, 9);
  v.vcpu_events = fill(KvmImageSize::kVcpuEvents, 10);
  v.debug_regs = Bytes(KvmImageSize::kDebugRegs, 0);
  v.mp_state = 0;
  v.msrs = {{0x10, 0x123456789}, {0xc0000080, 0xd01}};
  v.tsc_khz = 2400000;
  m.vcpus.push_back(v);
  m.serial.ier = 1;
  m.serial.rx = {'h', 'i'};
  VirtioSlotState rng;
  rng.spec = RngSpec{};
  rng.transport.status = 0xf;
  rng.transport.driver_features = (1ull << 32) | (1ull << 29);  // VERSION_1, EVENT_IDX
  rng.transport.device_activated = true;
  rng.transport.queues.push_back({256, true, 0x10000, 0x11000, 0x12000, 7, 7, true});
  rng.device = RngState{};
  m.virtio.push_back(rng);
  return m;
}

// `loaded` is `saved` but for what the snapshot records of each drive's image (its identity).
void expect_same(MachineState loaded, const MachineState& saved) {
  for (VirtioSlotState& slot : loaded.virtio) {
    if (auto* drive = std::get_if<BlockSpec>(&slot.spec)) {
      EXPECT_NE(drive->mtime_ns, 0);
      drive->size_bytes = 0;
      drive->mtime_ns = 0;
      drive->digest = 0;
    }
  }
  EXPECT_TRUE(loaded == saved);
  // Spelled out, for a readable failure.
  EXPECT_EQ(loaded.cpuid, saved.cpuid);  // flags included: nothing is lost on the way
  EXPECT_EQ(loaded.vm, saved.vm);
  EXPECT_EQ(loaded.vcpus, saved.vcpus);
  EXPECT_EQ(loaded.serial, saved.serial);
  EXPECT_EQ(loaded.virtio, saved.virtio);
}

using wisp::testutil::expect_error;

uint8_t* page_ptr(const GuestMemory& mem, uint64_t page) {
  return mem.regions()[0].host + page * kPageSize;
}

bool same_bytes(const GuestMemory& a, const GuestMemory& b) {
  return a.size() == b.size() && std::memcmp(page_ptr(a, 0), page_ptr(b, 0), a.size()) == 0;
}

uint64_t count(const std::vector<bool>& pages) {
  uint64_t n = 0;
  for (bool p : pages) n += p;
  return n;
}

// A snapshot the way `wisp snapshot create` makes one: the manager's NewSnapshotDir, the VMM's
// save into its two files, the manager's seal of the drives' identities and commit.
SaveResult save_dir(const std::string& dir, const MachineState& state, const GuestMemory& memory,
                    const SaveOptions& options) {
  NewSnapshotDir out(dir);
  SaveResult r = save_machine_snapshot(out.files(), state, memory, options);
  seal_drive_identities(out.files().state_fd, out.temp_dir() + "/" + kStateFileName, dir);
  out.commit();
  return r;
}

class MachineSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("wisp-machsnap-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    for (uint64_t p : kDataPages) {
      Bytes b = fill(kPageSize, static_cast<uint8_t>(p + 1));
      ASSERT_TRUE(memory_.write(GuestAddress(p * kPageSize), b));
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string path(const std::string& name) const { return root_ / name; }

  fs::path root_;
  MachineState machine_ = sample_machine();
  GuestMemory memory_ = GuestMemory::create(kMem);
};

TEST_F(MachineSnapshotTest, RoundTripsStateAndMemory) {
  std::string dir = path("snap");
  SaveOptions options;
  options.creator_version = "test";
  SaveResult r = save_dir(dir, machine_, memory_, options);
  EXPECT_EQ(r.id.size(), 32u);
  EXPECT_EQ(r.memory_file_bytes, kMem);
  EXPECT_EQ(r.pages_written, kDataPages.size());
  EXPECT_EQ(r.pages_in_layer, 0u);

  // Sparse: only the written pages take space.
  struct stat st;
  ASSERT_EQ(::stat((dir + "/" + kMemoryFileName).c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kMem);
  EXPECT_EQ(r.memory_disk_bytes, static_cast<uint64_t>(st.st_blocks) * 512);
  EXPECT_LT(r.memory_disk_bytes, kMem / 16);
  EXPECT_EQ(verify_snapshot(dir).cpu_vendor, "GenuineIntel");

  LoadedSnapshot loaded = load_machine_snapshot(dir, host_with(intel_cpuid()));
  EXPECT_EQ(loaded.id, r.id);
  EXPECT_EQ(loaded.layers, 1u);
  expect_same(loaded.state, machine_);
  EXPECT_TRUE(loaded.memory.is_file_private());
  EXPECT_TRUE(same_bytes(loaded.memory, memory_));
  // Reading does not make private copies.
  EXPECT_EQ(count(loaded.memory.written_pages()), 0u);
}

// A manager may hand the base memory file over open (SnapshotChain::base_memory: serve's copy
// on a tmpfs of 2 MiB pages): the same bytes are restored from it; one of another size is
// refused, named as the copy it is.
TEST_F(MachineSnapshotTest, TheBaseMemoryMayComeAsADescriptor) {
  std::string dir = path("snap");
  save_dir(dir, machine_, memory_, {});
  std::string copy = path("copy");
  std::filesystem::copy_file(dir + "/" + kMemoryFileName, copy);
  SnapshotChain chain = read_snapshot_chain(dir);
  chain.base_memory = UniqueFd(::open(copy.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(chain.base_memory.valid());
  LoadedSnapshot loaded = load_machine_snapshot(std::move(chain), host_with(intel_cpuid()));
  EXPECT_TRUE(same_bytes(loaded.memory, memory_));
  // Unlinked, the copy is still what is mapped: it came as a descriptor.
  std::filesystem::remove(copy);
  EXPECT_TRUE(same_bytes(loaded.memory, memory_));

  std::ofstream(path("short")) << "not a memory file";
  chain = read_snapshot_chain(dir);
  chain.base_memory = UniqueFd(::open(path("short").c_str(), O_RDONLY | O_CLOEXEC));
  expect_error([&] { load_machine_snapshot(std::move(chain), host_with(intel_cpuid())); },
               {"the copy given as a descriptor"});
}

TEST_F(MachineSnapshotTest, SnapshotsGetDistinctIds) {
  SaveResult a = save_dir(path("a"), machine_, memory_, {});
  SaveResult b = save_dir(path("b"), machine_, memory_, {});
  EXPECT_NE(a.id, b.id);
  expect_error([&] { save_dir(path("a"), machine_, memory_, {}); }, {path("a"), "already exists"});
}

TEST_F(MachineSnapshotTest, RefusesAnotherCpu) {
  std::string dir = path("snap");
  save_dir(dir, machine_, memory_, {});
  std::string state = dir + "/" + kStateFileName;

  CpuidEntries host = intel_cpuid();
  host[1].ecx &= ~(1u << 28);  // no AVX
  expect_error([&] { load_machine_snapshot(dir, host_with(host)); },
               {state, "another CPU", "CPUID leaf 0x1.0 differs"});

  host = intel_cpuid();
  host[0].ebx = 0x68747541;  // "AuthenticAMD"
  host[0].edx = 0x69746e65;
  host[0].ecx = 0x444d4163;
  expect_error([&] { load_machine_snapshot(dir, host_with(host)); },
               {state, "vendor \"GenuineIntel\", host \"AuthenticAMD\""});

  host = intel_cpuid();
  host.pop_back();
  expect_error([&] { load_machine_snapshot(dir, host_with(host)); }, {state, "missing"});
}

// A portable snapshot records the baseline CPUID it gave: it is compared with this host's
// baseline (not its full CPUID), so it restores on the host that made it, and on one that
// differs only in features the baseline hides; a difference the guest saw is still refused.
TEST_F(MachineSnapshotTest, APortableSnapshotIsComparedWithTheHostsBaseline) {
  std::string dir = path("snap");
  machine_.cpu_model = CpuModel::kX86_64_v2;
  machine_.cpuid = x86_64_v2_cpuid(intel_cpuid());
  ASSERT_NE(machine_.cpuid, intel_cpuid());  // the sample host has AVX, which the baseline hides
  save_dir(dir, machine_, memory_, {});
  LoadedSnapshot loaded = load_machine_snapshot(dir, host_with(intel_cpuid()));
  EXPECT_EQ(loaded.state.cpu_model, CpuModel::kX86_64_v2);
  EXPECT_EQ(loaded.state.cpuid, machine_.cpuid);

  CpuidEntries host = intel_cpuid();
  host[1].ecx &= ~(1u << 28);  // no AVX: hidden by the baseline anyway
  load_machine_snapshot(dir, host_with(host));

  host = intel_cpuid();
  host[1].ecx &= ~(1u << 20);  // no SSE4.2: the guest saw it
  expect_error([&] { load_machine_snapshot(dir, host_with(host)); },
               {dir + "/" + kStateFileName, "another CPU", "CPUID leaf 0x1.0 differs"});
}

TEST_F(MachineSnapshotTest, RefusesATruncatedMemoryFile) {
  std::string dir = path("snap");
  save_dir(dir, machine_, memory_, {});
  std::string memory = dir + "/" + kMemoryFileName;
  ASSERT_EQ(::truncate(memory.c_str(), kMem - kPageSize), 0);
  expect_error([&] { load_machine_snapshot(dir, host_with(intel_cpuid())); },
               {memory, "truncated"});
  expect_error([&] { memory_digest(dir); }, {memory, "truncated"});
}

TEST_F(MachineSnapshotTest, RefusesADeviceStateOfAnotherKindThanItsSpec) {
  machine_.virtio[0].device = VsockState{3};  // the rng slot
  std::string dir = path("snap");
  expect_error([&] { save_dir(dir, machine_, memory_, {}); },
               {dir, "virtio slot 0", "a virtio-rng holds a virtio-vsock's state"});
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(MachineSnapshotTest, RecordsDrivesAndRefusesAChangedImage) {
  std::string image = path("disk.img");
  std::ofstream(image) << std::string(8192, 'd');
  VirtioSlotState blk;
  blk.spec = BlockSpec{image, true};
  blk.transport.queues.resize(1);
  blk.device = BlockState{16, true, 128};
  machine_.virtio.insert(machine_.virtio.begin(), blk);  // drives come first
  std::string dir = path("snap");
  save_dir(dir, machine_, memory_, {});
  // The drive is outside the snapshot: the caller gives it at restore.
  const std::vector<BlockSpec> given = {BlockSpec{image, true}};
  LoadedSnapshot loaded =
      load_machine_snapshot(read_snapshot_chain(dir, given), host_with(intel_cpuid()));
  EXPECT_EQ(std::get<BlockSpec>(loaded.state.virtio[0].spec).size_bytes, 8192u);
  EXPECT_NE(std::get<BlockSpec>(loaded.state.virtio[0].spec).digest, 0u);
  expect_same(loaded.state, machine_);
  expect_error([&] { load_machine_snapshot(dir, host_with(intel_cpuid())); },
               {dir + "/" + kStateFileName, "drive 0 (" + image + ") is refused"});

  std::ofstream(image, std::ios::app) << "more";
  expect_error([&] { read_snapshot_chain(dir, given); },
               {dir + "/" + kStateFileName, "drive " + image, "is refused",
                "the image the snapshot recorded"});
  fs::remove(image);
  expect_error([&] { read_snapshot_chain(dir, given); }, {image, "No such file"});
}

TEST_F(MachineSnapshotTest, ADiffHoldsOnlyTheWrittenPagesAndRestoresLikeAFullSnapshot) {
  std::string base = path("base"), diff = path("diff"), full = path("full");
  SaveResult base_result = save_dir(base, machine_, memory_, {});
  LoadedSnapshot vm = load_machine_snapshot(base, host_with(intel_cpuid()));
  ASSERT_EQ(vm.id, base_result.id);

  // The "guest" writes three pages: one that had data, two that were zero.
  const std::vector<uint64_t> written = {1, 2000, 3000};
  for (uint64_t p : written)
    std::memset(page_ptr(vm.memory, p), static_cast<int>(0x40 + p % 7), kPageSize);
  std::vector<bool> w = vm.memory.written_pages();
  EXPECT_EQ(count(w), written.size());
  for (uint64_t p : written) EXPECT_TRUE(w[p]) << p;

  SaveOptions options;
  options.diff = true;
  options.parent_dir = base;
  options.parent_id = vm.id;
  SaveResult d = save_dir(diff, machine_, vm.memory, options);
  EXPECT_EQ(d.pages_in_layer, written.size());
  EXPECT_EQ(d.pages_written, written.size());
  EXPECT_EQ(d.memory_file_bytes, kMem);
  SaveResult f = save_dir(full, machine_, vm.memory, {});
  EXPECT_EQ(f.pages_written, kDataPages.size() + 2);  // page 1 was data already

  EXPECT_EQ(memory_digest(diff), memory_digest(full));
  EXPECT_NE(memory_digest(diff), memory_digest(base));

  LoadedSnapshot from_diff = load_machine_snapshot(diff, host_with(intel_cpuid()));
  LoadedSnapshot from_full = load_machine_snapshot(full, host_with(intel_cpuid()));
  EXPECT_EQ(from_diff.layers, 2u);
  EXPECT_EQ(from_diff.id, d.id);
  expect_same(from_diff.state, machine_);
  EXPECT_TRUE(same_bytes(from_diff.memory, from_full.memory));
  EXPECT_TRUE(same_bytes(from_diff.memory, vm.memory));
  // The diff's pages come from its own file, not as private copies; they count as data.
  EXPECT_EQ(count(from_diff.memory.written_pages()), 0u);
  std::vector<bool> data = from_diff.memory.data_pages();
  for (uint64_t p : written) EXPECT_TRUE(data[p]) << p;
  for (uint64_t p : kDataPages) EXPECT_TRUE(data[p]) << p;
  EXPECT_FALSE(data[2500]);

  // A diff of the diff: three layers, still the same memory as a full snapshot of it.
  std::memset(page_ptr(from_diff.memory, 2000), 0, kPageSize);  // zeroed: must mask the parent
  std::memset(page_ptr(from_diff.memory, 5), 0x55, kPageSize);
  options.parent_dir = diff;
  options.parent_id = from_diff.id;
  SaveResult d2 = save_dir(path("diff2"), machine_, from_diff.memory, options);
  EXPECT_EQ(d2.pages_in_layer, 2u);
  EXPECT_EQ(d2.pages_written, 1u);
  save_dir(path("full2"), machine_, from_diff.memory, {});
  EXPECT_EQ(memory_digest(path("diff2")), memory_digest(path("full2")));
  LoadedSnapshot top = load_machine_snapshot(path("diff2"), host_with(intel_cpuid()));
  EXPECT_EQ(top.layers, 3u);
  EXPECT_TRUE(same_bytes(top.memory, from_diff.memory));
  EXPECT_EQ(page_ptr(top.memory, 2000)[17], 0);
}

TEST_F(MachineSnapshotTest, RefusesADiffWhoseParentWasReplaced) {
  std::string base = path("base"), diff = path("diff");
  save_dir(base, machine_, memory_, {});
  LoadedSnapshot vm = load_machine_snapshot(base, host_with(intel_cpuid()));
  page_ptr(vm.memory, 9)[0] = 1;
  SaveOptions options;
  options.diff = true;
  options.parent_dir = base;
  options.parent_id = vm.id;
  save_dir(diff, machine_, vm.memory, options);

  fs::remove_all(base);
  SaveResult other = save_dir(base, machine_, memory_, {});
  for (auto fn :
       {std::function<void()>([&] { load_machine_snapshot(diff, host_with(intel_cpuid())); }),
        std::function<void()>([&] { memory_digest(diff); })}) {
    expect_error(fn, {diff + "/" + kStateFileName, "parent " + base, other.id,
                      "the diff was made on " + vm.id});
  }

  fs::remove_all(base);
  expect_error([&] { load_machine_snapshot(diff, host_with(intel_cpuid())); },
               {base + "/" + kStateFileName});
}

// A standby VMM's restore (wisp-vmm standby): the layers arrive as descriptors, top first, and
// are checked as a directory's chain is.
TEST_F(MachineSnapshotTest, LoadsAChainFromDescriptorsAndRefusesABadOne) {
  std::string base = path("base"), diff = path("diff");
  SaveResult b = save_dir(base, machine_, memory_, {});
  LoadedSnapshot vm = load_machine_snapshot(base, host_with(intel_cpuid()));
  page_ptr(vm.memory, 7)[0] = 0x77;
  SaveOptions options;
  options.diff = true;
  options.parent_dir = base;
  options.parent_id = vm.id;
  SaveResult d = save_dir(diff, machine_, vm.memory, options);
  auto open_file = [](const std::string& p) {
    return UniqueFd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  };
  auto layer = [&](const std::string& dir) {
    return SnapshotLayerFds{open_file(dir + "/" + kStateFileName),
                            open_file(dir + "/" + kMemoryFileName)};
  };
  auto layers = [&](std::vector<std::string> dirs) {
    std::vector<SnapshotLayerFds> out;
    for (const std::string& dir : dirs) out.push_back(layer(dir));
    return out;
  };

  LoadedSnapshot top = load_machine_snapshot(layers({diff, base}), host_with(intel_cpuid()), "o");
  EXPECT_EQ(top.id, d.id);
  EXPECT_EQ(top.layers, 2u);
  expect_same(top.state, machine_);
  EXPECT_TRUE(same_bytes(top.memory, vm.memory));
  LoadedSnapshot full = load_machine_snapshot(layers({base}), host_with(intel_cpuid()), "o");
  EXPECT_EQ(full.id, b.id);
  EXPECT_TRUE(same_bytes(full.memory, memory_));

  expect_error([&] { load_machine_snapshot(layers({}), host_with(intel_cpuid()), "o"); },
               {"o: no snapshot layer"});
  expect_error([&] { load_machine_snapshot(layers({diff}), host_with(intel_cpuid()), "o"); },
               {"o layer 0", "parent is missing"});
  expect_error(
      [&] {
        load_machine_snapshot(layers({base, diff}), host_with(intel_cpuid()), "o");
      },
      {"o layer 0", "more layers follow"});
  // Another base than the diff's: the recorded parent id tells.
  std::string other = path("other");
  SaveResult o = save_dir(other, machine_, memory_, {});
  expect_error(
      [&] {
        load_machine_snapshot(layers({diff, other}), host_with(intel_cpuid()), "o");
      },
      {"o layer 1", o.id, "made on " + vm.id});
  // State and memory swapped: the memory file is no state file.
  std::vector<SnapshotLayerFds> swapped;
  swapped.push_back(
      {open_file(base + "/" + kMemoryFileName), open_file(base + "/" + kStateFileName)});
  expect_error([&] { load_machine_snapshot(std::move(swapped), host_with(intel_cpuid()), "o"); },
               {"o layer 0/state"});
  // A memory file of the wrong size.
  std::vector<SnapshotLayerFds> wrong;
  wrong.push_back({open_file(base + "/" + kStateFileName), open_file(base + "/" + kStateFileName)});
  expect_error([&] { load_machine_snapshot(std::move(wrong), host_with(intel_cpuid()), "o"); },
               {"o layer 0/memory"});
  expect_error([&] { load_machine_snapshot(layers({base}), host_with(CpuidEntries{}), "o"); },
               {"another CPU"});
}

TEST_F(MachineSnapshotTest, RefusesADiffOfMemoryThatWasNotRestored) {
  save_dir(path("base"), machine_, memory_, {});
  SaveOptions options;
  options.diff = true;
  options.parent_dir = path("base");
  options.parent_id = "whatever";
  expect_error([&] { save_dir(path("diff"), machine_, memory_, options); },
               {"diff snapshot needs a VM restored from a snapshot"});
  EXPECT_FALSE(fs::exists(path("diff")));
}

TEST(MachineSnapshotCpu, VendorComesFromLeafZero) {
  EXPECT_EQ(cpu_vendor(intel_cpuid()), "GenuineIntel");
  EXPECT_EQ(cpu_vendor({intel_cpuid()[1]}), "");
  EXPECT_EQ(cpu_vendor({}), "");
}

}  // namespace
}  // namespace wisp::snapshot
