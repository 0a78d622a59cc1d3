// `containerd-shim-wisp-v2 ... delete`: containerd runs it when a shim is gone (it died, or
// containerd found its task dead after a restart) and unmarshals stdout as a DeleteResponse.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <string>

#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/bundle_dir.h"
#include "shim/shim_commands.h"
#include "shim/socket_address.h"

namespace wisp::shim {

namespace {

void remove_socket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  if (::unlink(path.c_str()) != 0) LOG_WARN("delete: unlink %s: %s", path.c_str(), strerror(errno));
}

}  // namespace

int run_delete(const ShimOptions& o) {
  if (o.id.empty()) throw Error("-id is required");
  if (o.ns.empty()) throw Error("-namespace is required");
  std::string bundle = bundle_dir(o);
  // The socket the shim served: the one its start recorded, and the one derived from the
  // flags (they agree unless the socket root changed in between).
  std::string recorded = bundle + "/address";
  if (::access(recorded.c_str(), F_OK) == 0) remove_socket(socket_path(read_file(recorded)));
  remove_socket(socket_path(socket_address(socket_root(), o.address, o.ns, o.id)));

  // No task process ran (Create is not implemented yet): report it ended by SIGKILL, as
  // runc's shim reports a task its delete had to clean up.
  containerd::task::v2::DeleteResponse response;
  response.set_pid(0);
  response.set_exit_status(128 + 9);
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  response.mutable_exited_at()->set_seconds(now.tv_sec);
  response.mutable_exited_at()->set_nanos(static_cast<int32_t>(now.tv_nsec));
  std::string bytes;
  response.SerializeToString(&bytes);
  if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size()) throw_errno("stdout");
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace wisp::shim
