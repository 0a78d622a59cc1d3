#include "snapshot/state_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <string>

#include "snapshot/state.capnp.h"
#include "base/error.h"

namespace wisp::snapshot {
namespace {

namespace s = schema;

capnp::Data::Reader data(const Bytes& b) { return capnp::Data::Reader(b.data(), b.size()); }
Bytes bytes(capnp::Data::Reader d) { return Bytes(d.begin(), d.end()); }
// Refuses a NUL inside the text: the encoder writes strings as C strings, so it would cut one
// short and the state would not survive a save.
std::string text(capnp::Text::Reader t) {
  if (std::memchr(t.cStr(), '\0', t.size()) != nullptr) {
    throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                        kj::str("a text field contains a NUL byte"));
  }
  return std::string(t.cStr(), t.size());
}

void encode_metadata(const Metadata& m, s::Metadata::Builder out) {
  out.setCreatorVersion(m.creator_version);
  out.setCreatedUnixNs(m.created_unix_ns);
  out.setCpuVendor(m.cpu_vendor);
  auto leaves = out.initCpuid(m.cpuid.size());
  for (size_t i = 0; i < m.cpuid.size(); ++i) {
    const CpuidLeaf& l = m.cpuid[i];
    auto b = leaves[i];
    b.setFunction(l.function);
    b.setIndex(l.index);
    b.setEax(l.eax);
    b.setEbx(l.ebx);
    b.setEcx(l.ecx);
    b.setEdx(l.edx);
  }
}

void encode_vcpu(const VcpuState& v, s::VcpuState::Builder out) {
  out.setId(v.id);
  out.setRegs(data(v.regs));
  out.setSregs(data(v.sregs));
  out.setFpu(data(v.fpu));
  out.setXsave(data(v.xsave));
  out.setXcrs(data(v.xcrs));
  auto msrs = out.initMsrs(v.msrs.size());
  for (size_t i = 0; i < v.msrs.size(); ++i) {
    msrs[i].setIndex(v.msrs[i].index);
    msrs[i].setValue(v.msrs[i].value);
  }
  out.setLapic(data(v.lapic));
  out.setEvents(data(v.events));
  out.setDebugregs(data(v.debugregs));
  out.setMpState(v.mp_state);
  out.setTscKhz(v.tsc_khz);
}

// Refuses an oversized list before decoding it: a list of empty structs costs one word each in
// the message but a full C++ object each once decoded.
void check_count(size_t n, size_t limit, const char* what, const std::string& file) {
  if (n > limit) {
    throw Error(file + ": invalid snapshot state: " + std::to_string(n) + " " + what + " (limit " +
                std::to_string(limit) + ")");
  }
}

Metadata decode_metadata(s::Metadata::Reader in, const std::string& file) {
  Metadata m;
  m.creator_version = text(in.getCreatorVersion());
  m.created_unix_ns = in.getCreatedUnixNs();
  m.cpu_vendor = text(in.getCpuVendor());
  check_count(in.getCpuid().size(), kMaxCpuidLeaves, "CPUID leaves", file);
  for (auto l : in.getCpuid()) {
    m.cpuid.push_back(
        {l.getFunction(), l.getIndex(), l.getEax(), l.getEbx(), l.getEcx(), l.getEdx()});
  }
  return m;
}

VcpuState decode_vcpu(s::VcpuState::Reader in, const std::string& file) {
  VcpuState v;
  v.id = in.getId();
  v.regs = bytes(in.getRegs());
  v.sregs = bytes(in.getSregs());
  v.fpu = bytes(in.getFpu());
  v.xsave = bytes(in.getXsave());
  v.xcrs = bytes(in.getXcrs());
  check_count(in.getMsrs().size(), kMaxMsrsPerVcpu, "MSRs in one vCPU", file);
  for (auto m : in.getMsrs()) v.msrs.push_back({m.getIndex(), m.getValue()});
  v.lapic = bytes(in.getLapic());
  v.events = bytes(in.getEvents());
  v.debugregs = bytes(in.getDebugregs());
  v.mp_state = in.getMpState();
  v.tsc_khz = in.getTscKhz();
  return v;
}

SnapshotState decode(s::VmState::Reader in, const std::string& file) {
  SnapshotState st;
  st.metadata = decode_metadata(in.getMetadata(), file);
  check_count(in.getMemory().getRegions().size(), kMaxRegions, "memory regions", file);
  check_count(in.getVcpus().size(), kMaxVcpus, "vCPUs", file);
  check_count(in.getDevices().size(), kMaxDevices, "devices", file);
  for (auto r : in.getMemory().getRegions()) {
    st.memory.push_back({r.getGuestBase(), r.getSize(), r.getFileOffset()});
  }
  for (auto v : in.getVcpus()) st.vcpus.push_back(decode_vcpu(v, file));
  auto irq = in.getIrqchip();
  st.irqchip = {bytes(irq.getPicMaster()), bytes(irq.getPicSlave()), bytes(irq.getIoapic())};
  st.pit = bytes(in.getPit().getPit());
  st.clock = {in.getClock().getClockNs(), in.getClock().getFlags()};
  for (auto d : in.getDevices()) {
    st.devices.push_back({text(d.getKind()), text(d.getName()), bytes(d.getData())});
  }
  st.tsc_khz = in.getTscKhz();
  auto m = in.getMachine();
  st.machine.mem_bytes = m.getMemBytes();
  check_count(m.getDrives().size(), kMaxDrives, "drives", file);
  for (auto d : m.getDrives())
    st.machine.drives.push_back(
        {text(d.getPath()), d.getReadOnly(), d.getSizeBytes(), d.getMtimeNs()});
  st.machine.rng = m.getRng();
  st.machine.vsock = m.getVsock();
  st.machine.vsock_cid = m.getVsockCid();
  st.id = text(in.getId());
  st.diff = {text(in.getDiff().getParentDir()), text(in.getDiff().getParentId()),
             bytes(in.getDiff().getPages())};
  return st;
}

}  // namespace

