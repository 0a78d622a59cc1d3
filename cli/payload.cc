#include "cli/payload.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.h"
#include "base/file_io.h"

namespace wisp::cli {
namespace {

// Everything `fd` yields until end of file, giving up when `cancel_fd` becomes readable.
std::string read_until_eof(int fd, int cancel_fd) {
  if (cancel_fd < 0) return read_all_fd(fd);
  std::string data;
  char buf[65536];
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("reading the payload from stdin");
    }
    if (p[1].revents) throw Error("interrupted");
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return data;  // end of file, or a read error that ends it
    data.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

void add_payload_options(OptionParser& parser, PayloadSource* source) {
  parser.text("payload", &source->file).flag("no-stdin", &source->no_stdin, 'n');
}

void check_payload_options(const PayloadSource& source) {
  if (source.no_stdin && source.file == "-")
    throw UsageError("--no-stdin and --payload - contradict each other");
}

std::string read_payload(const PayloadSource& source, int stdin_fd, int cancel_fd) {
  if (source.file == "-") return read_until_eof(stdin_fd, cancel_fd);
  if (!source.file.empty()) return read_file(source.file);
  if (source.no_stdin || ::isatty(stdin_fd)) return "";
  return read_until_eof(stdin_fd, cancel_fd);
}

}  // namespace wisp::cli
