#include "shim/checkpoint_record.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <memory>

#include "base/error.h"
#include "base/file_io.h"
#include "base/hex.h"
#include "base/unique_fd.h"

namespace wisp::shim {

namespace {

constexpr const char* kMagicLine = "wisp-checkpoint 1";
constexpr size_t kMaxRecordBytes = 4096;
constexpr size_t kMaxTaskIdBytes = 1024;  // containerd's ids are at most 76

}  // namespace

// serve's rule for a template name (manager/template_store.h check_template_name), repeated:
// the shim does not link manager/. serve checks the name again when it is used.
void check_checkpoint_template_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.';
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  if (!ok)
    throw Error("template name \"" + name.substr(0, 80) +
                "\": expected 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'");
}

std::string format_checkpoint_record(const CheckpointRecord& r) {
  for (const std::string* field : {&r.template_name, &r.task_id}) {
    if (field->find('\n') != std::string::npos)
      throw Error("checkpoint record: a field holds a newline");
  }
  return std::string(kMagicLine) + "\ntemplate " + r.template_name + "\ntask " + r.task_id + "\n";
}

CheckpointRecord parse_checkpoint_record(const std::string& text) {
  const std::string what = std::string("checkpoint record (") + kCheckpointFile + ")";
  if (text.size() > kMaxRecordBytes)
    throw Error(what + ": " + std::to_string(text.size()) + " bytes, over the limit of " +
                std::to_string(kMaxRecordBytes));
  CheckpointRecord r;
  bool has_template = false, has_task = false;
  size_t start = 0;
  for (int line_no = 1; start < text.size(); ++line_no) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos)
      throw Error(what + ": line " + std::to_string(line_no) + " has no newline");
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line_no == 1) {
      if (line != kMagicLine)
        throw Error(what + ": line 1 is not \"" + kMagicLine +
                    "\" (not a wisp checkpoint, or of another version)");
      continue;
    }
    size_t space = line.find(' ');
    std::string key = line.substr(0, space);
    std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "template" && !has_template) {
      try {
        check_checkpoint_template_name(value);
      } catch (const Error& e) {
        throw Error(what + ": template: " + e.what());
      }
      r.template_name = value;
      has_template = true;
    } else if (key == "task" && !has_task) {
      if (value.size() > kMaxTaskIdBytes) throw Error(what + ": task: over 1024 bytes");
      r.task_id = value;
      has_task = true;
    } else {
      throw Error(what + ": line " + std::to_string(line_no) + ": unknown or repeated key \"" +
                  key.substr(0, 64) + "\"");
    }
  }
  if (!has_template) throw Error(what + ": no template line");
  return r;
}

void write_checkpoint_record(const std::string& dir, const CheckpointRecord& record) {
  write_file_atomic(dir + "/" + kCheckpointFile, format_checkpoint_record(record), 0644);
}

CheckpointRecord read_checkpoint_record(const std::string& dir) {
  std::string path = dir + "/" + kCheckpointFile;
  // O_NOFOLLOW: the directory is containerd's unpacking of an image's layer.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    throw_errno(path +
                " (the checkpoint is not a containerd-shim-wisp-v2 one, or was not "
                "unpacked)");
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno(path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxRecordBytes)
    throw Error(path + ": not a regular file of at most " + std::to_string(kMaxRecordBytes) +
                " bytes");
  try {
    return parse_checkpoint_record(read_all_fd(fd.get()));
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

std::string checkpoint_template_name(const std::string& task_id) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw Error("checkpoint name: sha256 (libcrypto) failed");
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  std::string seed = task_id + "\n" + std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec) +
                     "\n" + std::to_string(::getpid());
  EVP_DigestUpdate(ctx.get(), seed.data(), seed.size());
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(ctx.get(), d, &size) != 1)
    throw Error("checkpoint name: sha256 (libcrypto) failed");
  return "ckpt-" + hex_bytes(std::span<const uint8_t>(d, size)).substr(0, 32);
}

}  // namespace wisp::shim
