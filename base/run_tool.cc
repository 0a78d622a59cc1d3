#include "base/run_tool.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"

namespace wisp {

std::string run_tool(const std::vector<std::string>& argv, const std::string& what,
                     const std::string& package) {
  if (argv.empty()) throw Error(what + ": no command");
  // Built before the fork: the child only makes system calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string missing = argv[0] + " not found: install " + package + "\n";
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe for " + argv[0]);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork for " + argv[0]);
  if (pid == 0) {
    ::dup2(write_end.get(), STDOUT_FILENO);
    ::dup2(write_end.get(), STDERR_FILENO);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execvp(args[0], args.data());
    (void)!::write(STDERR_FILENO, missing.data(), missing.size());
    ::_exit(127);
  }
  write_end.reset();
  std::string output = read_all_fd(read_end.get());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (output.size() > 2000) output = output.substr(output.size() - 2000);
    throw Error(what + " failed (status " + std::to_string(status) + "): " + output);
  }
  return output;
}

}  // namespace wisp
