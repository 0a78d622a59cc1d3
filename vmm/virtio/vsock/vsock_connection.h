// One virtio-vsock stream connection between a guest socket and a host byte stream (a Unix
// socket in the VMM, a fake in tests): the state machine of spec 5.10.6 and the credit-based
// flow control in both directions. It does no polling and owns no queues: the muxer feeds it
// guest packets and stream readiness, asks it for the next packet to put in a guest RX buffer,
// and mirrors its epoll_events() into epoll.
//
// Flow control.
//  guest -> host: we advertise buf_alloc() bytes (kBufAlloc, or less when the muxer's buffer
//    budget is spent) and count what reached the stream in fwd_cnt. Bytes the stream could not
//    take at once wait in a ring of at most buf_alloc() bytes; a guest
//    that sends past its credit is cut off with RST, so the ring can never overflow. A slow
//    stream therefore stops the guest by withholding credit, never by growing memory.
//  host -> guest: we read from the stream only as much as the guest's credit
//    (buf_alloc - (bytes sent - fwd_cnt)) allows, straight into its RX buffers; at zero credit we
//    stop reading and ask once with CREDIT_REQUEST.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "vmm/virtio/vsock/vsock_packet.h"

namespace wisp {

// The host end of a connection. Results are bytes moved (read: 0 = end of stream) or -errno;
// -EAGAIN means "would block". Partial transfers are normal.
class VsockStream {
 public:
  virtual ~VsockStream() = default;
  virtual ssize_t read(std::span<const std::span<uint8_t>> bufs) = 0;
  virtual ssize_t write(std::span<const std::span<const uint8_t>> bufs) = 0;
  virtual void shutdown_write() = 0;
  virtual int fd() const = 0;  // for epoll; -1 when there is none
};

// A fixed-capacity byte FIFO, allocated on first use (most connections never need it).
class ByteRing {
 public:
  explicit ByteRing(size_t capacity) : capacity_(capacity) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  // Appends as much of `in` as fits; returns how much that was.
  size_t push(std::span<const uint8_t> in);
  // The queued bytes as at most two contiguous pieces, oldest first.
  std::array<std::span<const uint8_t>, 2> peek() const;
  void pop(size_t n);
  void clear();  // also frees the storage

 private:
  size_t capacity_;
  std::vector<uint8_t> data_;
  size_t head_ = 0;
  size_t size_ = 0;
};

class VsockConnection {
 public:
  // Our receive buffer per connection (what Linux uses by default too), and the smallest one
  // the muxer hands out once its budget for full-size ones is spent (vsock_muxer.h).
  static constexpr uint32_t kBufAlloc = 256 * 1024;
  static constexpr uint32_t kMinBufAlloc = 16 * 1024;
  // fwd_cnt progress the guest has not been told about that triggers a CREDIT_UPDATE (a
  // quarter of a smaller buffer): below buf_alloc(), so a guest waiting for credit gets it.
  static constexpr uint32_t kCreditUpdateThreshold = 64 * 1024;
  // How long the guest has to answer our REQUEST, and to answer our full SHUTDOWN (or we to
  // flush to a stalled stream after its full SHUTDOWN) before we give up with RST.
  static constexpr uint64_t kRequestTimeoutMs = 2000;
  static constexpr uint64_t kCloseTimeoutMs = 2000;

  enum class State : uint8_t {
    kConnecting,   // host-initiated: REQUEST to send or sent, RESPONSE awaited
    kEstablished,  // data flows (subject to the shutdown flags)
    kClosed,       // stream closed; an RST may still be owed to the guest
  };

  // A host process asked (CONNECT) for guest port `guest_port`; we will send REQUEST.
  // `buf_alloc` (kMinBufAlloc to kBufAlloc) is what we advertise and at most buffer.
  static std::unique_ptr<VsockConnection> host_initiated(uint32_t host_port, uint32_t guest_port,
                                                         std::unique_ptr<VsockStream> stream,
                                                         uint32_t buf_alloc = kBufAlloc);
  // The guest's REQUEST reached a host listener through `stream`; we will send RESPONSE.
  static std::unique_ptr<VsockConnection> guest_initiated(const VsockHeader& request,
                                                          std::unique_ptr<VsockStream> stream,
                                                          uint32_t buf_alloc = kBufAlloc);

