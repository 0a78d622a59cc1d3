// The VM generation id device: its AML read back the way ACPICA would walk it (every term
// known, every PkgLength ending inside its parent), and the live id in guest memory.
#include "vmm/acpi/vm_generation_id.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "base/error.h"
#include "vmm/acpi/acpi_tables.h"

namespace wisp {
namespace {

// Reads the AML subset the DSDT uses into "path = value" pairs, e.g. "\_SB_.VGEN._HID" =
// "\"VMGENCTR\"". Fails the test on anything else.
class AmlReader {
 public:
  explicit AmlReader(const std::vector<uint8_t>& aml) : a_(aml) { terms(0, a_.size(), "\\"); }
  std::map<std::string, std::string> names;

 private:
  size_t pkg_end(size_t& i) {
    size_t start = i;
    uint8_t lead = a_.at(i++);
    size_t extra = lead >> 6, len = extra ? lead & 0x0f : lead & 0x3f;
    for (size_t k = 0; k < extra; ++k) len |= size_t{a_.at(i++)} << (4 + 8 * k);
    return start + len;
  }
  std::string seg(size_t& i) {
    std::string s(reinterpret_cast<const char*>(&a_.at(i)), 4);
    i += 4;
    return s;
  }
  std::string join(const std::string& scope, const std::string& s) {
    return scope == "\\" ? scope + s : scope + "." + s;
  }
  std::string hex(uint64_t v) {
    char b[24];
    snprintf(b, sizeof(b), "0x%llx", static_cast<unsigned long long>(v));
    return b;
  }
  std::string data(size_t& i) {
    uint8_t op = a_.at(i++);
    if (op == 0x00 || op == 0x01) return hex(op);  // Zero, One
    if (op == 0x0a) return hex(a_.at(i++));
    if (op == 0x0c) {
      uint32_t v;
      std::memcpy(&v, &a_.at(i), 4);
      i += 4;
      return hex(v);
    }
    if (op == 0x0d) {
      size_t end = i;
      while (a_.at(end) != 0) ++end;
      std::string s = "\"" + std::string(&a_[i], &a_[end]) + "\"";
      i = end + 1;
      return s;
    }
    size_t end = pkg_end(i);
    EXPECT_LE(end, a_.size());
    std::string out;
    if (op == 0x12) {  // Package
      size_t count = a_.at(i++);
      out = "Package{";
      for (size_t k = 0; k < count; ++k) out += (k ? "," : "") + data(i);
      out += "}";
    } else if (op == 0x11) {  // Buffer: BytePrefix size, then the bytes
      EXPECT_EQ(a_.at(i++), 0x0a);
      size_t size = a_.at(i++);
      EXPECT_EQ(i + size, end) << "buffer size and PkgLength agree";
      out = "Buffer{";
      for (size_t k = 0; k < size; ++k) out += hex(a_.at(i + k)) + (k + 1 < size ? "," : "");
      out += "}";
      i += size;
    } else {
      ADD_FAILURE() << "unknown data op " << hex(op) << " at " << i - 1;
    }
    EXPECT_EQ(i, end) << "PkgLength ends where the contents do";
    i = end;
    return out;
  }
  void terms(size_t i, size_t end, const std::string& scope) {
    while (i < end && !::testing::Test::HasFailure()) {
      uint8_t op = a_[i++];
      if (op == 0x08) {  // Name
        std::string n = join(scope, seg(i));
        names[n] = data(i);
        continue;
      }
      size_t block_end = 0;
      std::string path;
      if (op == 0x10) {  // Scope, here always of a name in the root scope
        block_end = pkg_end(i);
        if (a_.at(i) == '\\') ++i;
        EXPECT_EQ(scope, "\\");
        path = join("\\", seg(i));
      } else if (op == 0x5b && a_.at(i) == 0x82) {  // Device
        ++i;
        block_end = pkg_end(i);
        path = join(scope, seg(i));
        names[path] = "Device";
      } else if (op == 0x14) {  // Method: record its flags and body bytes
        block_end = pkg_end(i);
        path = join(scope, seg(i));
        std::string body = "Method/" + hex(a_.at(i++)) + "{";
        for (size_t k = i; k < block_end; ++k)
          body += hex(a_.at(k)) + (k + 1 < block_end ? "," : "");
        names[path] = body + "}";
        i = block_end;
        continue;
      } else {
        ADD_FAILURE() << "unknown term op " << hex(op) << " at " << i - 1;
        return;
      }
      EXPECT_LE(block_end, end) << path << " ends inside its parent";
      terms(i, block_end, path);
      i = block_end;
    }
  }
  const std::vector<uint8_t>& a_;
};

std::vector<uint8_t> dsdt_body(uint32_t cpus) {
  AcpiConfig c;
  c.num_cpus = cpus;
  c.ioapic_id = static_cast<uint8_t>(cpus);
  std::vector<uint8_t> blob = build_acpi_tables(layout::kAcpiTablesAddr, c);
  for (size_t off = 0; off + 36 <= blob.size(); off += 16) {
    if (std::memcmp(&blob[off], "DSDT", 4) != 0) continue;
    uint32_t len;
    std::memcpy(&len, &blob[off + 4], 4);
    return std::vector<uint8_t>(blob.begin() + off + 36, blob.begin() + off + len);
  }
  ADD_FAILURE() << "no DSDT";
  return {};
}

TEST(VmGenerationIdAml, DsdtDescribesTheIdDeviceForLinuxsDriver) {
  for (uint32_t cpus : {1u, 254u}) {
    std::vector<uint8_t> aml = dsdt_body(cpus);
    AmlReader r(aml);
    ASSERT_FALSE(::testing::Test::HasFailure());
    auto& n = r.names;
    EXPECT_EQ(n["\\_SB_.VGEN"], "Device");
    EXPECT_EQ(n["\\_SB_.VGEN._HID"], "\"VMGENCTR\"");
    EXPECT_EQ(n["\\_SB_.VGEN._CID"], "\"VM_GEN_COUNTER\"");
    EXPECT_EQ(n["\\_SB_.VGEN.ADDR"], "Package{0xef000,0x0}") << "low half, high half";
    // The DSDT's older contents still read the same way.
    EXPECT_EQ(n["\\_S5_"], "Package{0x5,0x0,0x0,0x0}");
    EXPECT_EQ(n["\\_SB_.COM1._HID"], "0x105d041");
  }
}

TEST(VmGenerationIdAml, GedInterruptNotifiesTheIdDevice) {
  AmlReader r(dsdt_body(2));
  auto& n = r.names;
  EXPECT_EQ(n["\\_SB_.GED_._HID"], "\"ACPI0013\"");
  // Extended Interrupt: length 6, consumer + edge + active-high + exclusive, 1 GSI: 23.
  EXPECT_EQ(n["\\_SB_.GED_._CRS"], "Buffer{0x89,0x6,0x0,0x3,0x1,0x17,0x0,0x0,0x0,0x79,0x0}");
  EXPECT_EQ(kVmGenerationIdGsi, 23u);
  // _EVT(Arg0): Notify (\_SB_.VGEN, 0x80).
  EXPECT_EQ(n["\\_SB_.GED_._EVT"],
            "Method/0x1{0x86,0x5c,0x2e,0x5f,0x53,0x42,0x5f,0x56,0x47,0x45,0x4e,0xa,0x80}");
}

TEST(VmGenerationIdAml, LargeAddressesAndBadArguments) {
  AmlReader r(vm_generation_id_aml(0x1234567808ull, 5));
  EXPECT_EQ(r.names["\\_SB_.VGEN.ADDR"], "Package{0x34567808,0x12}");
  EXPECT_THROW(vm_generation_id_aml(0xef004, 5), Error) << "not 8-byte aligned";
  EXPECT_THROW(vm_generation_id_aml(0xef000, 256), Error);
  AcpiConfig c;
  c.vm_generation_id_addr = layout::kAcpiTablesAddr + 64;
  EXPECT_THROW(build_acpi_tables(layout::kAcpiTablesAddr, c), Error) << "inside the tables";
}

class CountingIrq final : public IrqLine {
 public:
  void trigger() override { ++count; }
  int count = 0;
};

TEST(VmGenerationId, FirstIdAtBootThenANewIdAndAnInterruptPerRestore) {
  GuestMemory mem = GuestMemory::create(2 << 20);
  CountingIrq irq;
  const GuestAddress at(layout::kVmGenerationIdAddr);
  VmGenerationId gen(mem, at, irq);
  std::array<uint8_t, 16> zero{}, in_guest{};
  gen.write_first();
  ASSERT_TRUE(mem.read(at, in_guest));
  EXPECT_EQ(in_guest, gen.id());
  EXPECT_NE(in_guest, zero);
  EXPECT_EQ(irq.count, 0) << "at boot the driver reads the id itself";
  auto first = gen.id();
  gen.change();
  ASSERT_TRUE(mem.read(at, in_guest));
  EXPECT_EQ(in_guest, gen.id());
  EXPECT_NE(in_guest, first);
  EXPECT_EQ(irq.count, 1);
  EXPECT_THROW(VmGenerationId(GuestMemory::create(512 << 10), at, irq), Error)
      << "memory that ends below the id";
}

}  // namespace
}  // namespace wisp
