#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "agent/held_namespaces.h"

namespace wisp::agent {
namespace {

ino_t own_namespace(const char* ns) {
  struct stat st {};
  EXPECT_EQ(stat(("/proc/self/ns/" + std::string(ns)).c_str(), &st), 0) << ns;
  return st.st_ino;
}

// A child in namespaces of its own, waiting to be killed.
pid_t child_in_new_namespaces() {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    char c = unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWNS) == 0 ? 'R' : 'F';
    (void)!write(ready[1], &c, 1);
    for (;;) pause();
  }
  close(ready[1]);
  char c = 0;
  bool ok = read(ready[0], &c, 1) == 1 && c == 'R';
  close(ready[0]);
  if (!ok && pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

TEST(HeldNamespaces, TheyOutliveTheProcessThatMadeThem) {
  if (geteuid() != 0) GTEST_SKIP() << "unshare needs root";
  pid_t pid = child_in_new_namespaces();
  ASSERT_GT(pid, 0) << "could not make a child in new namespaces";
  HeldNamespaces held = hold_namespaces(pid);
  kill(pid, SIGKILL);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  // Still open after their last process is gone, and the child's, not this process's.
  for (auto [fd, ns] : {std::pair{held.net.get(), "net"}, std::pair{held.ipc.get(), "ipc"},
                        std::pair{held.mnt.get(), "mnt"}}) {
    ASSERT_GE(fd, 0) << ns;
    struct stat st {};
    ASSERT_EQ(fstat(fd, &st), 0) << ns;
    EXPECT_NE(st.st_ino, own_namespace(ns)) << ns;
  }
}

TEST(HeldNamespaces, AProcessAlreadyGoneLeavesNothingToHold) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  HeldNamespaces held = hold_namespaces(pid);
  EXPECT_LT(held.net.get(), 0);
  EXPECT_LT(held.ipc.get(), 0);
  EXPECT_LT(held.mnt.get(), 0);
}

}  // namespace
}  // namespace wisp::agent
