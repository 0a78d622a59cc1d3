// Where a unit test plays the VMM's vsock bridge (for manager/service/vm_links and
// api/agent_client): a Unix socket listening in a fresh temporary directory, both removed when
// it goes.
#pragma once

#include <kj/async-io.h>
#include <stdlib.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace wisp::service {

class VsockBridgeSocket {
 public:
  explicit VsockBridgeSocket(kj::AsyncIoContext& io) {
    char dir[] = "/tmp/wisp-vsock-bridge-XXXXXX";
    if (mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
    path_ = dir_ + "/vsock.sock";
    auto addr = io.provider->getNetwork().parseAddress(kj::str("unix:", path_.c_str()));
    listener_ = addr.wait(io.waitScope)->listen();
  }
  ~VsockBridgeSocket() {
    listener_ = nullptr;
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  VsockBridgeSocket(const VsockBridgeSocket&) = delete;
  VsockBridgeSocket& operator=(const VsockBridgeSocket&) = delete;

  const std::string& path() const { return path_; }
  kj::ConnectionReceiver& listener() { return *listener_; }

 private:
  std::string dir_, path_;
  kj::Own<kj::ConnectionReceiver> listener_;
};

}  // namespace wisp::service
