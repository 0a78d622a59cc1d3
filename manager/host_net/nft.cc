#include "manager/host_net/nft.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"

extern char** environ;

namespace wisp::host_net {
namespace {

// Debian's nft, wherever root's PATH may lack /usr/sbin.
std::string nft_path() {
  for (const char* p : {"/usr/sbin/nft", "/sbin/nft"})
    if (::access(p, X_OK) == 0) return p;
  throw Error("nft is not installed (Debian package nftables; scripts/setup.sh installs it)");
}

}  // namespace

void apply_nft_ruleset(const std::string& ruleset) {
  std::string exe = nft_path();
  // The ruleset as nft's stdin: a memfd, so no pipe can fill up while nft is not reading.
  UniqueFd in(::memfd_create("wisp-nft-ruleset", MFD_CLOEXEC));
  if (!in || !write_all(in.get(), ruleset) || ::lseek(in.get(), 0, SEEK_SET) != 0)
    throw_errno("nft: writing the ruleset");
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) throw_errno("nft: pipe");
  UniqueFd err_read(errpipe[0]), err_write(errpipe[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.get(), 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, err_write.get(), 2);
  const char* argv[] = {exe.c_str(), "-f", "-", nullptr};
  pid_t pid = -1;
  // Spawned from this thread, so nft runs in this thread's network namespace.
  int rc = ::posix_spawn(&pid, exe.c_str(), &fa, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  err_write.reset();
  if (rc != 0) {
    errno = rc;
    throw_errno("running " + exe);
  }
  std::string message = read_all_fd(err_read.get());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("nft rejected the VM's ruleset: " +
                (message.empty() ? std::string("(no message)") : message));
}

}  // namespace wisp::host_net
