#include "vmm/boot/mptable.h"

#include <cstring>
#include <string>

#include "base/error.h"
#include "vmm/arch/firmware_table.h"
#include "vmm/arch/layout.h"

namespace wisp {
namespace {

// Entry layouts from the MP spec, chapter 4. All little-endian, packed.
struct __attribute__((packed)) FloatingPointer {
  char signature[4];  // "_MP_"
  uint32_t config_table;
  uint8_t length;  // in 16-byte units
  uint8_t spec_rev;
  uint8_t checksum;
  uint8_t features[5];
};
struct __attribute__((packed)) ConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem[8];
  char product[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_addr;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};
struct __attribute__((packed)) ProcessorEntry {
  uint8_t type;  // 0
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit 0 enabled, bit 1 bootstrap processor
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};
struct __attribute__((packed)) BusEntry {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];
};
struct __attribute__((packed)) IoApicEntry {
  uint8_t type;  // 2
  uint8_t apic_id;
  uint8_t version;
  uint8_t flags;  // bit 0 enabled
  uint32_t addr;
};
struct __attribute__((packed)) InterruptEntry {
  uint8_t type;      // 3 = I/O interrupt, 4 = local interrupt
  uint8_t irq_type;  // 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t flags;    // 0: polarity and trigger conform to the bus (ISA: active-high, edge)
  uint8_t src_bus;
  uint8_t src_irq;
  uint8_t dst_apic;
  uint8_t dst_pin;
};
static_assert(sizeof(FloatingPointer) == 16 && sizeof(ConfigHeader) == 44);
static_assert(sizeof(ProcessorEntry) == 20 && sizeof(BusEntry) == 8);
static_assert(sizeof(IoApicEntry) == 8 && sizeof(InterruptEntry) == 8);

constexpr uint8_t kApicVersion = 0x14, kIoApicVersion = 0x11;
constexpr uint8_t kIntInt = 0, kIntNmi = 1, kIntExt = 3;

}  // namespace

std::vector<uint8_t> build_mptable(uint64_t base, uint32_t num_cpus) {
  if (num_cpus == 0 || num_cpus > kMpTableMaxCpus)
    throw Error("MP table: " + std::to_string(num_cpus) + " vCPUs; must be 1.." +
                std::to_string(kMpTableMaxCpus));
  const uint8_t ioapic_id = layout::ioapic_id(num_cpus);

  std::vector<uint8_t> body;  // entries after the config header
  uint16_t count = 0;
  for (uint32_t cpu = 0; cpu < num_cpus; ++cpu, ++count) {
    ProcessorEntry p{};
    p.type = 0;
    p.apic_id = static_cast<uint8_t>(cpu);
    p.apic_version = kApicVersion;
    p.flags = static_cast<uint8_t>(1 | (cpu == 0 ? 2 : 0));
    p.signature = 0x600;  // family 6: only informational
    p.features = 0x201;   // FPU + APIC
    append_bytes(body, p);
  }
  BusEntry bus{1, 0, {'I', 'S', 'A', ' ', ' ', ' '}};
  append_bytes(body, bus);
  ++count;
  IoApicEntry io{2, ioapic_id, kIoApicVersion, 1, static_cast<uint32_t>(layout::kIoapicAddr)};
  append_bytes(body, io);
  ++count;
  // ISA IRQs as on a PC: the PIC's ExtINT on pin 0, the timer (IRQ 0) on pin 2, IRQ n on pin n.
  // This matches KVM's default GSI routing, where GSI 0 drives IOAPIC pin 2.
  append_bytes(body, InterruptEntry{3, kIntExt, 0, 0, 0, ioapic_id, 0});
  ++count;
  for (uint8_t irq = 0; irq < 16; ++irq, ++count) {
    if (irq == 2) {  // the cascade: IRQ 2 does not exist on the ISA bus; pin 2 is the timer
      --count;
      continue;
    }
    uint8_t pin = irq == 0 ? 2 : irq;
    append_bytes(body, InterruptEntry{3, kIntInt, 0, 0, irq, ioapic_id, pin});
  }
  // Local interrupts: LINT0 = ExtINT, LINT1 = NMI on every LAPIC (0xff = all).
  append_bytes(body, InterruptEntry{4, kIntExt, 0, 0, 0, 0xff, 0});
  append_bytes(body, InterruptEntry{4, kIntNmi, 0, 0, 0, 0xff, 1});
  count += 2;

  ConfigHeader hdr{};
  std::memcpy(hdr.signature, "PCMP", 4);
  hdr.length = static_cast<uint16_t>(sizeof(ConfigHeader) + body.size());
  hdr.spec_rev = 4;
  std::memcpy(hdr.oem, "WISP    ", 8);
  std::memcpy(hdr.product, "WISP MICROVM", 12);
  hdr.entry_count = count;
  hdr.lapic_addr = static_cast<uint32_t>(layout::kLapicAddr);

  std::vector<uint8_t> config;
  append_bytes(config, hdr);
  config.insert(config.end(), body.begin(), body.end());
  config[offsetof(ConfigHeader, checksum)] = table_checksum(config.data(), config.size());

  FloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.config_table = static_cast<uint32_t>(base + sizeof(FloatingPointer));
  fp.length = 1;
  fp.spec_rev = 4;
  fp.checksum = table_checksum(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp));

  std::vector<uint8_t> out;
  append_bytes(out, fp);
  out.insert(out.end(), config.begin(), config.end());
  return out;
}

}  // namespace wisp
