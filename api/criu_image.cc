#include "api/criu_image.h"

#include <cstring>
#include <set>

#include "base/error.h"

namespace wisp::api {
namespace {

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

bool criu_image_name_ok(std::string_view name) {
  if (name.empty() || name.size() > kCriuImageMaxName || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string criu_record_header(std::string_view name, uint64_t size) {
  std::string out;
  put_le(out, name.size(), 4);
  out.append(name);
  put_le(out, size, 8);
  return out;
}

std::string criu_image_end() {
  std::string out;
  put_le(out, 0, 4);
  return out;
}

std::vector<CriuImageEntry> parse_criu_image(std::span<const uint8_t> bytes,
                                             const std::string& what) {
  auto fail = [&what](const std::string& why, uint64_t at) {
    throw Error(what + ": not a valid CRIU image archive: " + why + " at offset " +
                std::to_string(at));
  };
  if (bytes.size() < kCriuImageMagic.size() ||
      memcmp(bytes.data(), kCriuImageMagic.data(), kCriuImageMagic.size()) != 0)
    fail("no WISPCRI1 magic", 0);
  std::vector<CriuImageEntry> entries;
  std::set<std::string, std::less<>> names;
  uint64_t pos = kCriuImageMagic.size();
  const uint64_t total = bytes.size();
  for (;;) {
    if (total - pos < 4) fail("truncated before the end marker", pos);
    uint64_t name_len = get_le(bytes.data() + pos, 4);
    if (name_len == 0) {
      pos += 4;
      break;
    }
    if (name_len > kCriuImageMaxName) fail("file name longer than 128 bytes", pos);
    if (entries.size() >= kCriuImageMaxFiles) fail("more than 16384 files", pos);
    if (total - pos - 4 < name_len + 8) fail("truncated record header", pos);
    std::string name(reinterpret_cast<const char*>(bytes.data() + pos + 4), name_len);
    if (!criu_image_name_ok(name)) fail("bad file name", pos);
    if (!names.insert(name).second) fail("file '" + name + "' twice", pos);
    uint64_t size = get_le(bytes.data() + pos + 4 + name_len, 8);
    uint64_t data = pos + 4 + name_len + 8;
    if (size > total - data) fail("file '" + name + "' runs past the end", pos);
    entries.push_back({std::move(name), data, size});
    pos = data + size;
  }
  if (pos != total) fail("bytes after the end marker", pos);
  return entries;
}

}  // namespace wisp::api