Bytes encode_state_payload(const SnapshotState& st) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<s::VmState>();
  encode_metadata(st.metadata, root.initMetadata());
  auto regions = root.initMemory().initRegions(st.memory.size());
  for (size_t i = 0; i < st.memory.size(); ++i) {
    regions[i].setGuestBase(st.memory[i].guest_base);
    regions[i].setSize(st.memory[i].size);
    regions[i].setFileOffset(st.memory[i].file_offset);
  }
  auto vcpus = root.initVcpus(st.vcpus.size());
  for (size_t i = 0; i < st.vcpus.size(); ++i) encode_vcpu(st.vcpus[i], vcpus[i]);
  auto irq = root.initIrqchip();
  irq.setPicMaster(data(st.irqchip.pic_master));
  irq.setPicSlave(data(st.irqchip.pic_slave));
  irq.setIoapic(data(st.irqchip.ioapic));
  root.initPit().setPit(data(st.pit));
  root.initClock().setClockNs(st.clock.clock_ns);
  root.getClock().setFlags(st.clock.flags);
  auto devices = root.initDevices(st.devices.size());
  for (size_t i = 0; i < st.devices.size(); ++i) {
    devices[i].setKind(st.devices[i].kind);
    devices[i].setName(st.devices[i].name);
    devices[i].setData(data(st.devices[i].data));
  }
  root.setTscKhz(st.tsc_khz);
  auto m = root.initMachine();
  m.setMemBytes(st.machine.mem_bytes);
  auto drives = m.initDrives(st.machine.drives.size());
  for (size_t i = 0; i < st.machine.drives.size(); ++i) {
    drives[i].setPath(st.machine.drives[i].path);
    drives[i].setReadOnly(st.machine.drives[i].read_only);
    drives[i].setSizeBytes(st.machine.drives[i].size_bytes);
    drives[i].setMtimeNs(st.machine.drives[i].mtime_ns);
  }
  m.setRng(st.machine.rng);
  m.setVsock(st.machine.vsock);
  m.setVsockCid(st.machine.vsock_cid);
  root.setId(st.id);
  auto diff = root.initDiff();
  diff.setParentDir(st.diff.parent_dir);
  diff.setParentId(st.diff.parent_id);
  diff.setPages(data(st.diff.pages));
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto raw = words.asBytes();
  return Bytes(raw.begin(), raw.end());
}

SnapshotState decode_state_payload(std::span<const uint8_t> payload, const std::string& file) {
  auto fail = [&](const std::string& why) -> Error {
    return Error(file + ": malformed state payload: " + why);
  };
  if (payload.size() % sizeof(capnp::word) != 0) {
    throw fail("length " + std::to_string(payload.size()) + " is not a multiple of 8");
  }
  // Copy into word-aligned storage: the frame puts the payload at an arbitrary offset.
  auto words = kj::heapArray<capnp::word>(payload.size() / sizeof(capnp::word));
  if (!payload.empty()) std::memcpy(words.begin(), payload.data(), payload.size());
  capnp::ReaderOptions options;
  // Each word is visited about once by decode(); the slack covers the segment table.
  options.traversalLimitInWords = 2 * words.size() + 1024;
  options.nestingLimit = 16;
  try {
    capnp::FlatArrayMessageReader reader(words, options);
    if (reader.getEnd() != words.end()) throw fail("trailing bytes after the message");
    return decode(reader.getRoot<s::VmState>(), file);
  } catch (const kj::Exception& e) {
    throw fail(e.getDescription().cStr());
  }
}

}  // namespace wisp::snapshot
