// wisp-pool-probe: drives manager/vmm_pool.h for tests/integration/vmm_pool_test.py, which
// checks what it prints (one JSON object per line). It lives beside wisp-vmm (the bin
// directory), where the manager library looks for the VMM.
//   clone TEMPLATE PAYLOAD ROUNDS  a standby VMM: how it stands by (its jailed process's
//        /proc status, root and namespaces, read before the order), then the order, the ready
//        line, the pages the previous round's clone wrote populated (Vmm.populateWritable, as
//        serve does for a warm clone), the template's handler invoked on PAYLOAD; ROUNDS times
//        each, and as many clones through `wisp-vmm restore` (AgentVm::restore) to compare.
//   boot PAYLOAD  a standby VMM (class 128 MiB, 1 vCPU) ordered to boot the agent guest
//        (StandbyVmm::order_boot), then "tr a-z A-Z" invoked on PAYLOAD through its agent; the
//        same machine booted by `wisp-vmm run` (AgentVm::boot) to compare.
//   boot PAYLOAD ROOTFS HANDLER  the standby path only, booting from the root filesystem image
//        ROOTFS (the order's rootfs flag; "-": the agent initramfs) and invoking HANDLER (a
//        command line) on PAYLOAD.
//   pool N   a VmmPool of N: refilled, waited for until all N stand by, one taken; prints their
//        pids, then destroys everything.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "base/clock.h"
#include "base/error.h"
#include "manager/agent_vm.h"
#include "manager/invoke.h"
#include "manager/template_store.h"
#include "manager/vmm_pool.h"

namespace wisp::manager {
namespace {

using std::chrono::milliseconds;

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The line "Key:\tvalue" of a /proc status file.
std::string status_field(const std::string& status, const std::string& key) {
  size_t at = status.find("\n" + key + ":");
  if (at == std::string::npos) return "";
  size_t start = status.find_first_not_of(" \t", at + key.size() + 2);
  return status.substr(start, status.find('\n', start) - start);
}

std::string link_of(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
}

// The jailed VMM: the supervisor's (wisp-vmm's) only child.
pid_t jailed_pid(pid_t supervisor) {
  std::string p = "/proc/" + std::to_string(supervisor) + "/task/" + std::to_string(supervisor);
  std::string children = read_text(p + "/children");
  return children.empty() ? -1 : static_cast<pid_t>(std::stol(children));
}

void wait_standing_by(StandbyVmm& v) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!v.standing_by()) {
    if (std::chrono::steady_clock::now() > end) throw Error("no standby within 120 s");
    std::this_thread::sleep_for(milliseconds(5));
  }
}

bool root_ino_differs(const std::string& root) {
  struct stat a, b;
  return stat((root + "/").c_str(), &a) == 0 && stat("/", &b) == 0 && a.st_ino != b.st_ino;
}

// Every non-directory under the VMM's root, as a JSON list of paths seen from inside it.
std::string root_files(const std::string& root) {
  std::string out = "[";
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    out += (out.size() > 1 ? "," : "") + json_string(it->path().string().substr(root.size()));
  }
  return out + "]";
}

void print_jail(StandbyVmm& v) {
  pid_t pid = jailed_pid(v.vmm().pid());
  std::string proc = "/proc/" + std::to_string(pid);
  std::string status = read_text(proc + "/status");
  std::printf(
      "{\"standby\":{\"supervisor\":%d,\"pid\":%d,\"uid\":%s,\"cap_eff\":%s,\"no_new_privs\":%s,"
      "\"seccomp\":%s,\"root_files\":%s,\"root_ino_differs\":%s,\"net_ns\":%s,\"host_net_ns\":%s,"
      "\"runtime_dir\":%s}}\n",
      v.vmm().pid(), pid, json_string(status_field(status, "Uid")).c_str(),
      json_string(status_field(status, "CapEff")).c_str(),
      json_string(status_field(status, "NoNewPrivs")).c_str(),
      json_string(status_field(status, "Seccomp")).c_str(), root_files(proc + "/root").c_str(),
      root_ino_differs(proc + "/root") ? "true" : "false",
      json_string(link_of(proc + "/ns/net")).c_str(),
      json_string(link_of("/proc/self/ns/net")).c_str(),
      json_string(v.vsock_uds().substr(0, v.vsock_uds().rfind('/'))).c_str());
  std::fflush(stdout);
}

struct CallTimes {
  double ready_ms = 0, total_ms = 0;
  uint64_t resident_pages = 0;  // mapped by the clone's VMM when it was ready, before the call
  std::string out;
  int exit_code = -1;
};

void call(AgentVm& vm, const TemplateInfo& t, const std::string& payload, uint64_t t0,
          CallTimes* c) {
  auto agent = vm.connect_agent(milliseconds(60000), /*confirm=*/true);
  send_fresh_entropy(*agent, 64);
  client::InvokeResult r = agent->invoke(invoke_request_for(t, payload, milliseconds(30000)));
  c->total_ms = ms_since(t0);
  c->out = r.out;
  c->exit_code = r.signaled ? -1 : r.exit_code;
}

void print_call(const char* path, int round, const CallTimes& c, const std::string& ready) {
  std::printf(
      "{\"%s\":{\"round\":%d,\"ready_ms\":%.3f,\"total_ms\":%.3f,\"exit_code\":%d,"
      "\"resident_pages\":%llu,\"out\":%s,\"ready_line\":%s}}\n",
      path, round, c.ready_ms, c.total_ms, c.exit_code,
      static_cast<unsigned long long>(c.resident_pages), json_string(c.out).c_str(),
      json_string(ready).c_str());
  std::fflush(stdout);
}

