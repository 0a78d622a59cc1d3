// `containerd-shim-wisp-v2 ... delete`: containerd runs it when a shim is gone (it died, or
// containerd found its task dead after a restart) and unmarshals stdout as a DeleteResponse.
#include <kj/async-io.h>
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
#include "shim/serve_link.h"
#include "shim/shim_commands.h"
#include "shim/socket_address.h"

namespace wisp::shim {

namespace {

void remove_socket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  if (::unlink(path.c_str()) != 0) LOG_WARN("delete: unlink %s: %s", path.c_str(), strerror(errno));
}

// Kills sandbox `id` in serve, waiting at most 30 s. Failures are logged (containerd shows
// them as cleanup warnings), never fatal: delete must still answer.
void kill_sandbox(const std::string& id) {
  auto io = kj::setupAsyncIo();
  ServeLink serve(*io.provider, serve_socket_from_env());
  auto killed = kj::evalNow([&] { return serve.connect(); })
                    .then([id](api::serve::Wisp::Client wisp) {
                      auto get = wisp.sandboxesRequest().send().getSandboxes().getRequest();
                      get.setId(id);
                      return get.send().getSandbox().killRequest().send().ignoreResult();
                    })
                    .then([] { return std::string(); },
                          [](kj::Exception&& e) { return std::string(e.getDescription().cStr()); });
  auto timeout = io.provider->getTimer().afterDelay(30 * kj::SECONDS).then([] {
    return std::string("no answer from wisp serve in 30 s");
  });
  std::string error = killed.exclusiveJoin(kj::mv(timeout)).wait(io.waitScope);
  if (error.find("not-found:") != std::string::npos) return;  // gone with its shim already
  if (!error.empty()) LOG_WARN("delete: kill sandbox %s: %s", id.c_str(), error.c_str());
}

}  // namespace

int run_delete(const ShimOptions& o) {
  if (o.id.empty()) throw Error("-id is required");
  if (o.ns.empty()) throw Error("-namespace is required");
  std::string bundle = bundle_dir(o);
  std::string sandbox_file = bundle + "/" + kSandboxIdFile;
  if (::access(sandbox_file.c_str(), F_OK) == 0) {
    std::string id = read_file(sandbox_file);
    if (id.empty() || id.size() > 128 || id.find_first_of("\n/") != std::string::npos) {
      LOG_WARN("delete: %s does not hold a sandbox id", sandbox_file.c_str());
    } else {
      kill_sandbox(id);
    }
  }
  // The socket the shim served: the one its start recorded, and the one derived from the
  // flags (they agree unless the socket root changed in between).
  std::string recorded = bundle + "/address";
  if (::access(recorded.c_str(), F_OK) == 0) remove_socket(socket_path(read_file(recorded)));
  remove_socket(socket_path(socket_address(socket_root(), o.address, o.ns, o.id)));

  // The task's process died with its shim (or with the sandbox just killed): report it ended
  // by SIGKILL, as runc's shim reports a task its delete had to clean up.
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
