#include "tests/integration/wisp_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace wisp::testing {
namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string build_root() {
  const char* r = std::getenv("WISP_BUILD_ROOT");
  return r ? r : "build";
}

}  // namespace

std::string describe(const ProcessResult& r) {
  return "exit=" + std::to_string(r.exit_code) + (r.timed_out ? " (TIMED OUT)" : "") +
         "\n--- stdout ---\n" + r.out.substr(r.out.size() > 4000 ? r.out.size() - 4000 : 0) +
         "\n--- stderr ---\n" + r.err;
}

std::string wisp_binary() { return build_root() + "/bin/wisp"; }
std::string guest_file(const std::string& name) { return build_root() + "/guest/" + name; }

ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<Step>& steps,
                          double timeout_s, const std::vector<std::string>& env) {
  ProcessResult r;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return r;
  double start = now_s();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  size_t step = 0;
  int stdin_fd = in[1];
  auto advance = [&] {
    // Small inputs only: each is written whole; stdin closes after the last step.
    while (step < steps.size() && r.out.find(steps[step].expect) != std::string::npos) {
      [[maybe_unused]] ssize_t n =
          write(stdin_fd, steps[step].send.data(), steps[step].send.size());
      ++step;
    }
    if (step == steps.size() && stdin_fd >= 0) {
      close(stdin_fd);
      stdin_fd = -1;
    }
  };
  advance();
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    double left = timeout_s - (now_s() - start);
    if (left <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left * 1000) + 1);
    if (n < 0) continue;
    for (auto& p : fds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      ssize_t k = read(p.fd, buf, sizeof(buf));
      if (k <= 0) {
        close(p.fd);
        p.fd = -1;
        --open_fds;
      } else {
        (p.fd == out[0] ? r.out : r.err).append(buf, static_cast<size_t>(k));
        if (p.fd == out[0]) advance();
      }
    }
  }
  for (auto& p : fds)
    if (p.fd >= 0) close(p.fd);
  if (stdin_fd >= 0) close(stdin_fd);
  int status = 0;
  waitpid(pid, &status, 0);
  r.seconds = now_s() - start;
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

ProcessResult run_wisp(const std::vector<std::string>& args, double timeout_s,
                       const std::vector<Step>& steps, const std::vector<std::string>& env) {
  std::vector<std::string> argv = {wisp_binary(), "run"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, steps, timeout_s, env);
}

}  // namespace wisp::testing
