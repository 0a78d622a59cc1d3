#include "snapshot/state_codec.h"

#include <capnp/message.h>

#include <string>

#include "base/error.h"
#include "snapshot/capnp_message.h"
#include "snapshot/device_codec.h"
#include "snapshot/state.capnp.h"
#include "snapshot/state_file.h"
#include "vmm/boot/mptable.h"
#include "vmm/virtio/mmio_layout.h"

namespace wisp::snapshot {
namespace {

namespace s = schema;

capnp::Data::Reader data(const Bytes& b) { return capnp::Data::Reader(b.data(), b.size()); }
Bytes bytes(capnp::Data::Reader d) { return Bytes(d.begin(), d.end()); }
// ---- vCPUs and the VM -----------------------------------------------------------------------

void encode_vcpu(const VcpuState& v, s::VcpuState::Builder out) {
  out.setId(v.id);
  out.setRegs(data(v.regs));
  out.setSregs(data(v.sregs));
  out.setFpu(data(v.fpu));
  out.setXsave(data(v.xsave));
  out.setXcrs(data(v.xcrs));
  out.setLapic(data(v.lapic));
  out.setVcpuEvents(data(v.vcpu_events));
  out.setDebugRegs(data(v.debug_regs));
  out.setMpState(v.mp_state);
  auto msrs = out.initMsrs(v.msrs.size());
  for (size_t i = 0; i < v.msrs.size(); ++i) {
    msrs[i].setIndex(v.msrs[i].index);
    msrs[i].setValue(v.msrs[i].value);
  }
  out.setTscKhz(v.tsc_khz);
}

VcpuState decode_vcpu(s::VcpuState::Reader in) {
  VcpuState v;
  v.id = in.getId();
  v.regs = bytes(in.getRegs());
  v.sregs = bytes(in.getSregs());
  v.fpu = bytes(in.getFpu());
  v.xsave = bytes(in.getXsave());
  v.xcrs = bytes(in.getXcrs());
  v.lapic = bytes(in.getLapic());
  v.vcpu_events = bytes(in.getVcpuEvents());
  v.debug_regs = bytes(in.getDebugRegs());
  v.mp_state = in.getMpState();
  check_count(in.getMsrs().size(), KvmImageSize::kMaxMsrs, "MSRs in one vCPU");
  for (auto m : in.getMsrs()) v.msrs.push_back({m.getIndex(), m.getValue()});
  v.tsc_khz = in.getTscKhz();
  return v;
}

void encode_vm(const VmState& vm, s::VmState::Builder out) {
  out.setPicMaster(data(vm.pic_master));
  out.setPicSlave(data(vm.pic_slave));
  out.setIoapic(data(vm.ioapic));
  out.setPit(data(vm.pit));
  out.setClockNs(vm.clock_ns);
  out.setClockFlags(vm.clock_flags);
}

VmState decode_vm(s::VmState::Reader in) {
  return {bytes(in.getPicMaster()), bytes(in.getPicSlave()), bytes(in.getIoapic()),
          bytes(in.getPit()),       in.getClockNs(),         in.getClockFlags()};
}

// ---- the machine ----------------------------------------------------------------------------

void encode_machine(const MachineState& m, s::Machine::Builder out) {
  out.setMemBytes(m.mem_bytes);
  out.setCpuModel(m.cpu_model == CpuModel::kX86_64_v2 ? s::CpuModel::X8664_V2 : s::CpuModel::HOST);
  auto cpuid = out.initCpuid(m.cpuid.size());
  for (size_t i = 0; i < m.cpuid.size(); ++i) {
    const CpuidEntry& e = m.cpuid[i];
    cpuid[i].setFunction(e.function);
    cpuid[i].setIndex(e.index);
    cpuid[i].setFlags(e.flags);
    cpuid[i].setEax(e.eax);
    cpuid[i].setEbx(e.ebx);
    cpuid[i].setEcx(e.ecx);
    cpuid[i].setEdx(e.edx);
  }
  encode_vm(m.vm, out.initVm());
  auto vcpus = out.initVcpus(m.vcpus.size());
  for (size_t i = 0; i < m.vcpus.size(); ++i) encode_vcpu(m.vcpus[i], vcpus[i]);
  encode_serial(m.serial, out.initSerial());
  auto virtio = out.initVirtio(m.virtio.size());
  for (size_t i = 0; i < m.virtio.size(); ++i) encode_virtio(m.virtio[i], virtio[i]);
}

MachineState decode_machine(s::Machine::Reader in) {
  MachineState m;
  m.mem_bytes = in.getMemBytes();
  switch (in.getCpuModel()) {
    case s::CpuModel::HOST:
      m.cpu_model = CpuModel::kHost;
      break;
    case s::CpuModel::X8664_V2:
      m.cpu_model = CpuModel::kX86_64_v2;
      break;
    default:  // a value from a newer wisp, or damage
      throw Error("machine state: CPU model " +
                  std::to_string(static_cast<uint16_t>(in.getCpuModel())) + " is unknown");
  }
  check_count(in.getCpuid().size(), MachineState::kMaxCpuidEntries, "CPUID entries");
  for (auto e : in.getCpuid()) {
    m.cpuid.push_back({e.getFunction(), e.getIndex(), e.getFlags(), e.getEax(), e.getEbx(),
                       e.getEcx(), e.getEdx()});
  }
  m.vm = decode_vm(in.getVm());
  check_count(in.getVcpus().size(), kMpTableMaxCpus, "vCPUs");
  for (auto v : in.getVcpus()) m.vcpus.push_back(decode_vcpu(v));
  m.serial = decode_serial(in.getSerial());
  check_count(in.getVirtio().size(), kMaxVirtioMmioDevices, "virtio devices");
  for (auto d : in.getVirtio()) m.virtio.push_back(decode_virtio(d));
  return m;
}

// ---- what the snapshot layer adds -----------------------------------------------------------

SnapshotState decode(s::SnapshotState::Reader in) {
  SnapshotState st;
  st.metadata = {read_text(in.getMetadata().getCreatorVersion()),
                 in.getMetadata().getCreatedUnixNs()};
  check_count(in.getMemory().size(), kMaxRegions, "memory regions");
  for (auto r : in.getMemory())
    st.memory.push_back({r.getGuestBase(), r.getSize(), r.getFileOffset()});
  st.machine = decode_machine(in.getMachine());
  st.id = read_text(in.getId());
  st.diff = {read_text(in.getDiff().getParentDir()), read_text(in.getDiff().getParentId()),
             bytes(in.getDiff().getPages())};
  return st;
}

}  // namespace

Bytes encode_state_payload(const SnapshotState& st) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<s::SnapshotState>();
  root.initMetadata().setCreatorVersion(st.metadata.creator_version);
  root.getMetadata().setCreatedUnixNs(st.metadata.created_unix_ns);
  auto regions = root.initMemory(st.memory.size());
  for (size_t i = 0; i < st.memory.size(); ++i) {
    regions[i].setGuestBase(st.memory[i].guest_base);
    regions[i].setSize(st.memory[i].size);
    regions[i].setFileOffset(st.memory[i].file_offset);
  }
  encode_machine(st.machine, root.initMachine());
  root.setId(st.id);
  auto diff = root.initDiff();
  diff.setParentDir(st.diff.parent_dir);
  diff.setParentId(st.diff.parent_id);
  diff.setPages(data(st.diff.pages));
  return message_bytes(message);
}

SnapshotState decode_state_payload(std::span<const uint8_t> payload, const std::string& file) {
  return read_message<s::SnapshotState>(
      payload, kMaxPayloadBytes,
      file + ": malformed state payload: ", [](auto in) { return decode(in); });
}

}  // namespace wisp::snapshot
