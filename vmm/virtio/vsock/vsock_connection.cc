#include "vmm/virtio/vsock/vsock_connection.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace wisp {

using namespace vsock;  // NOLINT: op codes and flags

// ---- ByteRing -------------------------------------------------------------------------------

size_t ByteRing::push(std::span<const uint8_t> in) {
  size_t n = std::min(in.size(), capacity_ - size_);
  if (n == 0) return 0;
  if (data_.empty()) data_.resize(capacity_);
  size_t tail = (head_ + size_) % capacity_;
  size_t first = std::min(n, capacity_ - tail);
  std::memcpy(data_.data() + tail, in.data(), first);
  std::memcpy(data_.data(), in.data() + first, n - first);
  size_ += n;
  return n;
}

std::array<std::span<const uint8_t>, 2> ByteRing::peek() const {
  if (size_ == 0) return {};
  size_t first = std::min(size_, capacity_ - head_);
  return {std::span<const uint8_t>(data_.data() + head_, first),
          std::span<const uint8_t>(data_.data(), size_ - first)};
}

void ByteRing::pop(size_t n) {
  n = std::min(n, size_);
  head_ = size_ == n ? 0 : (head_ + n) % capacity_;
  size_ -= n;
}

void ByteRing::clear() {
  std::vector<uint8_t>().swap(data_);
  head_ = size_ = 0;
}

// ---- VsockConnection: construction and guest input --------------------------------------------

VsockConnection::VsockConnection(uint32_t host_port, uint32_t guest_port, State state,
                                 std::unique_ptr<VsockStream> stream, uint32_t buf_alloc)
    : host_port_(host_port),
      guest_port_(guest_port),
      buf_alloc_(std::clamp(buf_alloc, kMinBufAlloc, kBufAlloc)),
      state_(state),
      stream_(std::move(stream)),
      tx_buf_(buf_alloc_) {}

std::unique_ptr<VsockConnection> VsockConnection::host_initiated(
    uint32_t host_port, uint32_t guest_port, std::unique_ptr<VsockStream> stream,
    uint32_t buf_alloc) {
  std::unique_ptr<VsockConnection> c(
      new VsockConnection(host_port, guest_port, State::kConnecting, std::move(stream), buf_alloc));
  c->request_owed_ = true;
  return c;
}

std::unique_ptr<VsockConnection> VsockConnection::guest_initiated(
    const VsockHeader& request, std::unique_ptr<VsockStream> stream, uint32_t buf_alloc) {
  std::unique_ptr<VsockConnection> c(new VsockConnection(
      request.dst_port, request.src_port, State::kEstablished, std::move(stream), buf_alloc));
  c->response_owed_ = true;
  c->guest_buf_alloc_ = request.buf_alloc;
  c->guest_fwd_cnt_ = request.fwd_cnt;
  return c;
}

uint32_t VsockConnection::guest_credit() const {
  // Wrapping u32 arithmetic, as in the spec. A guest whose fwd_cnt runs ahead of what we sent
  // or whose buffer shrank below what is in flight gets nothing, not 4 GiB.
  uint32_t in_flight = sent_to_guest_ - guest_fwd_cnt_;
  return in_flight > guest_buf_alloc_ ? 0 : guest_buf_alloc_ - in_flight;
}

bool VsockConnection::on_guest_packet(const VsockHeader& hdr,
                                      std::span<const std::span<const uint8_t>> payload,
                                      uint64_t now_ms) {
  if (state_ == State::kClosed) return true;  // late packets after we gave up: ignore
  // Every packet carries the sender's credit.
  guest_buf_alloc_ = hdr.buf_alloc;
  guest_fwd_cnt_ = hdr.fwd_cnt;
  if (guest_credit() > 0) credit_requested_ = false;

  switch (hdr.op) {
    case kOpRst:
      close_stream();
      state_ = State::kClosed;
      rst_owed_ = false;
      return true;
    case kOpResponse:
      if (state_ != State::kConnecting || !request_sent_) break;
      state_ = State::kEstablished;
      deadline_ms_ = 0;
      {
        // The bridge's handshake: the host process learns the connection is up, and our port.
        char line[32];
        int n = snprintf(line, sizeof(line), "OK %u\n", host_port_);
        std::span<const uint8_t> piece(reinterpret_cast<const uint8_t*>(line), n);
        // A fresh socket always has room for a few bytes; failing means the host went away.
        if (stream_->write({&piece, 1}) != n) kill();
      }
      return true;
    case kOpRw:
    case kOpCreditUpdate:
    case kOpCreditRequest:
    case kOpShutdown:
      if (state_ != State::kEstablished) break;
      if (hdr.op == kOpRw) return on_guest_data(payload, hdr.len);
      if (hdr.op == kOpCreditRequest) credit_update_owed_ = true;
      if (hdr.op == kOpShutdown) on_guest_shutdown(hdr.flags, now_ms);
      return true;
    default:  // REQUEST on a live connection, or an op that does not fit the state
      break;
  }
  kill();
  return false;
}

