// containerd's stdio FIFOs on the shim's event loop. containerd (or ctr) holds the read ends of
// the stdout and stderr FIFOs open while a process lives, and opens the write end of the stdin
// FIFO when it likes (containerd/fifo opens lazily). So:
//  - the output FIFOs are opened at Start, non-blocking (no reader: the output is dropped, and
//    the log says so), and written through the loop with back-pressure: OutputSink's calls
//    (api/wisp.capnp) are `-> stream`, so a slow reader slows the guest's writer instead of
//    growing the shim's memory;
//  - the stdin FIFO is opened and read by a thread of its own: a blocking open waits for the
//    writer, where a non-blocking read before the writer came would see end of file. The thread
//    copies it into a pipe that the loop reads.
#pragma once

#include <kj/async-io.h>

#include <atomic>
#include <memory>
#include <string>

#include "api/wisp.capnp.h"

namespace wisp::shim {

// A process's stdout and stderr FIFOs. Refcounted: the OutputSink capability given to serve
// holds a reference, and so does the process, which drains and closes them when it has ended.
class OutputFifos final : public kj::Refcounted {
 public:
  // Opens the FIFOs at once ("" = none: that stream's output is dropped). `who` names the
  // process in the log. Never throws: a FIFO that cannot be opened is logged and dropped.
  OutputFifos(kj::LowLevelAsyncIoProvider& io, const std::string& stdout_path,
              const std::string& stderr_path, std::string who);

  // Queues `data` for stdout (fd 1) or stderr (fd 2); resolves when it is written (or dropped
  // because the reader went away). Never rejects.
  kj::Promise<void> write(int fd, kj::Array<kj::byte> data);
  // Resolves when everything queued so far is written.
  kj::Promise<void> drain();
  // Closes both FIFOs: the readers see end of file. Later writes are dropped.
  void close();

  // An OutputSink (api/wisp.capnp) writing here.
  api::serve::OutputSink::Client sink();

 private:
  struct Fifo {
    const char* name;
    kj::Own<kj::AsyncOutputStream> stream;
    kj::Promise<void> tail = kj::READY_NOW;  // the last queued write
    bool closed = false;
  };
  void open(kj::LowLevelAsyncIoProvider& io, Fifo& fifo, const std::string& path);

  std::string who_;
  Fifo out_{"stdout"};
  Fifo err_{"stderr"};
};

// A process's stdin FIFO, read on a thread (see above). Destroying it lets the thread go: if it
// still waits for a writer, a write end opened and closed here ends its wait.
class InputFifo {
 public:
  InputFifo(kj::LowLevelAsyncIoProvider& io, const std::string& path);
  ~InputFifo();
  InputFifo(const InputFifo&) = delete;
  InputFifo& operator=(const InputFifo&) = delete;

  // The FIFO's bytes as they come; end of file when every writer has closed it.
  kj::AsyncInputStream& stream() { return *stream_; }

 private:
  std::string path_;
  std::shared_ptr<std::atomic<bool>> opened_;
  kj::Own<kj::AsyncInputStream> stream_;
};

// Copies `in` to `process`'s stdin (Process.write) until end of file, then closes its stdin
// (Process.closeStdin). `in` must outlive the promise.
kj::Promise<void> pump_stdin(kj::AsyncInputStream& in, api::serve::Process::Client process);

}  // namespace wisp::shim
