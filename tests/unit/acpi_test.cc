// Checks the ACPI blob the way a guest reads it: find the RSDP, follow absolute guest addresses,
// verify every table's signature, length and checksum. Offsets are the ACPI 6.5 spec's, written
// out here rather than taken from the builder's structs, so a wrong struct layout fails.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "base/error.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/acpi/pm_control.h"

namespace wisp {
namespace {

constexpr uint64_t kBase = layout::kAcpiTablesAddr;

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

template <typename T>
T get(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof(T));
  return v;
}

// A parsed view of one blob, failing the test on anything a guest would reject.
class AcpiBlob {
 public:
  explicit AcpiBlob(const AcpiConfig& config) : t_(build_acpi_tables(kBase, config)) {}

  const std::vector<uint8_t>& bytes() const { return t_; }

  // The guest's scan: "RSD PTR " on a 16-byte boundary.
  const uint8_t* rsdp() const {
    for (size_t off = 0; off + 36 <= t_.size(); off += 16)
      if (std::memcmp(&t_[off], "RSD PTR ", 8) == 0) return &t_[off];
    return nullptr;
  }

  // The table at guest address `addr`, after checking it lies inside the blob and that its
  // signature, length and checksum are valid.
  const uint8_t* table(uint64_t addr, const char* signature) const {
    EXPECT_GE(addr, kBase);
    EXPECT_LE(addr + 36, kBase + t_.size());
    if (addr < kBase || addr + 36 > kBase + t_.size()) return nullptr;
    const uint8_t* p = &t_[addr - kBase];
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p), 4), signature);
    uint32_t len = get<uint32_t>(p, 4);
    EXPECT_LE(addr + len, kBase + t_.size()) << signature;
    EXPECT_EQ(sum(p, len), 0) << signature << " checksum";
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p + 10), 6), "WISP  ");
    return p;
  }

  const uint8_t* xsdt() const { return table(get<uint64_t>(rsdp(), 24), "XSDT"); }
  const uint8_t* xsdt_entry(int i) const { return xsdt() + 36 + 8 * i; }
  const uint8_t* fadt() const { return table(get<uint64_t>(xsdt_entry(0), 0), "FACP"); }
  const uint8_t* madt() const { return table(get<uint64_t>(xsdt_entry(1), 0), "APIC"); }
  const uint8_t* dsdt() const { return table(get<uint64_t>(fadt(), 140), "DSDT"); }

 private:
  std::vector<uint8_t> t_;
};

AcpiConfig config_for(uint32_t cpus) {
  AcpiConfig c;
  c.num_cpus = cpus;
  c.ioapic_id = static_cast<uint8_t>(cpus);
  return c;
}

TEST(AcpiTables, RsdpIsFirstAlignedAndChecksummed) {
  AcpiBlob blob(config_for(2));
  const uint8_t* r = blob.rsdp();
  ASSERT_EQ(r, blob.bytes().data()) << "RSDP must sit at base, the address given to the guest";
  EXPECT_EQ(sum(r, 20), 0) << "ACPI 1.0 checksum";
  EXPECT_EQ(r[15], 2) << "revision";
  EXPECT_EQ(get<uint32_t>(r, 20), 36u) << "length";
  EXPECT_EQ(sum(r, 36), 0) << "extended checksum";
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r + 9), 6), "WISP  ");
  EXPECT_EQ(get<uint64_t>(r, 24) % 16, 0u);
}

TEST(AcpiTables, EveryTableIsValidForAllCpuCounts) {
  for (uint32_t cpus : {1u, 2u, 7u, 64u, kAcpiMaxCpus}) {
    SCOPED_TRACE(cpus);
    AcpiBlob blob(config_for(cpus));
    ASSERT_NE(blob.rsdp(), nullptr);
    const uint8_t* x = blob.xsdt();
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(get<uint32_t>(x, 4), 36u + 2 * 8) << "XSDT holds two entries";
    ASSERT_NE(blob.fadt(), nullptr);
    ASSERT_NE(blob.madt(), nullptr);
    ASSERT_NE(blob.dsdt(), nullptr);
    EXPECT_LE(kBase + blob.bytes().size(), layout::kHighMemStart) << "stays below 1 MiB";
  }
}

