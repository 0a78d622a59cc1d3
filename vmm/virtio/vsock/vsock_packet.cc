#include "vmm/virtio/vsock/vsock_packet.h"

#include <bit>
#include <cstring>

namespace wisp {
namespace {

static_assert(std::endian::native == std::endian::little,
              "virtio-vsock headers are little-endian; a big-endian host would need byte swaps");

// Field offsets of the packed struct virtio_vsock_hdr.
constexpr size_t kSrcCid = 0, kDstCid = 8, kSrcPort = 16, kDstPort = 20, kLen = 24, kType = 28,
                 kOp = 30, kFlags = 32, kBufAlloc = 36, kFwdCnt = 40;

template <typename T>
T load(std::span<const uint8_t, vsock::kHeaderBytes> raw, size_t off) {
  T v;
  std::memcpy(&v, raw.data() + off, sizeof(T));
  return v;
}

template <typename T>
void store(std::span<uint8_t, vsock::kHeaderBytes> raw, size_t off, T v) {
  std::memcpy(raw.data() + off, &v, sizeof(T));
}

}  // namespace

VsockHeader decode_vsock_header(std::span<const uint8_t, vsock::kHeaderBytes> raw) {
  VsockHeader h;
  h.src_cid = load<uint64_t>(raw, kSrcCid);
  h.dst_cid = load<uint64_t>(raw, kDstCid);
  h.src_port = load<uint32_t>(raw, kSrcPort);
  h.dst_port = load<uint32_t>(raw, kDstPort);
  h.len = load<uint32_t>(raw, kLen);
  h.type = load<uint16_t>(raw, kType);
  h.op = load<uint16_t>(raw, kOp);
  h.flags = load<uint32_t>(raw, kFlags);
  h.buf_alloc = load<uint32_t>(raw, kBufAlloc);
  h.fwd_cnt = load<uint32_t>(raw, kFwdCnt);
  return h;
}

void encode_vsock_header(const VsockHeader& h, std::span<uint8_t, vsock::kHeaderBytes> raw) {
  store(raw, kSrcCid, h.src_cid);
  store(raw, kDstCid, h.dst_cid);
  store(raw, kSrcPort, h.src_port);
  store(raw, kDstPort, h.dst_port);
  store(raw, kLen, h.len);
  store(raw, kType, h.type);
  store(raw, kOp, h.op);
  store(raw, kFlags, h.flags);
  store(raw, kBufAlloc, h.buf_alloc);
  store(raw, kFwdCnt, h.fwd_cnt);
}

const char* packet_error_name(PacketError e) {
  switch (e) {
    case PacketError::kNone:
      return "ok";
    case PacketError::kShortHeader:
      return "shorter than the 44-byte header";
    case PacketError::kBadSrcCid:
      return "source CID is not the guest's";
    case PacketError::kBadDstCid:
      return "destination CID is not the host";
    case PacketError::kBadType:
      return "socket type is not STREAM";
    case PacketError::kBadOp:
      return "unknown op code";
    case PacketError::kLenTooLarge:
      return "payload larger than 64 KiB";
    case PacketError::kLenPastChain:
      return "payload length past the end of the buffers";
  }
  return "?";
}

PacketError validate_tx_header(const VsockHeader& h, uint64_t guest_cid, uint64_t payload_bytes) {
  if (h.src_cid != guest_cid) return PacketError::kBadSrcCid;
  if (h.dst_cid != vsock::kHostCid) return PacketError::kBadDstCid;
  if (h.type != vsock::kTypeStream) return PacketError::kBadType;
  if (h.op == vsock::kOpInvalid || h.op > vsock::kOpCreditRequest) return PacketError::kBadOp;
  // Only RW carries data; a length on a control packet is ignored rather than trusted.
  if (h.op == vsock::kOpRw) {
    if (h.len > vsock::kMaxPayload) return PacketError::kLenTooLarge;
    if (h.len > payload_bytes) return PacketError::kLenPastChain;
  }
  return PacketError::kNone;
}

TxPacket parse_tx_packet(const GuestMemory& mem, const DescriptorChain& chain, uint64_t guest_cid) {
  TxPacket p;
  uint8_t raw[vsock::kHeaderBytes];
  if (chain.read(mem, 0, raw) != sizeof(raw)) {
    p.error = PacketError::kShortHeader;
    return p;
  }
  p.hdr = decode_vsock_header(raw);
  p.error = validate_tx_header(p.hdr, guest_cid, chain.readable_bytes() - vsock::kHeaderBytes);
  if (p.error != PacketError::kNone) return p;
  if (p.hdr.op != vsock::kOpRw) {
    p.hdr.len = 0;
  } else if (p.hdr.len > 0) {
    p.payload = chain.readable_views(mem, vsock::kHeaderBytes, p.hdr.len);
    // The chain's buffers were checked when it was popped; an empty result would mean guest
    // RAM changed under us, which it cannot. Treat it as a bad length all the same.
    if (p.payload.empty()) p.error = PacketError::kLenPastChain;
  }
  return p;
}

VsockHeader make_rx_header(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port,
                           uint16_t op) {
  VsockHeader h;
  h.src_cid = vsock::kHostCid;
  h.dst_cid = guest_cid;
  h.src_port = host_port;
  h.dst_port = guest_port;
  h.type = vsock::kTypeStream;
  h.op = op;
  return h;
}

}  // namespace wisp
