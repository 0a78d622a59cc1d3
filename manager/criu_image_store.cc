#include "manager/criu_image_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <span>

#include "api/criu_image.h"
#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "snapshot/crc64.h"

namespace wisp::manager {
namespace {

constexpr char kSumHeader[] = "wisp-criu-image 1\n";

std::string hex16(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string sum_text(uint64_t bytes, uint64_t crc) {
  return std::string(kSumHeader) + "bytes " + std::to_string(bytes) + "\ncrc64 " + hex16(crc) +
         "\n";
}

// The .sum file: exactly the three lines sum_text writes.
void parse_sum(const std::string& text, const std::string& file, uint64_t* bytes, uint64_t* crc) {
  auto bad = [&file](const std::string& why) { throw Error(file + ": " + why); };
  if (text.size() > 256 || !text.starts_with(kSumHeader)) bad("not a wisp-criu-image 1 file");
  std::string rest = text.substr(sizeof(kSumHeader) - 1);
  size_t nl1 = rest.find('\n');
  if (nl1 == std::string::npos || !rest.starts_with("bytes ")) bad("no bytes line");
  std::string b = rest.substr(6, nl1 - 6);
  std::string tail = rest.substr(nl1 + 1);
  if (!tail.starts_with("crc64 ") || !tail.ends_with("\n") || tail.size() != 6 + 16 + 1)
    bad("no crc64 line");
  std::string c = tail.substr(6, 16);
  if (b.empty() || b.size() > 19 || b.find_first_not_of("0123456789") != std::string::npos)
    bad("bytes: not a number");
  if (c.find_first_not_of("0123456789abcdef") != std::string::npos) bad("crc64: not hex");
  *bytes = std::stoull(b);
  *crc = std::stoull(c, nullptr, 16);
}

}  // namespace

bool has_criu_image(const std::string& dir) {
  struct stat st;
  return lstat((dir + "/" + kCriuImageSumFile).c_str(), &st) == 0;
}

StoredCriuImage store_criu_image(client::AgentClient& agent, const std::string& name,
                                 const std::string& dir, uint64_t max_bytes) {
  std::string path = dir + "/" + kCriuImageFile;
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw_errno("create " + path);
  StoredCriuImage out;
  auto t0 = std::chrono::steady_clock::now();
  try {
    client::AgentClient::CriuDump dump =
        agent.checkpoint_worker(name, max_bytes, [&](const std::string& chunk) {
          out.bytes += chunk.size();
          if (out.bytes > max_bytes) throw Error(path + ": the CRIU image exceeds the size cap");
          out.crc64 =
              snapshot::crc64(std::span<const uint8_t>(
                                  reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()),
                              out.crc64);
          if (!write_all(fd.get(), chunk)) throw_errno("write " + path);
        });
    if (dump.image_bytes != out.bytes)
      throw Error(path + ": the agent sent " + std::to_string(out.bytes) + " bytes of " +
                  std::to_string(dump.image_bytes));
    if (fsync(fd.get()) != 0) throw_errno("fsync " + path);
    out.files = dump.files;
    out.dump_ms = static_cast<double>(dump.dump_ns) / 1e6;
  } catch (...) {
    unlink(path.c_str());
    throw;
  }
  out.total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  write_file_atomic(dir + "/" + kCriuImageSumFile, sum_text(out.bytes, out.crc64), 0600);
  return out;
}

StoredCriuImage read_criu_image_sum(const std::string& dir) {
  std::string sum_path = dir + "/" + kCriuImageSumFile;
  StoredCriuImage want;
  parse_sum(read_file(sum_path), sum_path, &want.bytes, &want.crc64);
  if (want.bytes > kMaxStoredCriuImageBytes) throw Error(sum_path + ": image over the size cap");
  if (want.bytes == 0) throw Error(sum_path + ": empty image");
  return want;
}

StoredCriuImage verify_criu_image(const std::string& dir) {
  return read_verified_criu_image(dir, nullptr);
}

StoredCriuImage read_verified_criu_image(
    const std::string& dir,
    const std::function<void(std::span<const uint8_t>, const std::vector<api::CriuImageEntry>&)>&
        use) {
  std::string path = dir + "/" + kCriuImageFile;
  StoredCriuImage want = read_criu_image_sum(dir);
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw_errno("open " + path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) throw_errno("stat " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) != want.bytes)
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes, its .sum says " +
                std::to_string(want.bytes) + " (damaged or truncated)");
  if (want.bytes == 0) throw Error(path + ": empty");
  void* map = mmap(nullptr, want.bytes, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED) throw_errno("mmap " + path);
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(map), want.bytes);
  try {
    if (snapshot::crc64(bytes) != want.crc64)
      throw Error(path + ": checksum mismatch (CRC-64 " + hex16(snapshot::crc64(bytes)) +
                  ", its .sum says " + hex16(want.crc64) + "): the image is damaged");
    std::vector<api::CriuImageEntry> entries = api::parse_criu_image(bytes, path);
    want.files = static_cast<uint32_t>(entries.size());
    if (use) use(bytes, entries);
  } catch (...) {
    munmap(map, want.bytes);
    throw;
  }
  munmap(map, want.bytes);
  return want;
}

}  // namespace wisp::manager