TEST(AcpiTables, FadtIsHardwareReducedWithSleepAndResetRegisters) {
  AcpiBlob blob(config_for(1));
  const uint8_t* f = blob.fadt();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(get<uint32_t>(f, 4), 276u);
  EXPECT_EQ(f[8], 6) << "revision";
  EXPECT_EQ(f[131], 5) << "minor version";
  uint32_t flags = get<uint32_t>(f, 112);
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  uint16_t boot_arch = get<uint16_t>(f, 109);
  EXPECT_TRUE(boot_arch & (1u << 1)) << "8042 present";
  EXPECT_TRUE(boot_arch & (1u << 2)) << "no VGA";
  EXPECT_TRUE(boot_arch & (1u << 5)) << "no CMOS RTC";
  EXPECT_FALSE(boot_arch & (1u << 3)) << "MSI left allowed";
  // DSDT (32-bit) and X_DSDT (64-bit) agree.
  EXPECT_EQ(get<uint32_t>(f, 40), get<uint64_t>(f, 140));
  // RESET_REG: system I/O, 8 bits, port 0x64; RESET_VALUE 0xFE.
  EXPECT_EQ(f[116], 1);
  EXPECT_EQ(f[117], 8);
  EXPECT_EQ(get<uint64_t>(f, 120), I8042::kCommandPort);
  EXPECT_EQ(f[128], 0xfe);
  // SLEEP_CONTROL_REG and SLEEP_STATUS_REG: system I/O, 8 bits at offset 0, byte access.
  for (auto [off, port] : {std::pair<size_t, uint16_t>{244, PmControl::kSleepControlPort},
                           {256, PmControl::kSleepStatusPort}}) {
    EXPECT_EQ(f[off], 1);
    EXPECT_EQ(f[off + 1], 8);
    EXPECT_EQ(f[off + 2], 0);
    EXPECT_EQ(f[off + 3], 1);
    EXPECT_EQ(get<uint64_t>(f, off + 4), port);
  }
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f + 268), 4), "WISP");
}

TEST(AcpiTables, MadtListsEveryCpuTheIoapicAndTheTimerOverride) {
  AcpiBlob blob(config_for(4));
  const uint8_t* m = blob.madt();
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(get<uint32_t>(m, 36), layout::kLapicAddr);
  EXPECT_EQ(get<uint32_t>(m, 40) & 1, 1u) << "PCAT_COMPAT";
  int lapics = 0, ioapics = 0, overrides = 0, nmis = 0;
  const uint32_t len = get<uint32_t>(m, 4);
  for (uint32_t off = 44; off < len; off += m[off + 1]) {
    ASSERT_GE(m[off + 1], 2) << "entry length";
    const uint8_t* e = m + off;
    switch (e[0]) {
      case 0:  // Processor Local APIC
        EXPECT_EQ(e[1], 8);
        EXPECT_EQ(e[3], lapics) << "APIC ids in order from 0";
        EXPECT_EQ(get<uint32_t>(e, 4) & 1, 1u) << "enabled";
        ++lapics;
        break;
      case 1:  // I/O APIC
        EXPECT_EQ(e[1], 12);
        EXPECT_EQ(e[2], 4) << "id after the last CPU, as in the MP table";
        EXPECT_EQ(get<uint32_t>(e, 4), layout::kIoapicAddr);
        EXPECT_EQ(get<uint32_t>(e, 8), 0u) << "GSI base";
        ++ioapics;
        break;
      case 2:  // Interrupt Source Override
        EXPECT_EQ(e[1], 10);
        EXPECT_EQ(e[2], 0) << "ISA";
        EXPECT_EQ(e[3], 0) << "IRQ 0";
        EXPECT_EQ(get<uint32_t>(e, 4), 2u) << "GSI 2";
        EXPECT_EQ(get<uint16_t>(e, 8), 0x5) << "edge, active-high";
        ++overrides;
        break;
      case 4:  // Local APIC NMI
        EXPECT_EQ(e[1], 6);
        EXPECT_EQ(e[2], 0xff) << "all processors";
        EXPECT_EQ(e[5], 1) << "LINT1";
        ++nmis;
        break;
      default:
        ADD_FAILURE() << "unexpected MADT entry type " << int{e[0]};
    }
  }
  EXPECT_EQ(lapics, 4);
  EXPECT_EQ(ioapics, 1);
  EXPECT_EQ(overrides, 1);
  EXPECT_EQ(nmis, 1);
}

TEST(AcpiTables, DsdtNamesS5WithThePmControlSleepType) {
  AcpiBlob blob(config_for(1));
  const uint8_t* d = blob.dsdt();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d[8], 2) << "revision 2: 64-bit AML integers";
  std::string aml(reinterpret_cast<const char*>(d + 36), get<uint32_t>(d, 4) - 36);
  // NameOp "_S5_" PackageOp PkgLength NumElements BytePrefix SLP_TYPa ...
  const std::string s5("\x08_S5_\x12", 6);
  size_t at = aml.find(s5);
  ASSERT_NE(at, std::string::npos);
  ASSERT_GE(aml.size(), at + s5.size() + 4);
  EXPECT_EQ(uint8_t(aml[at + 7]), 4) << "four elements";
  EXPECT_EQ(uint8_t(aml[at + 8]), 0x0a) << "BytePrefix";
  EXPECT_EQ(uint8_t(aml[at + 9]), PmControl::kS5SleepType);
  EXPECT_LE(at + 6 + uint8_t(aml[at + 6]), aml.size()) << "PkgLength stays inside the DSDT";
  EXPECT_EQ(uint8_t(aml[at + 6]), 7) << "PkgLength covers the 4-element package";
}

