#include "api/thread_io.h"

namespace wisp::client {

std::shared_ptr<ThreadIo> thread_io() {
  thread_local std::weak_ptr<ThreadIo> current;
  std::shared_ptr<ThreadIo> io = current.lock();
  if (!io) {
    io = std::make_shared<ThreadIo>();
    current = io;
  }
  return io;
}

}  // namespace wisp::client
