#include "vmm/machine/control_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace wisp {

namespace {

void write_line(int fd, const std::string& line) {
  std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away; nothing to tell it
    done += static_cast<size_t>(n);
  }
}

}  // namespace

ControlSocket::ControlSocket(std::string path, EventLoop& loop, Handler handler)
    : path_(std::move(path)), loop_(loop), handler_(std::move(handler)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path))
    throw Error("control socket " + path_ + ": path must be 1.." +
                std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  listen_fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_fd_) throw_errno("control socket " + path_);
  // Replace a socket left behind by a VMM that died, but never delete anything else.
  struct stat st;
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw Error("control socket " + path_ + ": a file that is not a socket is in the way");
    ::unlink(path_.c_str());
  }
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw_errno("control socket " + path_ + ": bind");
  if (::listen(listen_fd_.get(), 4) != 0) throw_errno("control socket " + path_ + ": listen");
  loop_.add(listen_fd_.get(), [this](uint32_t) { on_accept(); });
}

ControlSocket::~ControlSocket() {
  for (auto& [fd, pending] : clients_) {
    loop_.remove(fd);
    ::close(fd);
  }
  loop_.remove(listen_fd_.get());
  ::unlink(path_.c_str());
}

void ControlSocket::on_accept() {
  int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  if (clients_.size() >= kMaxClients) {
    write_line(fd, "error too many control clients");
    ::close(fd);
    return;
  }
  clients_[fd] = {};
  loop_.add(fd, [this, fd](uint32_t) { on_client(fd); });
}

void ControlSocket::on_client(int fd) {
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    close_client(fd);
    return;
  }
  std::string& pending = clients_[fd];
  pending.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = pending.find('\n')) != std::string::npos) {
    if (nl > kMaxLineBytes) break;  // refused below, however the bytes arrived
    std::string line = pending.substr(0, nl);
    pending.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string reply;
    try {
      reply = handler_(line);
    } catch (const std::exception& e) {
      reply = std::string("error ") + e.what();
    }
    // One reply is one line: a newline inside a message would desynchronise the client.
    for (char& c : reply)
      if (c == '\n') c = ' ';
    write_line(fd, reply);
  }
  if (pending.size() > kMaxLineBytes) {
    write_line(fd, "error command longer than " + std::to_string(kMaxLineBytes) + " bytes");
    close_client(fd);
  }
}

void ControlSocket::close_client(int fd) {
  loop_.remove(fd);
  clients_.erase(fd);
  ::close(fd);
}

}  // namespace wisp
