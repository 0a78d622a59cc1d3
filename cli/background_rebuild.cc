#include "cli/background_rebuild.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>

#include <vector>

#include "base/error.h"
#include "manager/template_rebuild.h"

extern char** environ;

namespace wisp::cli {

std::string start_background_rebuild(const std::string& name, const std::string& generation) {
  std::string log;
  try {
    log = manager::rebuild_log_path(name);
  } catch (const Error& e) {
    return e.what();
  }
  std::vector<std::string> args = {"wisp",     "template",      "rebuild", name, "--if-generation",
                                   generation, "--skip-if-busy"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW,
                                   0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Its own session; no signal blocked or ignored as this process has them (SignalWatch
  // blocks the terminating ones, SIGPIPE is ignored).
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  // This very binary: an upgraded wisp on disk would be another one.
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::string("cannot start wisp template rebuild: ") + strerror(rc);
  return "";
}

}  // namespace wisp::cli
