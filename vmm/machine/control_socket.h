// The VMM's control socket: a Unix stream socket on which a local client (`wisp snapshot
// create`, `wisp template create`) sends one command per line and gets one reply line back.
// Line-based on purpose: a few commands, one client at a time, easy to drive from a shell or a
// test. The socket only frames lines; what a command means is up to the handler.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "base/unique_fd.h"
#include "vmm/event/event_loop.h"

namespace wisp {

class ControlSocket {
 public:
  // Longest command line accepted; a longer one gets an error reply and the connection closes.
  static constexpr size_t kMaxLineBytes = 4096;
  // At most this many clients at once; more are refused (closed at once).
  static constexpr size_t kMaxClients = 8;

  using Handler = std::function<std::string(const std::string& line)>;

  // Binds and listens on `path` (an existing socket file there is replaced) and registers with
  // `loop`; the handler runs on the loop thread. Throws Error naming the path.
  ControlSocket(std::string path, EventLoop& loop, Handler handler);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

 private:
  void on_accept();
  void on_client(int fd);
  void close_client(int fd);

  std::string path_;
  EventLoop& loop_;
  Handler handler_;
  UniqueFd listen_fd_;
  std::map<int, std::string> clients_;  // fd -> bytes read so far without a newline
};

}  // namespace wisp
