#include "snapshot/device_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "snapshot/devices.capnp.h"
#include "base/error.h"

namespace wisp::snapshot {
namespace {

namespace s = device_schema;

Bytes to_bytes(capnp::MallocMessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto raw = words.asBytes();
  return Bytes(raw.begin(), raw.end());
}

// Parses `data` as one message with root `Root` and hands the reader to `decode`, turning
// whatever Cap'n Proto refuses into Error("<what>: malformed <kind>: ..."). The message is
// copied into word-aligned storage: a DeviceState's bytes sit at any offset.
template <typename Root, typename Decode>
auto parse(std::span<const uint8_t> data, const std::string& what, const char* kind,
           Decode&& decode) {
  auto fail = [&](const std::string& why) {
    return Error(what + ": malformed " + kind + ": " + why);
  };
  if (data.size() > kMaxBlobBytes)
    throw fail(std::to_string(data.size()) + " bytes (limit " + std::to_string(kMaxBlobBytes) +
               ")");
  if (data.size() % sizeof(capnp::word) != 0)
    throw fail("length " + std::to_string(data.size()) + " is not a multiple of 8");
  auto words = kj::heapArray<capnp::word>(data.size() / sizeof(capnp::word));
  if (!data.empty()) std::memcpy(words.begin(), data.data(), data.size());
  capnp::ReaderOptions options;
  // Each word is visited about once; the slack covers the segment table and small messages.
  options.traversalLimitInWords = 2 * words.size() + 1024;
  options.nestingLimit = 8;
  try {
    capnp::FlatArrayMessageReader reader(words, options);
    if (reader.getEnd() != words.end()) throw fail("trailing bytes after the message");
    return decode(reader.getRoot<Root>(), fail);
  } catch (const kj::Exception& e) {
    throw fail(e.getDescription().cStr());
  }
}

// ---- virtio ---------------------------------------------------------------------------------

void encode_queue(const QueueState& q, s::QueueState::Builder out) {
  out.setSize(q.size);
  out.setReady(q.ready);
  out.setDescTable(q.desc_table);
  out.setAvailRing(q.avail_ring);
  out.setUsedRing(q.used_ring);
  out.setNextAvail(q.next_avail);
  out.setNextUsed(q.next_used);
  out.setEventIdx(q.event_idx);
}

QueueState decode_queue(s::QueueState::Reader in) {
  QueueState q;
  q.size = in.getSize();
  q.ready = in.getReady();
  q.desc_table = in.getDescTable();
  q.avail_ring = in.getAvailRing();
  q.used_ring = in.getUsedRing();
  q.next_avail = in.getNextAvail();
  q.next_used = in.getNextUsed();
  q.event_idx = in.getEventIdx();
  return q;
}

void encode_transport(const MmioTransportState& t, s::MmioTransportState::Builder out) {
  out.setStatus(t.status);
  out.setDeviceFeaturesSel(t.device_features_sel);
  out.setDriverFeaturesSel(t.driver_features_sel);
  out.setDriverFeatures(t.driver_features);
  out.setQueueSel(t.queue_sel);
  out.setInterruptStatus(t.interrupt_status);
  out.setConfigGeneration(t.config_generation);
  out.setNeedsReset(t.needs_reset);
  out.setDeviceActivated(t.device_activated);
  auto queues = out.initQueues(static_cast<unsigned>(t.queues.size()));
  for (size_t i = 0; i < t.queues.size(); ++i) encode_queue(t.queues[i], queues[i]);
}

template <typename Fail>
MmioTransportState decode_transport(s::MmioTransportState::Reader in, const Fail& fail) {
  MmioTransportState t;
  t.status = in.getStatus();
  t.device_features_sel = in.getDeviceFeaturesSel();
  t.driver_features_sel = in.getDriverFeaturesSel();
  t.driver_features = in.getDriverFeatures();
  t.queue_sel = in.getQueueSel();
  t.interrupt_status = in.getInterruptStatus();
  t.config_generation = in.getConfigGeneration();
  t.needs_reset = in.getNeedsReset();
  t.device_activated = in.getDeviceActivated();
  auto queues = in.getQueues();
  if (queues.size() > MmioTransport::kMaxQueues)
    throw fail(std::to_string(queues.size()) + " queues (limit " +
               std::to_string(MmioTransport::kMaxQueues) + ")");
  for (auto q : queues) t.queues.push_back(decode_queue(q));
  return t;
}

void encode_device(const VirtioDeviceState& d, s::VirtioSlot::Device::Builder out) {
  if (const auto* b = std::get_if<BlockState>(&d)) {
    auto block = out.initBlock();
    block.setCapacitySectors(b->capacity_sectors);
    block.setReadOnly(b->read_only);
    block.setSegMax(b->seg_max);
  } else if (const auto* v = std::get_if<VsockState>(&d)) {
    out.initVsock().setGuestCid(v->guest_cid);
  } else {
    out.setRng();
  }
}

template <typename Fail>
VirtioDeviceState decode_device(s::VirtioSlot::Device::Reader in, const Fail& fail) {
  switch (in.which()) {
    case s::VirtioSlot::Device::BLOCK: {
      auto b = in.getBlock();
      return BlockState{b.getCapacitySectors(), b.getReadOnly(), b.getSegMax()};
    }
    case s::VirtioSlot::Device::RNG:
      return RngState{};
    case s::VirtioSlot::Device::VSOCK:
      return VsockState{in.getVsock().getGuestCid()};
  }
  // A newer wisp's device, or garbage.
  throw fail("unknown virtio device kind " + std::to_string(static_cast<unsigned>(in.which())));
}

}  // namespace

// ---- serial ---------------------------------------------------------------------------------

Bytes encode_serial(const SerialState& st) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<s::SerialState>();
  root.setIer(st.ier);
  root.setLcr(st.lcr);
  root.setMcr(st.mcr);
  root.setScr(st.scr);
  root.setDll(st.dll);
  root.setDlm(st.dlm);
  root.setFifoEnabled(st.fifo_enabled);
  root.setThrEmptyPending(st.thr_empty_pending);
  root.setRx(capnp::Data::Reader(st.rx.data(), st.rx.size()));
  return to_bytes(message);
}

