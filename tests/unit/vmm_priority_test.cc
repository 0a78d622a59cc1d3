// manager/vmm_priority: a VMM made ahead of demand runs at SCHED_IDLE, its later threads and
// children inherit that, and a take puts every one of them back to SCHED_OTHER; while calls
// run it is stopped, both processes, and continued after. A forked
// "supervisor" with a forked "VMM" child stands in for the jail's two processes.
#include "manager/vmm_priority.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "base/file_io.h"

namespace wisp::manager {
namespace {

// A process that forks one child and both sleep until killed; returns (supervisor, child).
std::pair<pid_t, pid_t> spawn_pair() {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t sup = fork();
  if (sup == 0) {
    close(fds[0]);
    pid_t child = fork();
    if (child == 0) {
      for (;;) pause();
    }
    (void)!write(fds[1], &child, sizeof(child));
    for (;;) pause();
  }
  close(fds[1]);
  pid_t child = -1;
  EXPECT_EQ(read(fds[0], &child, sizeof(child)), static_cast<ssize_t>(sizeof(child)));
  close(fds[0]);
  return {sup, child};
}

void kill_pair(std::pair<pid_t, pid_t> p) {
  kill(p.second, SIGKILL);
  kill(p.first, SIGKILL);
  waitpid(p.first, nullptr, 0);  // the child is reaped by init (it is not ours)
}

TEST(VmmPriority, BackgroundThenForegroundCoversBothProcesses) {
  auto p = spawn_pair();
  ASSERT_GT(p.second, 0);
  EXPECT_TRUE(set_vmm_background(p.first, true));
  EXPECT_EQ(sched_getscheduler(p.first), SCHED_IDLE);
  EXPECT_EQ(sched_getscheduler(p.second), SCHED_IDLE);
  EXPECT_TRUE(set_vmm_background(p.first, false));
  EXPECT_EQ(sched_getscheduler(p.first), SCHED_OTHER);
  EXPECT_EQ(sched_getscheduler(p.second), SCHED_OTHER);
  kill_pair(p);
}

TEST(VmmPriority, NoSuchProcessIsFalse) {
  EXPECT_FALSE(set_vmm_background(0, true));
  EXPECT_FALSE(set_vmm_background(-1, false));
  EXPECT_FALSE(set_vmm_stopped(0, true));
}

// The state letter of /proc/PID/stat ("R", "S", "T" ...), waited for up to 5 s to become `want`.
bool reaches_state(pid_t pid, char want) {
  for (int i = 0; i < 500; ++i) {
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == want)
      return true;
    usleep(10000);
  }
  return false;
}

TEST(VmmPriority, StoppedThenContinuedCoversBothProcesses) {
  auto p = spawn_pair();
  ASSERT_GT(p.second, 0);
  EXPECT_TRUE(set_vmm_stopped(p.first, true));
  EXPECT_TRUE(reaches_state(p.first, 'T'));
  EXPECT_TRUE(reaches_state(p.second, 'T'));
  EXPECT_TRUE(set_vmm_stopped(p.first, false));
  EXPECT_TRUE(reaches_state(p.first, 'S'));
  EXPECT_TRUE(reaches_state(p.second, 'S'));
  kill_pair(p);
}

}  // namespace
}  // namespace wisp::manager
