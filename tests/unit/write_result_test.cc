// `wisp invoke` writes a handler's result in full: through a small pipe read slowly (short
// writes), with signals interrupting the writes (EINTR), and to a non-blocking descriptor
// (EAGAIN); a reader that went away is an error naming stdout.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "cli/handler_status.h"

namespace wisp::cli {
namespace {

struct Pipe {
  Pipe() {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    read.reset(p[0]);
    write.reset(p[1]);
    ::fcntl(write.get(), F_SETPIPE_SZ, 4096);
  }
  UniqueFd read, write;
};

// Reads `fd` to its end in small, slow reads.
std::string read_slowly(int fd) {
  std::string out;
  char buf[1000];
  for (;;) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

client::InvokeResult big_result() {
  client::InvokeResult r;
  for (int i = 0; r.out.size() < (256 << 10); ++i) r.out += std::to_string(i) + ",";
  r.err = "some stderr";
  return r;
}

TEST(WriteResult, ShortWritesAndInterruptedOnesLoseNothing) {
  // SIGUSR1 without SA_RESTART: each one makes a blocked write() return early or fail EINTR.
  struct sigaction sa {
  }, old{};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  Pipe out, err;
  client::InvokeResult r = big_result();
  std::string got_out, got_err;
  std::thread reader([&] { got_out = read_slowly(out.read.get()); });
  std::thread err_reader([&] { got_err = read_all_fd(err.read.get()); });
  std::atomic<bool> done{false};
  pthread_t writer = pthread_self();
  std::thread interrupter([&] {
    while (!done) {
      pthread_kill(writer, SIGUSR1);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::string failed = write_result(r, out.write.get(), err.write.get());
  done = true;
  interrupter.join();
  out.write.reset();
  err.write.reset();
  reader.join();
  err_reader.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(failed, "");
  EXPECT_EQ(got_out, r.out);
  EXPECT_EQ(got_err, r.err);
}

TEST(WriteResult, ANonBlockingDescriptorIsWaitedOn) {
  Pipe out, err;
  ASSERT_EQ(::fcntl(out.write.get(), F_SETFL, O_NONBLOCK), 0);
  client::InvokeResult r = big_result();
  std::string got;
  std::thread reader([&] { got = read_slowly(out.read.get()); });
  std::string failed = write_result(r, out.write.get(), err.write.get());
  out.write.reset();
  reader.join();
  EXPECT_EQ(failed, "");
  EXPECT_EQ(got, r.out);
}

TEST(WriteResult, AReaderThatWentAwayIsReported) {
  Pipe out, err;
  out.read.reset();
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &old), 0);
  std::string failed = write_result(big_result(), out.write.get(), err.write.get());
  ::sigaction(SIGPIPE, &old, nullptr);
  EXPECT_NE(failed.find("writing the result to stdout"), std::string::npos) << failed;
  EXPECT_NE(failed.find("Broken pipe"), std::string::npos) << failed;
}

}  // namespace
}  // namespace wisp::cli
