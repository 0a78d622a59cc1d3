#include "vmm/acpi/acpi_tables.h"

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <string>

#include "base/error.h"
#include "vmm/arch/firmware_table.h"

namespace wisp {
namespace {

// Layouts from the ACPI 6.5 specification, chapter 5.2. All little-endian, packed.
struct __attribute__((packed)) Rsdp {
  char signature[8];  // "RSD PTR "
  uint8_t checksum;   // over the first 20 bytes (the ACPI 1.0 structure)
  char oem_id[6];
  uint8_t revision;  // 2: ACPI 2.0+, has the fields below
  uint32_t rsdt_addr;
  uint32_t length;
  uint64_t xsdt_addr;
  uint8_t extended_checksum;  // over all `length` bytes
  uint8_t reserved[3];
};
struct __attribute__((packed)) SdtHeader {
  char signature[4];
  uint32_t length;  // of the whole table, header included
  uint8_t revision;
  uint8_t checksum;  // the table's bytes sum to 0
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  char creator_id[4];
  uint32_t creator_revision;
};
// Generic Address Structure (5.2.3.2).
struct __attribute__((packed)) Gas {
  uint8_t space_id;  // 1 = system I/O
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;  // 1 = byte access
  uint64_t address;
};
struct __attribute__((packed)) Fadt {
  SdtHeader header;
  uint32_t firmware_ctrl;  // FACS: none, hardware-reduced ACPI does not need one
  uint32_t dsdt;
  uint8_t reserved0;
  uint8_t preferred_pm_profile;
  // sci_int .. century: the fixed-hardware fields a hardware-reduced OSPM ignores.
  uint8_t fixed_hw[63];
  uint16_t iapc_boot_arch;
  uint8_t reserved1;
  uint32_t flags;
  Gas reset_reg;
  uint8_t reset_value;
  uint16_t arm_boot_arch;
  uint8_t minor_version;
  uint64_t x_firmware_ctrl;
  uint64_t x_dsdt;
  Gas x_fixed_hw[8];  // X_PM1a_EVT_BLK .. X_GPE1_BLK: ignored when hardware-reduced
  Gas sleep_control_reg;
  Gas sleep_status_reg;
  char hypervisor_vendor_id[8];
};
struct __attribute__((packed)) MadtHeader {
  SdtHeader header;
  uint32_t lapic_addr;
  uint32_t flags;
};
struct __attribute__((packed)) MadtLapic {
  uint8_t type;  // 0
  uint8_t length;
  uint8_t processor_uid;
  uint8_t apic_id;
  uint32_t flags;  // bit 0 enabled
};
struct __attribute__((packed)) MadtIoApic {
  uint8_t type;  // 1
  uint8_t length;
  uint8_t id;
  uint8_t reserved;
  uint32_t addr;
  uint32_t gsi_base;
};
struct __attribute__((packed)) MadtIntOverride {
  uint8_t type;  // 2
  uint8_t length;
  uint8_t bus;  // 0 = ISA
  uint8_t source_irq;
  uint32_t gsi;
  uint16_t flags;  // MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2
};
struct __attribute__((packed)) MadtLapicNmi {
  uint8_t type;  // 4
  uint8_t length;
  uint8_t processor_uid;  // 0xff = all processors
  uint16_t flags;
  uint8_t lint;
};
static_assert(sizeof(Rsdp) == 36 && sizeof(SdtHeader) == 36 && sizeof(Gas) == 12);
static_assert(sizeof(Fadt) == 276, "FADT revision 6 is 276 bytes");
static_assert(offsetof(Fadt, iapc_boot_arch) == 109 && offsetof(Fadt, flags) == 112);
static_assert(offsetof(Fadt, reset_reg) == 116 && offsetof(Fadt, minor_version) == 131);
static_assert(offsetof(Fadt, x_dsdt) == 140 && offsetof(Fadt, sleep_control_reg) == 244);
static_assert(offsetof(Fadt, hypervisor_vendor_id) == 268);
static_assert(sizeof(MadtHeader) == 44 && sizeof(MadtLapic) == 8 && sizeof(MadtIoApic) == 12);
static_assert(sizeof(MadtIntOverride) == 10 && sizeof(MadtLapicNmi) == 6);

constexpr char kOemId[6] = {'W', 'I', 'S', 'P', ' ', ' '};
constexpr uint8_t kSpaceSystemIo = 1, kAccessByte = 1;

// FADT flags (5.2.9, table 5.10).
constexpr uint32_t kFadtPowerButton = 1u << 4;   // set: no fixed power button
constexpr uint32_t kFadtSleepButton = 1u << 5;   // set: no fixed sleep button
constexpr uint32_t kFadtResetRegSup = 1u << 10;  // RESET_REG is valid
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
// IA-PC boot architecture flags (5.2.9.3).
constexpr uint16_t kBootLegacyDevices = 1u << 0;  // ISA devices the DSDT may not list (i8042)
constexpr uint16_t kBoot8042 = 1u << 1;
constexpr uint16_t kBootNoVga = 1u << 2;
constexpr uint16_t kBootNoCmosRtc = 1u << 5;

constexpr uint32_t kMadtPcatCompat = 1;  // KVM's in-kernel irqchip includes the two 8259s
constexpr uint32_t kMadtLapicEnabled = 1;
// INTI flags for the timer override: active-high (01) and edge-triggered (01 << 2), which is
// what ISA means anyway; spelled out so nobody has to remember "conforms to the bus".
constexpr uint16_t kIntiActiveHighEdge = 0x1 | (0x1 << 2);

// The whole DSDT body: one AML statement, Name(\_S5_, Package(4){5, 0, 0, 0}). Linux's
// acpi_sleep_init() evaluates \_S5_ to decide whether it can power off, and
// acpi_get_sleep_type_data() takes element 0 as SLP_TYPa (element 1, SLP_TYPb, is unused with
// the extended sleep registers). The four-element form is what most firmware ships.
// clang-format off
constexpr uint8_t kDsdtAml[] = {
    0x08,                     // NameOp
    '_', 'S', '5', '_',       // NameSeg; a DSDT's top level is the root scope: this is \_S5_
    0x12,                     // PackageOp
    0x07,                     // PkgLength, 1-byte form: counts itself and the 6 bytes after it
    0x04,                     // NumElements
    0x0a,                     // BytePrefix: the next byte is an integer
    PmControl::kS5SleepType,  // SLP_TYPa, what PmControl expects in the sleep control register
    0x00,                     // ZeroOp: SLP_TYPb
    0x00, 0x00,               // ZeroOp x2: reserved
};
// clang-format on
static_assert(sizeof(kDsdtAml) == 13 && kDsdtAml[6] == sizeof(kDsdtAml) - 6);

// COM1 as an ACPI device. Under hardware-reduced ACPI Linux sets up no legacy PIC and no ISA
// IRQ mappings, so the 8250 only gets a working interrupt when the port comes from ACPI PnP
// with its IRQ in _CRS (acpi_register_gsi maps IOAPIC pin 4). Without this the console prints
// kernel messages (polled) but user-space output (interrupt-driven) never leaves the guest.
//   Scope (\_SB_) { Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, 1)
//     Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0, 8) IRQNoFlags () {4} }) } }
// clang-format off
constexpr uint8_t kCom1Aml[] = {
    0x10, 0x32, '_', 'S', 'B', '_',           // ScopeOp, PkgLength 50, \_SB_
    0x5b, 0x82, 0x2b, 'C', 'O', 'M', '1',     // DeviceOp, PkgLength 43, COM1
    0x08, '_', 'H', 'I', 'D',                 // Name (_HID,
    0x0c, 0x41, 0xd0, 0x05, 0x01,             //   DWordPrefix EisaId("PNP0501"))
    0x08, '_', 'U', 'I', 'D', 0x01,           // Name (_UID, One)
    0x08, '_', 'C', 'R', 'S',                 // Name (_CRS,
    0x11, 0x10, 0x0a, 0x0d,                   //   BufferOp, PkgLength 16, size 13:
    0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,  // IO: decode16, 0x3f8..0x3f8, align 0, len 8
    0x22, 0x10, 0x00,                         //   IRQNoFlags: mask bit 4 (edge, active-high)
    0x79, 0x00,                               //   end tag
};
// clang-format on
static_assert(sizeof(kCom1Aml) == 51 && kCom1Aml[1] == sizeof(kCom1Aml) - 1 &&
              kCom1Aml[8] == sizeof(kCom1Aml) - 8);

SdtHeader make_header(const char (&signature)[5], uint8_t revision, const char (&table_id)[9]) {
  SdtHeader h{};
  std::memcpy(h.signature, signature, 4);
  h.revision = revision;
  std::memcpy(h.oem_id, kOemId, 6);
  std::memcpy(h.oem_table_id, table_id, 8);
  h.oem_revision = 1;
  std::memcpy(h.creator_id, "WISP", 4);
  h.creator_revision = 1;
  return h;
}

// Fills in a finished table's length and checksum, which cover everything appended after the
// header.
void seal(std::vector<uint8_t>& table) {
  uint32_t length = static_cast<uint32_t>(table.size());
  std::memcpy(table.data() + offsetof(SdtHeader, length), &length, sizeof(length));
  table[offsetof(SdtHeader, checksum)] = 0;
  table[offsetof(SdtHeader, checksum)] = table_checksum(table.data(), table.size());
}

Gas io_register(uint16_t port) { return Gas{kSpaceSystemIo, 8, 0, kAccessByte, port}; }

std::vector<uint8_t> build_dsdt(const AcpiConfig& c) {
  std::vector<uint8_t> t;
  append_bytes(t, make_header("DSDT", 2, "WISPDSDT"));  // revision 2: AML integers are 64-bit
  t.insert(t.end(), std::begin(kDsdtAml), std::end(kDsdtAml));
  t.insert(t.end(), std::begin(kCom1Aml), std::end(kCom1Aml));
  auto vmgenid = vm_generation_id_aml(c.vm_generation_id_addr, c.vm_generation_id_gsi);
  t.insert(t.end(), vmgenid.begin(), vmgenid.end());
  seal(t);
  return t;
}

std::vector<uint8_t> build_madt(const AcpiConfig& c) {
  std::vector<uint8_t> t;
  append_bytes(t, MadtHeader{make_header("APIC", 5, "WISPAPIC"), c.lapic_addr, kMadtPcatCompat});
  for (uint32_t cpu = 0; cpu < c.num_cpus; ++cpu) {
    auto id = static_cast<uint8_t>(cpu);
    append_bytes(t, MadtLapic{0, sizeof(MadtLapic), id, id, kMadtLapicEnabled});
  }
  append_bytes(t, MadtIoApic{1, sizeof(MadtIoApic), c.ioapic_id, 0, c.ioapic_addr, 0});
  // KVM's default GSI routing wires the PIT (ISA IRQ 0) to IOAPIC pin 2, as on a PC; every
  // other ISA IRQ n is GSI n, which the guest assumes without an entry.
  append_bytes(t, MadtIntOverride{2, sizeof(MadtIntOverride), 0, 0, 2, kIntiActiveHighEdge});
  // NMIs arrive on LINT1 of every LAPIC (the vCPU setup programs LINT1 as NMI).
  append_bytes(t, MadtLapicNmi{4, sizeof(MadtLapicNmi), 0xff, 0, 1});
  seal(t);
  return t;
}

std::vector<uint8_t> build_fadt(const AcpiConfig& c, uint64_t dsdt_addr) {
  Fadt f{};
  f.header = make_header("FACP", 6, "WISPFACP");
  // Both DSDT pointers, equal: Linux warns about (and picks one of) differing 32/64-bit pairs.
  f.dsdt = static_cast<uint32_t>(dsdt_addr);
  f.x_dsdt = dsdt_addr;
  // The i8042 is real (I8042 device), so say so: Linux then probes it even without PnP data.
  // Reboot reaches it either way: reboot=k writes 0xFE to port 0x64 directly, and the default
  // reboot=a goes through RESET_REG below, which is the same write.
  f.iapc_boot_arch = kBootLegacyDevices | kBoot8042 | kBootNoVga | kBootNoCmosRtc;
  f.flags = kFadtHwReducedAcpi | kFadtPowerButton | kFadtSleepButton | kFadtResetRegSup;
  f.reset_reg = io_register(c.reset_port);
  f.reset_value = c.reset_value;
  f.minor_version = 5;  // ACPI 6.5
  f.sleep_control_reg = io_register(c.sleep_control_port);
  f.sleep_status_reg = io_register(c.sleep_status_port);
  std::memcpy(f.hypervisor_vendor_id, "WISP    ", 8);

  std::vector<uint8_t> t;
  append_bytes(t, f);
  seal(t);
  return t;
}

std::vector<uint8_t> build_xsdt(std::initializer_list<uint64_t> tables) {
  std::vector<uint8_t> t;
  append_bytes(t, make_header("XSDT", 1, "WISPXSDT"));
  for (uint64_t addr : tables) append_bytes(t, addr);
  seal(t);
  return t;
}

std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr) {
  Rsdp r{};
  std::memcpy(r.signature, "RSD PTR ", 8);
  std::memcpy(r.oem_id, kOemId, 6);
  r.revision = 2;
  r.rsdt_addr = 0;  // no RSDT: every ACPI 2.0+ guest follows the XSDT
  r.length = sizeof(Rsdp);
  r.xsdt_addr = xsdt_addr;
  auto p = reinterpret_cast<uint8_t*>(&r);
  r.checksum = table_checksum(p, offsetof(Rsdp, length));
  r.extended_checksum = table_checksum(p, sizeof(Rsdp));
  std::vector<uint8_t> t;
  append_bytes(t, r);
  return t;
}

// Copies `table` into `blob` at guest address `addr` (the blob starts at `base`).
void put(std::vector<uint8_t>& blob, uint64_t base, uint64_t addr,
         const std::vector<uint8_t>& table) {
  size_t off = static_cast<size_t>(addr - base);
  if (blob.size() < off + table.size()) blob.resize(off + table.size(), 0);
  std::memcpy(blob.data() + off, table.data(), table.size());
}

}  // namespace

