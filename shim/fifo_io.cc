#include "shim/fifo_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"

namespace wisp::shim {

namespace {

constexpr size_t kStdinChunk = 64 * 1024;

class FifoSink final : public api::serve::OutputSink::Server {
 public:
  explicit FifoSink(kj::Own<OutputFifos> fifos) : fifos_(kj::mv(fifos)) {}

 protected:
  kj::Promise<void> stdout(StdoutContext context) override {
    return fifos_->write(1, kj::heapArray<kj::byte>(context.getParams().getData()));
  }
  kj::Promise<void> stderr(StderrContext context) override {
    return fifos_->write(2, kj::heapArray<kj::byte>(context.getParams().getData()));
  }

 private:
  kj::Own<OutputFifos> fifos_;
};

}  // namespace

OutputFifos::OutputFifos(kj::LowLevelAsyncIoProvider& io, const std::string& stdout_path,
                         const std::string& stderr_path, std::string who)
    : who_(std::move(who)) {
  open(io, out_, stdout_path);
  open(io, err_, stderr_path);
}

void OutputFifos::open(kj::LowLevelAsyncIoProvider& io, Fifo& fifo, const std::string& path) {
  if (path.empty()) return;
  // O_NONBLOCK: without a reader the open fails (ENXIO) instead of stalling the shim.
  int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    LOG_WARN("%s: %s %s: %s (its output is dropped)", who_.c_str(), fifo.name, path.c_str(),
             strerror(errno));
    return;
  }
  fifo.stream = io.wrapOutputFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                        kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK |
                                        kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
}

kj::Promise<void> OutputFifos::write(int fd, kj::Array<kj::byte> data) {
  Fifo& f = fd == 2 ? err_ : out_;
  if (!f.stream || f.closed || data.size() == 0) return kj::READY_NOW;
  // One write at a time per FIFO, in the order the chunks came.
  auto written = f.tail
                     .then([&f, data = kj::mv(data)]() mutable -> kj::Promise<void> {
                       if (!f.stream) return kj::READY_NOW;
                       auto p = f.stream->write(data.begin(), data.size());
                       return p.attach(kj::mv(data));
                     })
                     .catch_([this, &f](kj::Exception&& e) {
                       // The reader went away (EPIPE): the rest of this stream is dropped.
                       LOG_WARN("%s: writing %s: %s (the rest is dropped)", who_.c_str(), f.name,
                                e.getDescription().cStr());
                       f.stream = nullptr;
                     })
                     .fork();
  f.tail = written.addBranch();
  return written.addBranch();
}

kj::Promise<void> OutputFifos::drain() {
  auto branch = [](Fifo& f) {
    auto forked = f.tail.fork();
    f.tail = forked.addBranch();
    return forked.addBranch();
  };
  return branch(out_).then([b = branch(err_)]() mutable { return kj::mv(b); });
}

void OutputFifos::close() {
  // After the writes in flight: a stream is not destroyed under its own write.
  for (Fifo* f : {&out_, &err_}) {
    f->closed = true;
    f->tail = f->tail.then([f] { f->stream = nullptr; }).eagerlyEvaluate(nullptr);
  }
}

api::serve::OutputSink::Client OutputFifos::sink() { return kj::heap<FifoSink>(kj::addRef(*this)); }

InputFifo::InputFifo(kj::LowLevelAsyncIoProvider& io, const std::string& path)
    : path_(path), opened_(std::make_shared<std::atomic<bool>>(false)) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2 for stdin " + path);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  stream_ = io.wrapInputFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                       kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK |
                                       kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  // The thread owns only the pipe's write end: once the loop's end is gone its write fails
  // (EPIPE; SIGPIPE is ignored in the shim) and it ends.
  std::thread([path, opened = opened_, w = fds[1]]() {
    int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    opened->store(true);
    if (in < 0) {
      LOG_WARN("stdin %s: %s", path.c_str(), strerror(errno));
    } else {
      char buf[kStdinChunk];
      while (true) {
        ssize_t n = ::read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (!write_all(w, std::string(buf, static_cast<size_t>(n)))) break;
      }
      ::close(in);
    }
    ::close(w);
  }).detach();
}

InputFifo::~InputFifo() {
  if (opened_->load()) return;
  // The thread waits in open() for a writer that may never come: be that writer, briefly.
  int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
}

kj::Promise<void> pump_stdin(kj::AsyncInputStream& in, api::serve::Process::Client process) {
  auto buffer = kj::heapArray<kj::byte>(kStdinChunk);
  auto read = in.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&in, process, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return process.closeStdinRequest().send().ignoreResult();
    auto req = process.writeRequest();
    req.setData(buffer.slice(0, n));
    return req.send().ignoreResult().then(
        [&in, process]() mutable { return pump_stdin(in, kj::mv(process)); });
  });
}

}  // namespace wisp::shim
