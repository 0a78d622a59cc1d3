// snapshot/device_codec: device States survive encode/decode unchanged, every virtio kind through
// the kind table; truncated, oversized and garbage bytes and unknown kinds are refused with a
// wisp::Error naming what was being read.
#include "snapshot/device_codec.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <variant>
#include <vector>

#include "base/error.h"

namespace wisp::snapshot {
namespace {

SerialState sample_serial() {
  SerialState s;
  s.ier = 0x03;
  s.lcr = 0x03;
  s.mcr = 0x0b;
  s.scr = 0x5a;
  s.dll = 0x01;
  s.dlm = 0x02;
  s.fifo_enabled = true;
  s.thr_empty_pending = true;
  s.rx = {'l', 's', '\r'};
  return s;
}

VirtioSlotState sample_slot(DeviceSpec spec, VirtioDeviceState device) {
  VirtioSlotState s;
  s.spec = spec;
  s.transport.status = 0x0f;
  s.transport.device_features_sel = 1;
  s.transport.driver_features_sel = 1;
  s.transport.driver_features = (1ull << 32) | (1ull << 29);
  s.transport.queue_sel = 2;
  s.transport.interrupt_status = 1;
  s.transport.config_generation = 5;
  s.transport.needs_reset = true;
  s.transport.device_activated = true;
  for (uint16_t i = 0; i < 3; ++i) {
    QueueState q;
    q.size = 256;
    q.ready = i != 1;
    q.desc_table = 0x10000 * (i + 1);
    q.avail_ring = q.desc_table + 0x1000;
    q.used_ring = q.desc_table + 0x2000;
    q.next_avail = static_cast<uint16_t>(65530 + i);
    q.next_used = static_cast<uint16_t>(65529 + i);
    q.event_idx = true;
    s.transport.queues.push_back(q);
  }
  s.device = device;
  return s;
}

// The message of the Error `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceCodec, SerialRoundTrip) {
  SerialState s = sample_serial();
  EXPECT_EQ(decode_serial(encode_serial(s), "serial"), s);
  EXPECT_EQ(decode_serial(encode_serial(SerialState{}), "serial"), SerialState{});
  s.rx.assign(Serial::kMaxPendingInput, 0x42);
  EXPECT_EQ(decode_serial(encode_serial(s), "serial"), s);
}

// One slot of each kind in the table, spec and state both non-default where they have fields.
std::vector<VirtioSlotState> one_slot_per_kind() {
  // The rate limits too: a template's clones get them from the snapshot.
  return {
      sample_slot(
          BlockSpec{"/images/a b.img", true, 1ull << 33, -5, 9, {{1000, 50, 100}, {10, 2, 200}}},
          BlockState{1 << 20, true, 128}),
      sample_slot(RngSpec{}, RngState{}), sample_slot(VsockSpec{"", 42}, VsockState{42}),
      sample_slot(
          NetSpec{"tap-x", 0x0a'0b'0c'0d'0e'0f, {{1, 2, 3}, {4, 5, 6}}, {{7, 8, 9}, {10, 11, 12}}},
          NetState{0x0a'0b'0c'0d'0e'0f})};
}

TEST(DeviceCodec, VirtioRoundTripEveryDeviceKind) {
  std::vector<VirtioSlotState> slots = one_slot_per_kind();
  ASSERT_EQ(slots.size(), std::variant_size_v<DeviceSpec>);  // a new kind needs a case here
  for (const VirtioSlotState& s : slots)
    EXPECT_EQ(decode_virtio(encode_virtio(s), "slot"), s) << kind_name(s.spec);
  VirtioSlotState empty{RngSpec{}, MmioTransportState{}, RngState{}};
  EXPECT_EQ(decode_virtio(encode_virtio(empty), "slot"), empty);
}

TEST(DeviceCodec, AStateOfAnotherKindThanItsSpecIsNotEncoded) {
  VirtioSlotState s = sample_slot(BlockSpec{"/d.img"}, VsockState{3});
  EXPECT_NE(error_of([&] { encode_virtio(s); }).find("a virtio-blk slot holds a virtio-vsock's"),
            std::string::npos);
}

TEST(DeviceCodec, AnUnknownKindIsRefused) {
  Bytes b = encode_virtio(sample_slot(RngSpec{}, RngState{}));
  // The root struct's data section (after the segment table and the root pointer) holds the
  // union's discriminant: make it one this wisp does not know, as a newer one might write.
  b[16] = 0x3f;
  b[17] = 0;
  EXPECT_NE(error_of([&] {
              decode_virtio(b, "dev/mmio0");
            }).find("dev/mmio0: malformed virtio-mmio state: unknown virtio device kind"),
            std::string::npos);
}

TEST(DeviceCodec, TruncatedBytesAreRefused) {
  Bytes serial = encode_serial(sample_serial());
  Bytes virtio = encode_virtio(sample_slot(VsockSpec{"", 3}, VsockState{3}));
  for (size_t n = 0; n < serial.size(); ++n) {
    std::string why = error_of([&] { decode_serial({serial.data(), n}, "dev/serial0"); });
    EXPECT_EQ(why.rfind("dev/serial0: malformed serial state", 0), 0u) << n << ": " << why;
  }
  for (size_t n = 0; n < virtio.size(); ++n) {
    std::string why = error_of([&] { decode_virtio({virtio.data(), n}, "dev/mmio0"); });
    EXPECT_EQ(why.rfind("dev/mmio0: malformed virtio-mmio state", 0), 0u) << n << ": " << why;
  }
}

TEST(DeviceCodec, TrailingBytesAreRefused) {
  Bytes b = encode_serial(sample_serial());
  b.resize(b.size() + 8);
  EXPECT_NE(error_of([&] { decode_serial(b, "s"); }).find("trailing"), std::string::npos);
}

TEST(DeviceCodec, OversizedListsAreRefused) {
  VirtioSlotState s = sample_slot(RngSpec{}, RngState{});
  s.transport.queues.resize(MmioTransport::kMaxQueues + 1);
  EXPECT_NE(error_of([&] { decode_virtio(encode_virtio(s), "slot"); }).find("65 queues"),
            std::string::npos);
  s.transport.queues.resize(MmioTransport::kMaxQueues);
  EXPECT_EQ(error_of([&] { decode_virtio(encode_virtio(s), "slot"); }), "");

  // Bytes are bounded by the message; their limit is the State's to check.
  SerialState big = sample_serial();
  big.rx.assign(Serial::kMaxPendingInput + 1, 'x');
  EXPECT_EQ(decode_serial(encode_serial(big), "serial"), big);
  EXPECT_NE(error_of([&] { big.validate(); }).find("pending input"), std::string::npos);
}

TEST(DeviceCodec, GarbageNeverCrashes) {
  std::mt19937 rng(1234);
  Bytes good = encode_virtio(sample_slot(BlockSpec{"/d.img"}, BlockState{8, false, 128}));
  for (int round = 0; round < 2000; ++round) {
    Bytes b = good;
    // Flip a few bytes of a valid message (deeper than pure noise), or use pure noise.
    if (round % 4 == 0) {
      b.resize(8 * (rng() % 40));
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else {
      for (int i = 0; i < 1 + round % 5; ++i) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    }
    try {
      decode_virtio(b, "slot");
    } catch (const Error&) {
    }
    try {
      decode_serial(b, "serial");
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace wisp::snapshot