std::vector<uint8_t> build_acpi_tables(uint64_t base, const AcpiConfig& config) {
  if (config.num_cpus == 0 || config.num_cpus > kAcpiMaxCpus)
    throw Error("ACPI tables: " + std::to_string(config.num_cpus) + " vCPUs; must be 1.." +
                std::to_string(kAcpiMaxCpus));
  if (base % 16 != 0)
    throw Error("ACPI tables: RSDP address " + std::to_string(base) +
                " is not 16-byte aligned; guests only find it on 16-byte boundaries");

  // The RSDP goes first, at `base`; the tables it leads to follow at 16-byte boundaries in a
  // fixed order. All sizes are known up front, so each table's address is too, before the
  // table pointing at it is built.
  auto dsdt = build_dsdt(config);
  auto madt = build_madt(config);
  auto fadt_size = sizeof(Fadt), xsdt_size = sizeof(SdtHeader) + 2 * sizeof(uint64_t);
  uint64_t next = base;
  auto reserve = [&next](uint64_t size) {
    uint64_t addr = next;
    next = (next + size + 15) & ~uint64_t{15};
    return addr;
  };
  const uint64_t rsdp_addr = reserve(sizeof(Rsdp));
  const uint64_t xsdt_addr = reserve(xsdt_size);
  const uint64_t fadt_addr = reserve(fadt_size);
  const uint64_t madt_addr = reserve(madt.size());
  const uint64_t dsdt_addr = reserve(dsdt.size());
  constexpr uint64_t k4GiB = uint64_t{1} << 32;
  if (base >= k4GiB || dsdt_addr + dsdt.size() > k4GiB)
    throw Error("ACPI tables at " + std::to_string(base) + " would cross 4 GiB");
  const uint64_t id = config.vm_generation_id_addr;
  if (id + kVmGenerationIdBytes > base && id < dsdt_addr + dsdt.size())
    throw Error("ACPI tables at " + std::to_string(base) + " would overlap the VM generation id");

  std::vector<uint8_t> blob;
  put(blob, base, rsdp_addr, build_rsdp(xsdt_addr));
  put(blob, base, xsdt_addr, build_xsdt({fadt_addr, madt_addr}));
  put(blob, base, fadt_addr, build_fadt(config, dsdt_addr));
  put(blob, base, madt_addr, madt);
  put(blob, base, dsdt_addr, dsdt);
  return blob;
}

void write_acpi_tables(const GuestMemory& mem, uint32_t num_cpus) {
  AcpiConfig acpi;
  acpi.num_cpus = num_cpus;
  acpi.ioapic_id = layout::ioapic_id(num_cpus);
  auto tables = build_acpi_tables(layout::kAcpiTablesAddr, acpi);
  auto dst =
      mem.slice_or_throw(GuestAddress(layout::kAcpiTablesAddr), tables.size(), "ACPI tables");
  std::memcpy(dst.data(), tables.data(), tables.size());
}

}  // namespace wisp
