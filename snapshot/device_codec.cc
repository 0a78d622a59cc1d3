#include "snapshot/device_codec.h"

#include <capnp/dynamic.h>

#include <cctype>
#include <concepts>
#include <string_view>
#include <type_traits>

#include "base/error.h"
#include "snapshot/capnp_message.h"
#include "vmm/virtio/device_kinds.h"

namespace wisp::snapshot {
namespace {

namespace s = device_schema;

// A device message alone (tests, fuzzers) is small; a serial port's pending input is the most.
constexpr uint64_t kMaxDeviceMessageBytes = 1 << 20;

// ---- a kind's Spec and State, by their fields() ----------------------------------------------

// "virtio-blk" -> "virtioBlk", "capacity_sectors" -> "capacitySectors": the schema's names.
std::string schema_name(std::string_view name) {
  std::string out;
  bool upper = false;
  for (char c : name) {
    if (c == '-' || c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

capnp::DynamicValue::Reader dynamic_value(const std::string& v) {
  return capnp::Text::Reader(v.c_str(), v.size());
}
capnp::DynamicValue::Reader dynamic_value(std::integral auto v) { return v; }

void read_value(capnp::DynamicValue::Reader in, std::string& out) {
  out = read_text(in.as<capnp::Text>());
}
void read_value(capnp::DynamicValue::Reader in, std::integral auto& out) {
  out = in.as<std::remove_reference_t<decltype(out)>>();  // range-checked against the schema
}

template <typename T>
void write_fields(const T& value, capnp::DynamicStruct::Builder out) {
  T::fields(value, [&](const char* name, const auto& field) {
    std::string key = schema_name(name);
    out.set(kj::StringPtr(key.c_str(), key.size()), dynamic_value(field));
  });
}

template <typename T>
T read_fields(capnp::DynamicStruct::Reader in) {
  T value;
  T::fields(value, [&](const char* name, auto& field) {
    std::string key = schema_name(name);
    read_value(in.get(kj::StringPtr(key.c_str(), key.size())), field);
  });
  return value;
}

// The slot's kind as the union member named after it, holding `spec` and `state`.
void encode_kind(const VirtioSlotState& slot, s::VirtioDevice::Builder out) {
  if (slot.spec.index() != slot.device.index())
    throw Error(std::string("a ") + kind_name(slot.spec) + " slot holds a " +
                kind_name(slot.device) + "'s state");
  capnp::DynamicStruct::Builder dyn = capnp::toDynamic(out);
  auto encode = [&](const auto& spec) {
    using Kind = VirtioKinds::KindOf<decltype(spec)>;
    std::string member = schema_name(Kind::kName);
    auto entry =
        dyn.init(kj::StringPtr(member.c_str(), member.size())).template as<capnp::DynamicStruct>();
    write_fields(spec, entry.init("spec").template as<capnp::DynamicStruct>());
    write_fields(std::get<typename Kind::State>(slot.device),
                 entry.init("state").template as<capnp::DynamicStruct>());
  };
  try {
    std::visit(encode, slot.spec);
  } catch (const kj::Exception& e) {
    // Only a kind whose fields() and schema struct disagree gets here: a bug, not bad input.
    throw Error(std::string(kind_name(slot.spec)) +
                ": cannot encode: " + e.getDescription().cStr());
  }
}

void decode_kind(s::VirtioDevice::Reader in, VirtioSlotState& slot) {
  capnp::DynamicStruct::Reader dyn = capnp::toDynamic(in);
  std::string member;
  KJ_IF_MAYBE (field, dyn.which()) {
    member = field->getProto().getName().cStr();
  }
  bool known = VirtioKinds::find([&]<typename Kind>() {
    if (member.empty() || member != schema_name(Kind::kName)) return false;
    auto entry = dyn.get(kj::StringPtr(member.c_str(), member.size())).as<capnp::DynamicStruct>();
    slot.spec = read_fields<typename Kind::Spec>(entry.get("spec").as<capnp::DynamicStruct>());
    slot.device = read_fields<typename Kind::State>(entry.get("state").as<capnp::DynamicStruct>());
    return true;
  });
  // A newer wisp's device, or garbage.
  if (!known) throw Error("unknown virtio device kind" + (member.empty() ? "" : " " + member));
}

// ---- the transport --------------------------------------------------------------------------

void encode_transport(const MmioTransportState& t, s::MmioTransportState::Builder out) {
  write_fields(t, capnp::toDynamic(out));
  auto queues = out.initQueues(static_cast<unsigned>(t.queues.size()));
  for (size_t i = 0; i < t.queues.size(); ++i)
    write_fields(t.queues[i], capnp::toDynamic(queues[i]));
}

MmioTransportState decode_transport(s::MmioTransportState::Reader in) {
  auto t = read_fields<MmioTransportState>(capnp::toDynamic(in));
  check_count(in.getQueues().size(), MmioTransport::kMaxQueues, "queues");
  for (auto q : in.getQueues()) t.queues.push_back(read_fields<QueueState>(capnp::toDynamic(q)));
  return t;
}

}  // namespace

// ---- serial ---------------------------------------------------------------------------------

void encode_serial(const SerialState& st, s::SerialState::Builder out) {
  write_fields(st, capnp::toDynamic(out));
  out.setRx(capnp::Data::Reader(st.rx.data(), st.rx.size()));
}

SerialState decode_serial(s::SerialState::Reader in) {
  auto st = read_fields<SerialState>(capnp::toDynamic(in));
  auto rx = in.getRx();
  st.rx.assign(rx.begin(), rx.end());
  return st;
}

Bytes encode_serial(const SerialState& state) {
  return write_message<s::SerialState>([&](auto out) { encode_serial(state, out); });
}

SerialState decode_serial(std::span<const uint8_t> data, const std::string& what) {
  return read_message<s::SerialState>(
      data, kMaxDeviceMessageBytes,
      what + ": malformed serial state: ", [](auto in) { return decode_serial(in); });
}

// ---- virtio-mmio slot -----------------------------------------------------------------------

void encode_virtio(const VirtioSlotState& slot, s::VirtioDevice::Builder out) {
  encode_transport(slot.transport, out.initTransport());
  encode_kind(slot, out);
}

VirtioSlotState decode_virtio(s::VirtioDevice::Reader in) {
  VirtioSlotState slot;
  slot.transport = decode_transport(in.getTransport());
  decode_kind(in, slot);
  return slot;
}

Bytes encode_virtio(const VirtioSlotState& slot) {
  return write_message<s::VirtioDevice>([&](auto out) { encode_virtio(slot, out); });
}

VirtioSlotState decode_virtio(std::span<const uint8_t> data, const std::string& what) {
  return read_message<s::VirtioDevice>(
      data, kMaxDeviceMessageBytes,
      what + ": malformed virtio-mmio state: ", [](auto in) { return decode_virtio(in); });
}

}  // namespace wisp::snapshot