TEST(AcpiTables, DsdtDescribesCom1WithItsIrq) {
  AcpiBlob blob(config_for(2));
  const uint8_t* d = blob.dsdt();
  ASSERT_NE(d, nullptr);
  std::string aml(reinterpret_cast<const char*>(d + 36), get<uint32_t>(d, 4) - 36);
  EXPECT_NE(aml.find(std::string("\x0c\x41\xd0\x05\x01", 5)), std::string::npos)
      << "EisaId(PNP0501)";
  EXPECT_NE(aml.find(std::string("\x47\x01\xf8\x03\xf8\x03\x00\x08", 8)), std::string::npos)
      << "IO 0x3f8, 8 ports";
  EXPECT_NE(aml.find(std::string("\x22\x10\x00\x79", 4)), std::string::npos) << "IRQ 4";
}

TEST(AcpiTables, RejectsBadConfigs) {
  EXPECT_THROW(build_acpi_tables(kBase, config_for(0)), Error);
  EXPECT_THROW(build_acpi_tables(kBase, config_for(kAcpiMaxCpus + 1)), Error);
  EXPECT_THROW(build_acpi_tables(kBase + 8, config_for(1)), Error);
  EXPECT_THROW(build_acpi_tables(uint64_t{1} << 32, config_for(1)), Error);
}

TEST(AcpiTables, WrittenWhereTheZeroPagePointsWithTheMpTablesIoapicId) {
  GuestMemory mem = GuestMemory::create(2 << 20);
  write_acpi_tables(mem, 3);
  AcpiConfig config;
  config.num_cpus = 3;
  config.ioapic_id = layout::ioapic_id(3);
  std::vector<uint8_t> expected = build_acpi_tables(layout::kAcpiTablesAddr, config);
  std::vector<uint8_t> in_guest(expected.size());
  ASSERT_TRUE(mem.read(GuestAddress(layout::kAcpiTablesAddr), in_guest));
  EXPECT_EQ(in_guest, expected);
  EXPECT_EQ(layout::ioapic_id(3), 3) << "the id after the last CPU, as build_mptable gives it";
  EXPECT_THROW(write_acpi_tables(GuestMemory::create(512 << 10), 1), Error)
      << "memory that ends below the BIOS area";
}

class AcpiPmControlTest : public ::testing::Test {
 protected:
  int poweroffs = 0;
  PmControl pm{[this] { ++poweroffs; }};
  void out(uint64_t port, uint8_t v) { pm.write(port - PmControl::kBasePort, {&v, 1}); }
};

TEST_F(AcpiPmControlTest, S5WithSleepEnablePowersOff) {
  // What acpi_hw_extended_sleep(ACPI_STATE_S5) does: clear WAK_STS, then SLP_TYP | SLP_EN.
  out(PmControl::kSleepStatusPort, 0x80);
  EXPECT_EQ(poweroffs, 0);
  out(PmControl::kSleepControlPort, (5 << 2) | 0x20);
  EXPECT_EQ(poweroffs, 1);
  EXPECT_EQ(PmControl::kPowerOffValue, 0x34);
}

TEST_F(AcpiPmControlTest, OtherWritesDoNothing) {
  out(PmControl::kSleepControlPort, 5 << 2);                    // S5 without SLP_EN
  out(PmControl::kSleepControlPort, (3 << 2) | 0x20);           // S3 with SLP_EN
  out(PmControl::kSleepControlPort, 0x20);                      // S0 with SLP_EN (wake prep)
  out(PmControl::kSleepStatusPort, PmControl::kPowerOffValue);  // right value, wrong register
  uint8_t none = 0;
  pm.write(0, {&none, 0});  // empty access
  EXPECT_EQ(poweroffs, 0);
}

TEST_F(AcpiPmControlTest, RegistersReadAsZero) {
  for (uint64_t off = 0; off < PmControl::kRangeLength; ++off) {
    uint8_t v[2] = {0xff, 0xff};
    pm.read(off, v);
    EXPECT_EQ(v[0], 0);
    EXPECT_EQ(v[1], 0);
  }
}

}  // namespace
}  // namespace wisp