int clone_command(const std::string& name, const std::string& payload, int rounds) {
  OpenTemplate tpl = open_template(name);
  StandbyClass size{tpl.info.mem_mib << 20, tpl.info.vcpus};
  JailFlags jail;
  std::vector<std::pair<uint64_t, uint64_t>> written;  // by the previous round's clone
  for (int round = 0; round < rounds; ++round) {
    auto v = StandbyVmm::spawn(jail, size, /*control=*/true);
    wait_standing_by(*v);
    if (round == 0) print_jail(*v);
    CallTimes c;
    uint64_t t0 = now_ns();
    v->order_restore(tpl.snapshot_dir, tpl.info.drives);
    std::string ready = v->wait_ready(milliseconds(60000));
    c.ready_ms = ms_since(t0);
    std::unique_ptr<AgentVm> vm = v->release();
    c.resident_pages = vm->control()->stats().resident_pages;  // the working set prefetched
    // As serve readies a warm clone once the template's first warm call has run: the pages a
    // call wrote copied by the jailed VMM (its loop thread's MADV_POPULATE_WRITE;
    // seccomp_tables_check.py counts on this call).
    if (!written.empty()) vm->control()->populate_writable(written);
    call(*vm, tpl.info, payload, t0, &c);
    written = vm->control()->written_ranges();
    print_call("pool", round, c, ready);
  }
  for (int round = 0; round < rounds; ++round) {
    CallTimes c;
    uint64_t t0 = now_ns();
    auto vm = AgentVm::restore(tpl.snapshot_dir, tpl.info.drives, tpl.info.net, true,
                               milliseconds(60000), jail);
    c.ready_ms = ms_since(t0);
    c.resident_pages = vm->control()->stats().resident_pages;
    call(*vm, tpl.info, payload, t0, &c);
    print_call("spawn", round, c, "");
  }
  return 0;
}

// The machine both boot paths boot: the default kernel and agent initramfs.
VmSpec boot_spec() {
  VmSpec spec;
  spec.mem_bytes = 128ull << 20;
  spec.vcpus = 1;
  return spec;
}

void boot_call(AgentVm& vm, const std::vector<std::string>& argv, const std::string& payload,
               uint64_t t0, CallTimes* c) {
  auto agent = vm.connect_agent(milliseconds(120000), /*confirm=*/false);
  agent->ping();
  c->ready_ms = ms_since(t0);  // the agent answers: booted
  TemplateInfo t;
  t.argv = argv;
  client::InvokeResult r = agent->invoke(invoke_request_for(t, payload, milliseconds(30000)));
  c->total_ms = ms_since(t0);
  c->out = r.out;
  c->exit_code = r.signaled ? -1 : r.exit_code;
}

int boot_command(const std::string& payload, bool compare, const std::string& rootfs = "",
                 const std::string& handler = "tr a-z A-Z") {
  JailFlags jail;
  VmSpec spec = boot_spec();
  spec.rootfs = rootfs == "-" ? "" : rootfs;
  std::vector<std::string> argv = split_command(handler);
  std::string why = StandbyVmm::why_not_boot(spec, StandbyClass{128ull << 20, 1}, jail);
  if (!why.empty()) throw Error("a standby cannot boot the spec: " + why);
  {
    auto v = StandbyVmm::spawn(jail, StandbyClass{128ull << 20, 1});
    wait_standing_by(*v);
    CallTimes c;
    uint64_t t0 = now_ns();
    v->order_boot(spec);
    std::string ready = v->wait_ready(milliseconds(60000));
    std::unique_ptr<AgentVm> vm = v->release();
    boot_call(*vm, argv, payload, t0, &c);
    print_call("pool_boot", 0, c, ready);
  }
  if (!compare) return 0;
  CallTimes c;
  uint64_t t0 = now_ns();
  auto vm = AgentVm::boot(spec, /*control=*/false, "wisp-boot");
  boot_call(*vm, argv, payload, t0, &c);
  print_call("spawn_boot", 0, c, "");
  return 0;
}

int pool_command(size_t n) {
  std::vector<pid_t> pids;
  {
    VmmPool pool(n, JailFlags{});
    pool.refill();
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    while (pool.idle() < n) {
      if (std::chrono::steady_clock::now() > end)
        throw Error("the pool did not fill: " + pool.last_error());
      pool.refill();
      std::this_thread::sleep_for(milliseconds(20));
    }
    std::unique_ptr<StandbyVmm> taken = pool.take();
    if (!taken) throw Error("take() gave nothing with a full pool");
    pids.push_back(taken->vmm().pid());
    std::printf("{\"pool\":{\"idle_after_take\":%zu,\"size\":%zu}}\n", pool.idle(), pool.size());
    pool.refill();
    std::printf("{\"pool\":{\"size_after_refill\":%zu}}\n", pool.size());
  }
  std::printf("{\"pool\":{\"destroyed\":true}}\n");
  return 0;
}

}  // namespace
}  // namespace wisp::manager

int main(int argc, char** argv) {
  try {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "clone" && argc == 5)
      return wisp::manager::clone_command(argv[2], argv[3], std::stoi(argv[4]));
    if (cmd == "boot" && argc == 3) return wisp::manager::boot_command(argv[2], true);
    if (cmd == "boot" && argc == 5)
      return wisp::manager::boot_command(argv[2], false, argv[3], argv[4]);
    if (cmd == "pool" && argc == 3) return wisp::manager::pool_command(std::stoul(argv[2]));
    std::fprintf(stderr,
                 "usage: wisp-pool-probe clone TEMPLATE PAYLOAD ROUNDS | boot PAYLOAD [ROOTFS "
                 "HANDLER] | pool N\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wisp-pool-probe: %s\n", e.what());
    return 1;
  }
}