  uint32_t host_port() const { return host_port_; }
  uint32_t guest_port() const { return guest_port_; }
  uint32_t buf_alloc() const { return buf_alloc_; }
  State state() const { return state_; }

  // A valid packet from the guest for this connection (payload: hdr.len bytes of guest RAM).
  // Returns false when it broke the protocol (the connection is then reset).
  bool on_guest_packet(const VsockHeader& hdr, std::span<const std::span<const uint8_t>> payload,
                       uint64_t now_ms);
  // The stream's epoll events (EPOLLIN/OUT/HUP/ERR).
  void on_stream_events(uint32_t events, uint64_t now_ms);
  // Fires the deadline if it has passed.
  void on_timer(uint64_t now_ms);
  // Drops the connection at once: closes the stream, owes the guest an RST.
  void kill();

  // Whether next_rx() may produce a packet.
  bool has_rx() const;
  // The next host-to-guest packet: fills `hdr` (ports, op, flags, credit; not the CIDs) and,
  // for RW, reads its payload from the stream into `data`. false when there was nothing to send
  // after all (e.g. the stream had no data).
  bool next_rx(VsockHeader* hdr, std::span<const std::span<uint8_t>> data, uint64_t now_ms);

  // What to watch the stream for: EPOLLIN/EPOLLOUT bits, possibly 0 (HUP/ERR are implied).
  uint32_t epoll_events() const;
  // The stream's fd, or -1 once closed or hung up (stop watching it then).
  int watched_fd() const;
  // Done: the muxer may forget it.
  bool finished() const { return state_ == State::kClosed && !rst_owed_; }
  uint64_t deadline_ms() const { return deadline_ms_; }

  // For tests and metrics.
  uint32_t guest_credit() const;  // bytes we may still send the guest
  uint32_t fwd_cnt() const { return fwd_cnt_; }
  size_t buffered() const { return tx_buf_.size(); }
  uint32_t guest_shutdown() const { return guest_shut_; }

 private:
  VsockConnection(uint32_t host_port, uint32_t guest_port, State state,
                  std::unique_ptr<VsockStream> stream, uint32_t buf_alloc);
  bool credit_update_due() const;
  bool on_guest_data(std::span<const std::span<const uint8_t>> payload, uint32_t len);
  void on_guest_shutdown(uint32_t flags, uint64_t now_ms);
  void flush();
  void after_flush();
  void close_stream();
  void host_hung_up();
  bool reading() const;
  void fill_common(VsockHeader* hdr, uint16_t op);
  // Reads stream data into `data`; true when it produced an RW packet.
  bool read_data(VsockHeader* hdr, std::span<const std::span<uint8_t>> data);

  const uint32_t host_port_;
  const uint32_t guest_port_;
  const uint32_t buf_alloc_;
  State state_;
  std::unique_ptr<VsockStream> stream_;

  // Control packets owed to the guest.
  bool request_owed_ = false;
  bool request_sent_ = false;
  bool response_owed_ = false;
  bool rst_owed_ = false;
  bool credit_update_owed_ = false;
  bool credit_requested_ = false;  // CREDIT_REQUEST sent, no credit since
  uint32_t shutdown_owed_ = 0;     // SHUTDOWN flags to tell the guest (cumulative)
  uint32_t shutdown_sent_ = 0;

  // The host side.
  bool data_ready_ = false;  // the stream was readable and has not been drained since
  bool host_eof_ = false;    // the stream reached end of file: the host sends no more
  bool host_hup_ = false;    // the stream is gone both ways
  bool write_shut_ = false;  // we shut the stream's write side after the guest's SHUTDOWN SEND

  // The guest side.
  uint32_t guest_shut_ = 0;  // SHUTDOWN flags the guest sent
  uint32_t guest_buf_alloc_ = 0;
  uint32_t guest_fwd_cnt_ = 0;
  uint32_t sent_to_guest_ = 0;  // payload bytes sent (wraps, like fwd_cnt)

  // guest -> host accounting.
  uint32_t fwd_cnt_ = 0;       // bytes written to the stream (wraps)
  uint32_t fwd_cnt_told_ = 0;  // fwd_cnt in the last header we sent
  ByteRing tx_buf_;            // capacity buf_alloc_

  uint64_t deadline_ms_ = 0;  // 0: none
};

}  // namespace wisp
