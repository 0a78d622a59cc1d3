#include "manager/vmm_priority.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "base/file_io.h"

namespace wisp::manager {
namespace {

std::vector<pid_t> numbered_entries(const std::string& dir) {
  std::vector<pid_t> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long n = strtol(e->d_name, &end, 10);
    if (n > 0 && end && *end == '\0') out.push_back(static_cast<pid_t>(n));
  }
  closedir(d);
  return out;
}

// The process and its direct children (/proc/PID/task/TID/children of each thread).
std::vector<pid_t> process_and_children(pid_t pid) {
  std::vector<pid_t> out = {pid};
  const std::string task = "/proc/" + std::to_string(pid) + "/task/";
  for (pid_t tid : numbered_entries(task)) {
    std::string list;
    try {
      list = read_file(task + std::to_string(tid) + "/children");
    } catch (const std::exception&) {
      continue;  // the thread ended meanwhile
    }
    const char* p = list.c_str();
    for (char* end = nullptr;; p = end) {
      long child = strtol(p, &end, 10);
      if (end == p) break;
      if (child > 0) out.push_back(static_cast<pid_t>(child));
    }
  }
  return out;
}

}  // namespace

bool set_vmm_background(pid_t supervisor, bool background) {
  if (supervisor <= 0) return false;
  sched_param param{};
  param.sched_priority = 0;
  int policy = background ? SCHED_IDLE : SCHED_OTHER;
  bool all = true;
  for (pid_t process : process_and_children(supervisor)) {
    std::vector<pid_t> tids = numbered_entries("/proc/" + std::to_string(process) + "/task");
    if (tids.empty()) all = false;
    for (pid_t tid : tids)
      if (sched_setscheduler(tid, policy, &param) != 0) all = false;
  }
  return all;
}

bool set_vmm_stopped(pid_t supervisor, bool stopped) {
  if (supervisor <= 0) return false;
  bool all = true;
  for (pid_t process : process_and_children(supervisor))
    if (kill(process, stopped ? SIGSTOP : SIGCONT) != 0) all = false;
  return all;
}

}  // namespace wisp::manager
