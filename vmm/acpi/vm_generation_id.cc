#include "vmm/acpi/vm_generation_id.h"

#include <sys/random.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/error.h"

namespace wisp {
namespace {

// AML encoding, ACPI 6.5 chapter 20: just the terms these two devices need.
using Aml = std::vector<uint8_t>;

constexpr uint8_t kNameOp = 0x08, kScopeOp = 0x10, kBufferOp = 0x11, kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14, kNotifyOp = 0x86, kExtOpPrefix = 0x5b, kDeviceOp = 0x82;
constexpr uint8_t kBytePrefix = 0x0a, kDWordPrefix = 0x0c, kStringPrefix = 0x0d;
constexpr uint8_t kRootChar = 0x5c, kDualNamePrefix = 0x2e;

void append(Aml& out, const Aml& part) { out.insert(out.end(), part.begin(), part.end()); }

// PkgLength (20.2.4) counts itself and what follows; 1 byte up to 63, 2 bytes up to 4095.
Aml with_pkg_length(const Aml& body) {
  Aml out;
  size_t len = body.size() + 1;
  if (len <= 63) {
    out.push_back(static_cast<uint8_t>(len));
  } else {
    len += 1;
    if (len > 0xfff) throw Error("ACPI DSDT: AML package of " + std::to_string(len) + " bytes");
    out.push_back(static_cast<uint8_t>(0x40 | (len & 0xf)));
    out.push_back(static_cast<uint8_t>(len >> 4));
  }
  append(out, body);
  return out;
}

// A 4-character NameSeg, as written in the source ("VGEN", "_HID").
Aml name_seg(const char (&seg)[5]) { return Aml(seg, seg + 4); }

Aml string(std::string_view s) {
  // Built whole rather than by inserting into a one-byte vector, which GCC 12's -O2
  // -Warray-bounds misreads as an overflow.
  Aml out(s.size() + 2, 0);
  out[0] = kStringPrefix;
  std::copy(s.begin(), s.end(), out.begin() + 1);
  return out;
}

Aml dword(uint32_t v) {
  Aml out{kDWordPrefix};
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return out;
}

Aml name(const char (&seg)[5], const Aml& value) {
  Aml out{kNameOp};
  append(out, name_seg(seg));
  append(out, value);
  return out;
}

Aml package(std::initializer_list<Aml> elements) {
  Aml body{static_cast<uint8_t>(elements.size())};
  for (const Aml& e : elements) append(body, e);
  Aml out{kPackageOp};
  append(out, with_pkg_length(body));
  return out;
}

Aml buffer(const Aml& bytes) {
  Aml body{kBytePrefix, static_cast<uint8_t>(bytes.size())};
  append(body, bytes);
  Aml out{kBufferOp};
  append(out, with_pkg_length(body));
  return out;
}

// Scope, Device and Method: an opcode, PkgLength, a NameSeg, then the contents.
Aml named_block(const Aml& opcode, const char (&seg)[5], std::initializer_list<Aml> contents) {
  Aml body = name_seg(seg);
  for (const Aml& c : contents) append(body, c);
  Aml out = opcode;
  append(out, with_pkg_length(body));
  return out;
}

// A resource template with one Extended Interrupt Descriptor (6.4.3.6): consumer,
// edge-triggered, active-high, exclusive, one interrupt number; then the end tag.
Aml interrupt_resource(uint32_t gsi) {
  Aml r{0x89, 0x06, 0x00, 0x03, 0x01};
  for (int i = 0; i < 4; ++i) r.push_back(static_cast<uint8_t>(gsi >> (8 * i)));
  r.insert(r.end(), {0x79, 0x00});  // end tag, checksum 0 ("none")
  return r;
}

}  // namespace

std::vector<uint8_t> vm_generation_id_aml(uint64_t id_addr, uint32_t gsi) {
  if (id_addr % 8 != 0)
    throw Error("ACPI VM generation id at " + std::to_string(id_addr) + ": not 8-byte aligned");
  if (gsi > 255) throw Error("ACPI GED: GSI " + std::to_string(gsi) + " above 255");
  //   Device (VGEN) { Name (_HID, "VMGENCTR") Name (_CID, "VM_GEN_COUNTER")
  //     Name (ADDR, Package () { low 32 bits, high 32 bits }) }
  Aml vgen = named_block({kExtOpPrefix, kDeviceOp}, "VGEN",
                         {name("_HID", string("VMGENCTR")), name("_CID", string("VM_GEN_COUNTER")),
                          name("ADDR", package({dword(static_cast<uint32_t>(id_addr)),
                                                dword(static_cast<uint32_t>(id_addr >> 32))}))});
  //   Device (GED_) { Name (_HID, "ACPI0013") Name (_CRS, ResourceTemplate () { Interrupt () })
  //     Method (_EVT, 1) { Notify (\_SB_.VGEN, 0x80) } }
  // Linux's GED driver calls _EVT with the GSI; this GED has one event, so Arg0 goes unread.
  Aml notify{kNotifyOp, kRootChar,   kDualNamePrefix,      '_', 'S', 'B', '_', 'V', 'G', 'E',
             'N',       kBytePrefix, kVmGenerationIdNotify};
  Aml method_flags{0x01};  // one argument, not serialized
  Aml ged =
      named_block({kExtOpPrefix, kDeviceOp}, "GED_",
                  {name("_HID", string("ACPI0013")), name("_CRS", buffer(interrupt_resource(gsi))),
                   named_block({kMethodOp}, "_EVT", {method_flags, notify})});
  return named_block({kScopeOp}, "_SB_", {vgen, ged});
}

VmGenerationId::VmGenerationId(const GuestMemory& mem, GuestAddress addr, IrqLine& irq)
    : mem_(mem), addr_(addr), irq_(irq) {
  mem.slice_or_throw(addr, kVmGenerationIdBytes, "VM generation id");
}

void VmGenerationId::write_random_id() {
  if (getrandom(id_.data(), id_.size(), 0) != static_cast<ssize_t>(id_.size()))
    throw_errno("getrandom for the VM generation id");
  mem_.write(addr_, id_);
}

void VmGenerationId::write_first() { write_random_id(); }

void VmGenerationId::change() {
  write_random_id();
  irq_.trigger();
}

}  // namespace wisp