SerialState decode_serial(std::span<const uint8_t> data, const std::string& what) {
  return parse<s::SerialState>(data, what, "serial state", [](auto in, const auto& fail) {
    SerialState st;
    st.ier = in.getIer();
    st.lcr = in.getLcr();
    st.mcr = in.getMcr();
    st.scr = in.getScr();
    st.dll = in.getDll();
    st.dlm = in.getDlm();
    st.fifo_enabled = in.getFifoEnabled();
    st.thr_empty_pending = in.getThrEmptyPending();
    auto rx = in.getRx();
    if (rx.size() > Serial::kMaxPendingInput)
      throw fail(std::to_string(rx.size()) + " pending input bytes (limit " +
                 std::to_string(Serial::kMaxPendingInput) + ")");
    st.rx.assign(rx.begin(), rx.end());
    return st;
  });
}

// ---- virtio-mmio slot -----------------------------------------------------------------------

Bytes encode_virtio(const VirtioSlotState& st) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<s::VirtioSlot>();
  encode_transport(st.transport, root.initTransport());
  encode_device(st.device, root.initDevice());
  return to_bytes(message);
}

VirtioSlotState decode_virtio(std::span<const uint8_t> data, const std::string& what) {
  return parse<s::VirtioSlot>(data, what, "virtio-mmio state", [](auto in, const auto& fail) {
    return VirtioSlotState{decode_transport(in.getTransport(), fail),
                           decode_device(in.getDevice(), fail)};
  });
}

}  // namespace wisp::snapshot