bool VsockConnection::on_guest_data(std::span<const std::span<const uint8_t>> payload,
                                    uint32_t len) {
  if (guest_shut_ & kShutdownSend) {  // data after "I will send no more"
    kill();
    return false;
  }
  if (len == 0) return true;
  if (!stream_ || host_hup_) {
    // The host is gone and has been (or is being) told to the guest; what was in flight is
    // dropped, but still counted as consumed so the guest's credit stays consistent.
    fwd_cnt_ += len;
    return true;
  }
  if (tx_buf_.size() + len > buf_alloc_) {  // past the credit we granted
    kill();
    return false;
  }
  size_t written = 0;
  if (tx_buf_.empty()) {
    ssize_t n = stream_->write(payload);
    if (n < 0 && n != -EAGAIN) {  // the host closed its end while the guest was sending
      kill();
      return true;
    }
    written = n > 0 ? static_cast<size_t>(n) : 0;
  }
  fwd_cnt_ += static_cast<uint32_t>(written);
  // What the stream did not take waits in the ring (fits: checked above).
  size_t skip = written;
  for (std::span<const uint8_t> piece : payload) {
    if (skip >= piece.size()) {
      skip -= piece.size();
      continue;
    }
    tx_buf_.push(piece.subspan(skip));
    skip = 0;
  }
  return true;
}

void VsockConnection::on_guest_shutdown(uint32_t flags, uint64_t now_ms) {
  guest_shut_ |= flags & kShutdownBoth;
  if (guest_shut_ == kShutdownBoth && !tx_buf_.empty()) {
    // The guest closed; we still owe the host what it sent. Give the stream a while.
    deadline_ms_ = now_ms + kCloseTimeoutMs;
  }
  if (tx_buf_.empty()) after_flush();
}

// ---- The host stream ------------------------------------------------------------------------

void VsockConnection::on_stream_events(uint32_t events, uint64_t) {
  if (!stream_ || state_ == State::kClosed) return;
  if (events & EPOLLIN) data_ready_ = true;
  if ((events & EPOLLOUT) && !tx_buf_.empty()) flush();
  if (events & (EPOLLHUP | EPOLLERR)) host_hung_up();
}

void VsockConnection::host_hung_up() {
  if (host_hup_) return;
  host_hup_ = true;
  // Whatever is still in the socket gets read (until EOF) and delivered; what the guest sent
  // that the host never took is lost with it.
  tx_buf_.clear();
  if (!host_eof_) data_ready_ = true;
  if (state_ == State::kEstablished) {
    shutdown_owed_ |= kShutdownRcv;
    if (host_eof_) shutdown_owed_ |= kShutdownSend;
  }
}

void VsockConnection::flush() {
  auto pieces = tx_buf_.peek();
  size_t count = pieces[1].empty() ? 1 : 2;
  ssize_t n = stream_->write({pieces.data(), count});
  if (n == -EAGAIN) return;
  if (n < 0) {
    kill();
    return;
  }
  tx_buf_.pop(static_cast<size_t>(n));
  fwd_cnt_ += static_cast<uint32_t>(n);
  if (tx_buf_.empty()) after_flush();
}

void VsockConnection::after_flush() {
  if ((guest_shut_ & kShutdownSend) && !write_shut_ && stream_) {
    stream_->shutdown_write();
    write_shut_ = true;
  }
  if (guest_shut_ == kShutdownBoth) {
    // The guest closed and everything it sent reached the host: end with RST, which is what
    // the guest waits for (Linux lingers in CLOSING until then).
    close_stream();
    state_ = State::kClosed;
    rst_owed_ = true;
    deadline_ms_ = 0;
  }
}

void VsockConnection::close_stream() {
  stream_.reset();
  tx_buf_.clear();
}

void VsockConnection::kill() {
  close_stream();
  state_ = State::kClosed;
  rst_owed_ = true;
  deadline_ms_ = 0;
}

void VsockConnection::on_timer(uint64_t now_ms) {
  if (deadline_ms_ != 0 && now_ms >= deadline_ms_) kill();
}

bool VsockConnection::reading() const {
  return state_ == State::kEstablished && stream_ && !host_eof_ && !(guest_shut_ & kShutdownRcv);
}

uint32_t VsockConnection::epoll_events() const {
  uint32_t ev = 0;
  if (reading() && !data_ready_) ev |= EPOLLIN;
  if (stream_ && !tx_buf_.empty()) ev |= EPOLLOUT;
  return ev;
}

