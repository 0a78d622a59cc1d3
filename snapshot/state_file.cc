#include "snapshot/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "base/file_io.h"
#include "base/hex.h"
#include "base/unique_fd.h"
#include "snapshot/crc64.h"
#include "snapshot/file_fields.h"
#include "snapshot/state_codec.h"

namespace wisp::snapshot {
namespace {

constexpr uint64_t kMaxFileBytes = kStateHeaderBytes + kMaxPayloadBytes + kStateTrailerBytes;

// O_NONBLOCK: a FIFO put in the state file's place must not hold the caller (serve's loop) in
// open; regular_file_size refuses it.
UniqueFd open_state_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) throw_errno("open state file " + path);
  return fd;
}

// The size of the state file open as `fd`; refused unless it is a regular file.
uint64_t regular_file_size(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("stat state file " + path);
  if (!S_ISREG(st.st_mode)) reject_file(path, "state file is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

Bytes encode_state_file(const SnapshotState& state) {
  Bytes payload = encode_state_payload(state);
  Bytes out(kStateHeaderBytes + payload.size() + kStateTrailerBytes);
  std::memcpy(out.data(), kStateMagic, sizeof kStateMagic);
  store_le(&out[8], kFormatMajor, 2);
  store_le(&out[10], kFormatMinor, 2);
  store_le(&out[16], payload.size(), 8);
  std::memcpy(&out[kStateHeaderBytes], payload.data(), payload.size());
  size_t body = kStateHeaderBytes + payload.size();
  store_le(&out[body], crc64(std::span(out.data(), body)), 8);
  return out;
}

StateFileInfo check_state_header(std::span<const uint8_t> bytes, const std::string& file) {
  if (bytes.size() < kStateHeaderBytes) {
    reject_file(file, "truncated state file: " + std::to_string(bytes.size()) +
                          " bytes, shorter than the " + std::to_string(kStateHeaderBytes) +
                          "-byte header");
  }
  if (std::memcmp(bytes.data(), kStateMagic, sizeof kStateMagic) != 0) {
    reject_file(file, "not a wisp snapshot state file (bad magic)");
  }
  StateFileInfo header;
  header.major = static_cast<uint16_t>(load_le(&bytes[8], 2));
  header.minor = static_cast<uint16_t>(load_le(&bytes[10], 2));
  header.payload_bytes = load_le(&bytes[16], 8);
  header.file_bytes = bytes.size();
  if (header.major != kFormatMajor) {
    std::string version = std::to_string(header.major) + "." + std::to_string(header.minor);
    std::string reads = "this wisp reads " + std::to_string(kFormatMajor) + ".x";
    if (header.major < kFormatMajor)
      reject_file(file, "snapshot format version " + version + " was written by an older wisp (" +
                            reads + "): re-create the snapshot with this wisp");
    reject_file(file, "unsupported snapshot format version " + version + " (" + reads +
                          "; written by a newer wisp?)");
  }
  return header;
}

SnapshotState decode_state_file(std::span<const uint8_t> bytes, const std::string& file,
                                StateFileInfo* info) {
  StateFileInfo header = check_state_header(bytes, file);
  if (header.payload_bytes > kMaxPayloadBytes) {
    reject_file(file, "state payload length " + std::to_string(header.payload_bytes) +
                          " exceeds the limit of " + std::to_string(kMaxPayloadBytes) + " bytes");
  }
  uint64_t expected = kStateHeaderBytes + header.payload_bytes + kStateTrailerBytes;
  if (bytes.size() < expected) {
    reject_file(file, "truncated state file: " + std::to_string(bytes.size()) +
                          " bytes, header says " + std::to_string(expected));
  }
  if (bytes.size() > expected) {
    reject_file(file, "trailing data: " + std::to_string(bytes.size()) + " bytes, header says " +
                          std::to_string(expected));
  }
  size_t body = kStateHeaderBytes + header.payload_bytes;
  uint64_t stored = load_le(&bytes[body], 8);
  uint64_t actual = crc64(bytes.first(body));
  if (stored != actual) {
    reject_file(file, "checksum mismatch (stored " + hex(stored) + ", computed " + hex(actual) +
                          "): the file is corrupt");
  }
  SnapshotState state =
      decode_state_payload(bytes.subspan(kStateHeaderBytes, header.payload_bytes), file);
  validate_state(state, file);
  if (info) *info = header;
  return state;
}

void write_state_file(int fd, const std::string& path, const SnapshotState& state) {
  Bytes bytes = encode_state_file(state);
  if (int err = pwrite_exact(fd, 0, bytes)) {
    errno = err;
    throw_errno("write state file " + path);
  }
  if (::fsync(fd) != 0) throw_errno("fsync state file " + path);
}

StateFileInfo read_state_header(const std::string& path) {
  UniqueFd fd = open_state_file(path);
  uint64_t size = regular_file_size(fd.get(), path);
  // A shorter file is read whole: check_state_header says it is truncated.
  uint8_t bytes[kStateHeaderBytes];
  std::span<uint8_t> header(bytes, static_cast<size_t>(std::min<uint64_t>(size, sizeof bytes)));
  if (int err = pread_exact(fd.get(), 0, header)) {
    errno = err;
    throw_errno("read state file " + path);
  }
  StateFileInfo info = check_state_header(header, path);
  info.file_bytes = size;
  return info;
}

SnapshotState read_state_file(const std::string& path, StateFileInfo* info) {
  UniqueFd fd = open_state_file(path);
  return read_state_fd(fd.get(), path, info);
}

SnapshotState read_state_fd(int fd, const std::string& path, StateFileInfo* info) {
  uint64_t size = regular_file_size(fd, path);
  // The cap comes before the allocation: a huge file is refused without reading it.
  if (size > kMaxFileBytes) {
    reject_file(path, "state file is " + std::to_string(size) + " bytes, over the limit of " +
                          std::to_string(kMaxFileBytes));
  }
  Bytes bytes(static_cast<size_t>(size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read state file " + path);
    if (n == 0) break;  // shrank under us: decode reports it as truncated
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return decode_state_file(bytes, path, info);
}

}  // namespace wisp::snapshot
