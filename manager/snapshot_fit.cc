#include "manager/snapshot_fit.h"

#include <sys/stat.h>

#include "base/error.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/snapshot_state.h"
#include "snapshot/state_file.h"

namespace wisp::manager {
namespace {

// "" when the memory file `path` is a regular file (its stat in `st`), else why not. Throws
// Error when it cannot be stat'ed for another reason than its absence.
std::string memory_file_problem(const std::string& path, struct stat& st) {
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return path + ": missing";
    throw_errno("stat " + path);
  }
  if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
  return "";
}

}  // namespace

std::string snapshot_unfit_reason(const std::string& dir) {
  const std::string state_path = dir + "/" + snapshot::kStateFileName;
  const std::string memory_path = dir + "/" + snapshot::kMemoryFileName;
  try {
    // Decoding validates it as untrusted input (size cap first, frame, version, checksum).
    snapshot::SnapshotState state = snapshot::read_state_file(state_path);
    struct stat st;
    if (std::string why = memory_file_problem(memory_path, st); !why.empty()) return why;
    // A diff layer's file holds only its pages, but is laid out over the whole guest too.
    snapshot::check_memory_file_size(state.memory, static_cast<uint64_t>(st.st_size), memory_path);
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return state_path + ": " + e.what();
  }
  return "";
}

std::string snapshot_plainly_unfit_reason(const std::string& dir) {
  const std::string state_path = dir + "/" + snapshot::kStateFileName;
  try {
    snapshot::read_state_header(state_path);
    struct stat st;
    return memory_file_problem(dir + "/" + snapshot::kMemoryFileName, st);
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return state_path + ": " + e.what();
  }
}

bool is_cpu_mismatch(const std::string& message) {
  // load_machine_snapshot's refusal (snapshot/machine_snapshot.cc), as the VMM logs it.
  return message.find("snapshot is from another CPU") != std::string::npos;
}

}  // namespace wisp::manager