int VsockConnection::watched_fd() const {
  // After a hang-up the fd would report EPOLLHUP forever; what is left is read without epoll.
  return stream_ && !host_hup_ ? stream_->fd() : -1;
}

// ---- Host to guest ----------------------------------------------------------------------------

bool VsockConnection::has_rx() const {
  if (rst_owed_) return true;
  if (state_ == State::kClosed) return false;
  if (state_ == State::kConnecting) return request_owed_;
  if (response_owed_) return true;
  if (reading() && data_ready_ && (guest_credit() > 0 || !credit_requested_)) return true;
  if (shutdown_owed_ & ~shutdown_sent_) return true;
  return credit_update_due();
}

bool VsockConnection::credit_update_due() const {
  return credit_update_owed_ ||
         fwd_cnt_ - fwd_cnt_told_ >= std::min(kCreditUpdateThreshold, buf_alloc_ / 4);
}

void VsockConnection::fill_common(VsockHeader* hdr, uint16_t op) {
  hdr->src_port = host_port_;
  hdr->dst_port = guest_port_;
  hdr->type = kTypeStream;
  hdr->op = op;
  hdr->flags = 0;
  hdr->len = 0;
  // Every packet tells the guest our credit, so no separate update is owed after it.
  hdr->buf_alloc = buf_alloc_;
  hdr->fwd_cnt = fwd_cnt_;
  fwd_cnt_told_ = fwd_cnt_;
  credit_update_owed_ = false;
}

bool VsockConnection::next_rx(VsockHeader* hdr, std::span<const std::span<uint8_t>> data,
                              uint64_t now_ms) {
  if (rst_owed_) {
    fill_common(hdr, kOpRst);
    rst_owed_ = false;
    return true;
  }
  if (state_ == State::kClosed) return false;
  if (state_ == State::kConnecting) {
    if (!request_owed_) return false;
    fill_common(hdr, kOpRequest);
    request_owed_ = false;
    request_sent_ = true;
    deadline_ms_ = now_ms + kRequestTimeoutMs;
    return true;
  }
  if (response_owed_) {
    fill_common(hdr, kOpResponse);
    response_owed_ = false;
    return true;
  }
  if (reading() && data_ready_) {
    if (read_data(hdr, data)) return true;
    if (data_ready_ && guest_credit() == 0 && !credit_requested_) {
      fill_common(hdr, kOpCreditRequest);
      credit_requested_ = true;
      return true;
    }
  }
  if (shutdown_owed_ & ~shutdown_sent_) {
    fill_common(hdr, kOpShutdown);
    hdr->flags = shutdown_owed_;
    shutdown_sent_ = shutdown_owed_;
    // Once we said "nothing more either way", the guest should answer with RST.
    if (shutdown_sent_ == kShutdownBoth) deadline_ms_ = now_ms + kCloseTimeoutMs;
    return true;
  }
  if (credit_update_due()) {
    fill_common(hdr, kOpCreditUpdate);
    return true;
  }
  return false;
}

bool VsockConnection::read_data(VsockHeader* hdr, std::span<const std::span<uint8_t>> data) {
  uint64_t want = std::min<uint64_t>(guest_credit(), kMaxPayload);
  if (want == 0) return false;
  // Trim the buffers to the credit.
  std::span<uint8_t> trimmed[64];
  size_t count = 0;
  uint64_t total = 0;
  for (std::span<uint8_t> piece : data) {
    if (total == want || count == std::size(trimmed)) break;
    size_t n = static_cast<size_t>(std::min<uint64_t>(piece.size(), want - total));
    if (n == 0) continue;
    trimmed[count++] = piece.first(n);
    total += n;
  }
  if (total == 0) return false;
  ssize_t n = stream_->read({trimmed, count});
  if ((n == -EAGAIN || n == -EINTR) && !host_hup_) {
    data_ready_ = false;
    return false;
  }
  if (n <= 0) {
    // End of stream (or a broken one): the host sends no more. Tell the guest once the
    // packets before this point are out, which they are: this is the next one.
    host_eof_ = true;
    data_ready_ = false;
    shutdown_owed_ |= kShutdownSend;
    if (n < 0 || host_hup_) shutdown_owed_ |= kShutdownRcv;
    if (n < 0) host_hup_ = true;
    return false;
  }
  // A short read means the socket is drained for now; epoll tells us when there is more.
  // After a hang-up epoll no longer watches it: read on until end of file.
  if (static_cast<uint64_t>(n) < total && !host_hup_) data_ready_ = false;
  fill_common(hdr, kOpRw);
  hdr->len = static_cast<uint32_t>(n);
  sent_to_guest_ += static_cast<uint32_t>(n);
  return true;
}

}  // namespace wisp
