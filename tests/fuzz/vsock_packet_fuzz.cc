// libFuzzer target for virtio-vsock's guest-facing logic, in two halves chosen by the first
// input byte:
//  - even: a TX ring in fuzzer-made guest RAM, drained through the packet parser, then through
//    the whole device (parser + muxer + RX filling) with its Unix back-end on a temp path: every
//    refused packet must be reported, none may crash or read outside guest RAM.
//  - odd: one connection's state machine driven by a sequence of guest packets (any op, flags,
//    length and credit), host-stream behaviours, RX requests and timer ticks, checking its
//    invariants: never more data than the guest's credit, never more buffered than we
//    advertised, and no packet produced when has_rx() said there was none.
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/log.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/vsock/vsock.h"
#include "vmm/virtio/vsock/vsock_connection.h"
#include "vmm/virtio/vsock/vsock_packet.h"

namespace {

using namespace wisp;  // NOLINT: a fuzz target

constexpr uint64_t kMemBytes = 16384;
constexpr uint64_t kCid = 3;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// ---- Half 1: the TX parser and the device -------------------------------------------------

struct NullSignals : VirtioSignals {
  void signal_used_queue(uint16_t) override {}
  void signal_config_change() override {}
  void set_needs_reset() override {}
  void requeue(uint16_t) override {}
};

void fuzz_ring(const uint8_t* data, size_t size) {
  static GuestMemory mem = GuestMemory::create(kMemBytes);
  static std::unique_ptr<VirtioVsock> dev = [] {
    std::string path = "/tmp/wisp-vsock-fuzz-" + std::to_string(getpid()) + ".sock";
    return std::make_unique<VirtioVsock>(VsockSpec{path, kCid});
  }();
  auto ram = mem.slice(GuestAddress(0), kMemBytes);
  std::memset(ram.data(), 0, ram.size());
  std::memcpy(ram.data(), data, std::min<size_t>(size, kMemBytes));
  // Three queues of 16 at fixed places; what they hold is the fuzzer's.
  std::vector<QueueState> states(3);
  for (uint16_t i = 0; i < 3; ++i) {
    states[i].size = 16;
    states[i].ready = true;
    states[i].desc_table = 0x1000ull * i;
    states[i].avail_ring = 0x1000ull * i + 0x100;
    states[i].used_ring = 0x1000ull * i + 0x200;
    states[i].event_idx = size > 0 && (data[0] & 2);
  }
  // The parser alone on the TX ring.
  {
    auto q = Queue::restore(states[1], 16, mem);
    check(q.has_value());
    while (auto chain = q->pop(mem)) {
      if (!chain->ok()) continue;
      TxPacket p = parse_tx_packet(mem, *chain, kCid);
      if (p.error == PacketError::kNone && p.hdr.op == vsock::kOpRw) {
        uint64_t total = 0;
        for (auto piece : p.payload) total += piece.size();
        check(total == p.hdr.len && p.hdr.len <= vsock::kMaxPayload);
      }
    }
  }
  // The device: TX packets in, RX replies out.
  NullSignals signals;
  std::vector<Queue> live;
  for (const QueueState& s : states) live.push_back(*Queue::restore(s, 16, mem));
  uint64_t features =
      virtio::kFeatureVersion1 | (states[0].event_idx ? virtio::kFeatureEventIdx : 0);
  check(dev->activate(ActivateArgs{mem, std::move(live), features, signals}));
  dev->queue_notify(VirtioVsock::kTxQueue);
  dev->queue_notify(VirtioVsock::kRxQueue);
  dev->queue_notify(VirtioVsock::kEventQueue);
  if (size > 1 && (data[1] & 1)) dev->send_transport_reset();
  dev->reset();
}

// ---- Half 2: one connection's state machine ----------------------------------------------

struct FuzzStream : VsockStream {
  uint32_t readable = 0;  // bytes the host has queued for the guest
  bool eof = false;
  uint32_t write_room = 0;
  bool broken = false;
  ssize_t read(std::span<const std::span<uint8_t>> bufs) override {
    if (broken) return -ECONNRESET;
    if (readable == 0) return eof ? 0 : -EAGAIN;
    size_t done = 0;
    for (auto b : bufs) {
      size_t n = std::min<size_t>(b.size(), readable - done);
      std::memset(b.data(), 0xab, n);
      done += n;
    }
    readable -= static_cast<uint32_t>(done);
    return static_cast<ssize_t>(done);
  }
  ssize_t write(std::span<const std::span<const uint8_t>> bufs) override {
    if (broken) return -EPIPE;
    size_t total = 0;
    for (auto b : bufs) total += b.size();
    size_t n = std::min<size_t>(total, write_room);
    write_room -= static_cast<uint32_t>(n);
    return n ? static_cast<ssize_t>(n) : -EAGAIN;
  }
  void shutdown_write() override {}
  int fd() const override { return 99; }
};

struct Op {
  uint8_t kind;
  uint8_t arg;
  uint16_t arg2;
  uint32_t value;
};
static_assert(sizeof(Op) == 8);

void fuzz_connection(const uint8_t* data, size_t size) {
  static std::vector<uint8_t> payload(vsock::kMaxPayload, 0x5a);
  static std::vector<uint8_t> rx(vsock::kMaxPayload + 100);
  auto stream = std::make_unique<FuzzStream>();
  FuzzStream* s = stream.get();
  std::unique_ptr<VsockConnection> c;
  if (size > 0 && (data[0] & 2)) {
    c = VsockConnection::host_initiated(1u << 30, 52, std::move(stream));
  } else {
    VsockHeader req;
    req.op = vsock::kOpRequest;
    req.buf_alloc = size > 1 ? data[1] * 1024u : 0;
    c = VsockConnection::guest_initiated(req, std::move(stream));
  }
  uint64_t now = 1;
  bool stream_alive = true;  // `s` is destroyed once the connection closes its stream
  for (size_t off = 2; off + sizeof(Op) <= size; off += sizeof(Op)) {
    Op op;
    std::memcpy(&op, data + off, sizeof(op));
    stream_alive = stream_alive && c->watched_fd() != -1;
    switch (op.kind % 6) {
      case 0: {  // a guest packet
        VsockHeader h;
        h.op = op.arg % 9;
        h.flags = op.arg2 & 7;
        h.len = h.op == vsock::kOpRw ? op.value % (vsock::kMaxPayload + 1) : 0;
        h.buf_alloc = (op.value >> 8) * 64;
        h.fwd_cnt = op.arg2 * 97u;
        std::span<const uint8_t> piece(payload.data(), h.len);
        c->on_guest_packet(h, {&piece, h.len ? 1u : 0u}, now);
        break;
      }
      case 1: {  // stream readiness
        uint32_t ev = (op.arg & 1 ? EPOLLIN : 0) | (op.arg & 2 ? EPOLLOUT : 0) |
                      (op.arg & 4 ? EPOLLHUP : 0) | (op.arg & 8 ? EPOLLERR : 0);
        c->on_stream_events(ev, now);
        break;
      }
      case 2: {  // an RX buffer of some size
        size_t room = op.value % rx.size();
        std::span<uint8_t> piece(rx.data(), room);
        uint32_t credit = c->guest_credit();
        bool expected = c->has_rx();
        VsockHeader h;
        bool got = c->next_rx(&h, {&piece, 1}, now);
        check(expected || !got);
        if (got && h.op == vsock::kOpRw) check(h.len > 0 && h.len <= credit && h.len <= room);
        if (got && h.op != vsock::kOpRw) check(h.len == 0);
        break;
      }
      case 3:
        now += op.value % 5000;
        c->on_timer(now);
        break;
      case 4:  // the host process does something
        if (!stream_alive) break;
        s->readable += op.value % 100000;
        s->eof = op.arg & 1;
        s->write_room = op.arg2 * 16u;
        s->broken = (op.arg & 0xf0) == 0xf0;
        break;
      case 5:
        if (op.arg == 0xff) c->kill();
        break;
    }
    check(c->buffered() <= VsockConnection::kBufAlloc);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    set_log_level(LogLevel::kError);  // guest errors are expected here by the million
    return true;
  }();
  (void)quiet;
  if (size < 1) return 0;
  if (data[0] & 1)
    fuzz_connection(data, size);
  else
    fuzz_ring(data, size);
  return 0;
}
