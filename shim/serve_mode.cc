// The serving mode: what `start` leaves running, with its listening ttrpc socket on kListenFd.
// One KJ event loop serves every connection containerd makes (it reconnects after a restart).
#include <google/protobuf/stubs/logging.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "base/error.h"
#include "base/log.h"
#include "shim/bundle_dir.h"
#include "shim/event_publisher.h"
#include "shim/serve_link.h"
#include "shim/shim_commands.h"
#include "shim/socket_address.h"
#include "shim/stage_clock.h"
#include "shim/task_service.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim {

namespace {

void require_listening_socket(int fd) {
  int listening = 0;
  socklen_t size = sizeof(listening);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) {
    throw Error("no action given, and fd " + std::to_string(fd) +
                " is not a listening socket: the serving mode is started by `start` "
                "(usage: containerd-shim-wisp-v2 -namespace NS -address ADDR -id ID "
                "start|delete)");
  }
}

}  // namespace

int run_serve(const ShimOptions& o) {
  require_listening_socket(kListenFd);
  std::string path = socket_path(socket_address(socket_root(), o.address, o.ns, o.id));
  kj::UnixEventPort::captureSignal(SIGTERM);
  ::signal(SIGPIPE, SIG_IGN);  // a peer gone mid-write is an error result, not a death
  // A malformed message is answered with a status; protobuf's own line about it (invalid UTF-8
  // in a string field) would let a peer fill containerd's log.
  google::protobuf::SetLogHandler(nullptr);
  auto io = kj::setupAsyncIo();
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      kListenFd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);

  auto shutdown = kj::newPromiseAndFulfiller<void>();
  ServeLink serve(*io.provider, serve_socket_from_env());
  EventPublisher events(*io.provider, events_socket(o.address), o.ns);
  const char* default_template = std::getenv("WISP_SHIM_TEMPLATE");
  TaskService tasks(
      ShimIdentity{o.id, o.ns, bundle_dir(o), default_template ? default_template : ""},
      [&serve] { return serve.connect(); }, *io.lowLevelProvider,
      [&events](const std::string& topic, const google::protobuf::Message& event) {
        events.publish(topic, event);
      },
      [&fulfiller = *shutdown.fulfiller] { fulfiller.fulfill(); });
  ttrpc::Router router;
  tasks.register_methods(router);
  LOG_INFO("shim %s (namespace %s): serving ttrpc on %s", o.id.c_str(), o.ns.c_str(), path.c_str());
  log_start_stage(o.id);
  log_stage(o.id, "serving");

  auto serving = ttrpc::serve_listener(router, *listener);
  // After Shutdown, the events published so far (TaskDelete) go out, and a moment passes for
  // its answer to be written before the process ends.
  auto stop = shutdown.promise.then([&] { return events.flush(); }).then([&] {
    return io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS);
  });
  auto signalled = io.unixEventPort.onSignal(SIGTERM).ignoreResult();
  serving.exclusiveJoin(kj::mv(stop)).exclusiveJoin(kj::mv(signalled)).wait(io.waitScope);

  ::unlink(path.c_str());
  LOG_INFO("shim %s: exiting", o.id.c_str());
  return 0;
}

}  // namespace wisp::shim
