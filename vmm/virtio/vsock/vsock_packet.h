// The virtio-vsock wire format (virtio 1.2 section 5.10): the 44-byte packet header, its op
// codes and flags, and the validation of a packet the guest put on the TX queue. Pure: no
// sockets, no connection state. Everything here treats the header as hostile input; a packet
// that fails validation is reported with a reason, never trusted further.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"

namespace wisp {

namespace vsock {
constexpr uint64_t kHostCid = 2;  // VMADDR_CID_HOST: the only peer a wisp guest can reach
// Guest CIDs 0, 1 and 2 are reserved (hypervisor, local, host); U32_MAX is VMADDR_CID_ANY.
constexpr uint64_t kMinGuestCid = 3;
constexpr uint64_t kMaxGuestCid = 0xffff'fffeull;
constexpr uint32_t kHeaderBytes = 44;  // sizeof(struct virtio_vsock_hdr), packed
constexpr uint16_t kTypeStream = 1;    // the only type offered (no SEQPACKET feature)

enum Op : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};
// SHUTDOWN flags: the sender will not receive (RCV) / send (SEND) any more.
constexpr uint32_t kShutdownRcv = 1;
constexpr uint32_t kShutdownSend = 2;
constexpr uint32_t kShutdownBoth = kShutdownRcv | kShutdownSend;

// Linux never puts more than VIRTIO_VSOCK_MAX_PKT_BUF_SIZE in one packet; we refuse bigger
// ones from the guest and never send bigger ones to it.
constexpr uint32_t kMaxPayload = 64 * 1024;

// struct virtio_vsock_event id (spec 5.10.6.4): the guest must drop every connection and
// re-read its CID (sent after a snapshot restore).
constexpr uint32_t kEventTransportReset = 0;
constexpr uint32_t kEventBytes = 4;
}  // namespace vsock

// A decoded struct virtio_vsock_hdr, host byte order.
struct VsockHeader {
  uint64_t src_cid = 0;
  uint64_t dst_cid = 0;
  uint32_t src_port = 0;
  uint32_t dst_port = 0;
  uint32_t len = 0;  // payload bytes following the header
  uint16_t type = 0;
  uint16_t op = 0;
  uint32_t flags = 0;
  uint32_t buf_alloc = 0;  // sender's receive buffer size
  uint32_t fwd_cnt = 0;    // bytes the sender has consumed from its receive buffer (wraps)
};

VsockHeader decode_vsock_header(std::span<const uint8_t, vsock::kHeaderBytes> raw);
void encode_vsock_header(const VsockHeader& h, std::span<uint8_t, vsock::kHeaderBytes> raw);

// Why a TX packet was refused, in the order the checks run.
enum class PacketError : uint8_t {
  kNone,
  kShortHeader,   // fewer than 44 device-readable bytes in the chain
  kBadSrcCid,     // not the guest's own CID: a spoofing or confused driver
  kBadDstCid,     // not the host: wisp routes nothing guest-to-guest
  kBadType,       // not STREAM
  kBadOp,         // op code 0 or unknown
  kLenTooLarge,   // len exceeds kMaxPayload
  kLenPastChain,  // len exceeds the readable bytes after the header
};
const char* packet_error_name(PacketError e);

// Whether the guest should hear an RST for a refused packet: only when its addressing was
// sound (our CIDs), so the reply reaches the socket that sent it and cannot be aimed elsewhere.
inline bool packet_error_wants_rst(PacketError e) {
  return e == PacketError::kBadType || e == PacketError::kBadOp || e == PacketError::kLenTooLarge ||
         e == PacketError::kLenPastChain;
}

// Checks a decoded TX header against the guest's CID and the payload bytes the chain holds.
PacketError validate_tx_header(const VsockHeader& h, uint64_t guest_cid, uint64_t payload_bytes);

// A packet taken off the TX queue: its header, and host views of its payload (hdr.len bytes
// after the header) when error == kNone.
struct TxPacket {
  VsockHeader hdr;
  PacketError error = PacketError::kNone;
  std::vector<std::span<const uint8_t>> payload;
};

// Reads and validates the packet in `chain`'s device-readable bytes. Device-writable buffers
// in a TX chain are ignored.
TxPacket parse_tx_packet(const GuestMemory& mem, const DescriptorChain& chain, uint64_t guest_cid);

// A header for a host-to-guest packet with the addressing filled in.
VsockHeader make_rx_header(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port,
                           uint16_t op);

}  // namespace wisp
