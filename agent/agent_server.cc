#include "agent/agent_server.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "agent/container_root.h"
#include "agent/criu_drive.h"
#include "agent/criu_runner.h"
#include "agent/criu_worker.h"
#include "agent/exec_invocation.h"
#include "agent/huge_text.h"
#include "agent/memory_touch.h"
#include "agent/pid1.h"
#include "agent/spare_fit.h"
#include "agent/stream_process.h"
#include "base/clock.h"
#include "base/version.h"

namespace wisp::agent {
namespace {

// The reply must fit in one message under Agent.maxMessageBytes with stderr and headroom.
constexpr uint64_t kMaxOutputCapBytes = 32ull << 20;
constexpr size_t kMaxArgs = 4096;
constexpr size_t kMaxEntropyBytes = 4096;
constexpr uint64_t kMaxTimeoutMs = 24ull * 3600 * 1000;
constexpr uint64_t kMinMemoryBytes = 1ull << 20;
// As many supplementary groups as an OCI process plausibly lists (the kernel takes 65536).
constexpr size_t kMaxAdditionalGids = 64;
// prepareSnapshot waits at most this for its spare sandbox to be set up.
constexpr uint64_t kSpareSetupMs = 20000;

std::string read_small_file(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> text_list(capnp::List<capnp::Text>::Reader list, const char* what) {
  KJ_REQUIRE(list.size() <= kMaxArgs, "too many entries", what, list.size());
  std::vector<std::string> out;
  out.reserve(list.size());
  for (auto t : list) {
    std::string s(t.cStr(), t.size());
    KJ_REQUIRE(s.find('\0') == std::string::npos, "NUL byte in", what);
    out.push_back(kj::mv(s));
  }
  return out;
}

capnp::Data::Reader as_data(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

}  // namespace

void fill_result(const InvocationResult& r, api::InvokeResult::Builder out) {
  out.setStdout(as_data(r.stdout_data.data));
  out.setStderr(as_data(r.stderr_data.data));
  if (r.signaled) {
    out.setSignal(r.status);
  } else {
    out.setExitCode(r.status);
  }
  out.setTimedOut(r.timed_out);
  out.setOutputTruncated(r.stdout_data.truncated || r.stderr_data.truncated);
  out.setLimitExceeded(r.limit_exceeded);
  out.setDurationNs(r.duration_ns);
  out.setPeakMemoryBytes(r.peak_memory_bytes);
  out.setCpuTimeNs(r.cpu_time_ns);
  out.setError(r.error);
  out.setPreforked(r.preforked);
}

HandlerConfig handler_config_from_wire(api::Handler::Reader handler, bool terminal_allowed) {
  HandlerConfig c;
  c.name = handler.getName();
  c.sandbox.argv = text_list(handler.getArgv(), "argv");
  KJ_REQUIRE(!c.sandbox.argv.empty() && !c.sandbox.argv[0].empty(), "handler argv is empty");
  c.sandbox.env = text_list(handler.getEnv(), "env");
  c.sandbox.network = handler.getNetwork();
  auto limits = handler.getLimits();
  KJ_REQUIRE(limits.getMemoryBytes() >= kMinMemoryBytes, "limits.memoryBytes too small");
  KJ_REQUIRE(limits.getPids() >= 1, "limits.pids must be at least 1");
  KJ_REQUIRE(limits.getOpenFiles() >= 3, "limits.openFiles must be at least 3");
  c.cgroup.memory_bytes = limits.getMemoryBytes();
  c.cgroup.pids = limits.getPids();
  c.sandbox.cpu_time_ms = limits.getCpuTimeMs();
  c.sandbox.open_files = limits.getOpenFiles();
  // tmpfs pages are charged to the handler's cgroup, so memory.max bounds the scratch dir too.
  c.sandbox.scratch_bytes = limits.getMemoryBytes();
  c.max_output_bytes = std::min(limits.getMaxOutputBytes(), kMaxOutputCapBytes);
  c.sandbox.root_device = handler.getRootDevice();
  KJ_REQUIRE(c.sandbox.root_device.empty() || is_root_device_name(c.sandbox.root_device),
             "rootDevice: expected \"\" or /dev/vdX", c.sandbox.root_device.c_str());
  c.sandbox.cwd = handler.getCwd();
  KJ_REQUIRE(c.sandbox.cwd.empty() || (c.sandbox.cwd[0] == '/' && c.sandbox.cwd.size() < 4096 &&
                                       c.sandbox.cwd.find('\0') == std::string::npos),
             "cwd: expected an absolute path under 4096 bytes");
  c.sandbox.uid = handler.getUid();
  c.sandbox.gid = handler.getGid();
  auto groups = handler.getAdditionalGids();
  KJ_REQUIRE(groups.size() <= kMaxAdditionalGids, "additionalGids: too many", groups.size());
  for (uint32_t g : groups) c.sandbox.groups.push_back(g);
  c.sandbox.terminal = handler.getTerminal();
  KJ_REQUIRE(!c.sandbox.terminal || terminal_allowed,
             "terminal: only execStream runs a command on a terminal");
  c.sandbox.console_width = handler.getConsoleWidth();
  c.sandbox.console_height = handler.getConsoleHeight();
  return c;
}

AgentImpl::AgentImpl(AgentServices& services, const AgentTimes& times,
                     kj::Function<void()> power_off)
    : services_(services), times_(times), power_off_(kj::mv(power_off)) {}

AgentImpl::~AgentImpl() {
  for (auto& [name, worker] : workers_) worker->stop();
}

kj::Promise<void> AgentImpl::ping(PingContext context) {
  auto info = context.getResults().initInfo();
  info.setProtocolVersion(api::PROTOCOL_VERSION);
  info.setAgentVersion(kWispVersion);
  info.setBootId(read_small_file("/proc/sys/kernel/random/boot_id"));
  info.setUptimeNs(boot_time_ns());
  info.setStartedNs(times_.started_ns);
  info.setReadyNs(times_.ready_ns);
  info.setTerminals(true);
  size_t alive = 0;
  for (auto& [name, worker] : workers_) alive += worker->alive() ? 1 : 0;
  auto names = info.initWorkers(static_cast<unsigned>(alive));
  unsigned i = 0;
  for (auto& [name, worker] : workers_) {
    if (worker->alive()) names.set(i++, name);
  }
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::invoke(InvokeContext context) {
  KJ_REQUIRE(!shutting_down_, "the agent is shutting down");
  auto request = context.getParams().getRequest();
  uint64_t timeout_ms = std::clamp<uint64_t>(request.getTimeoutMs(), 1, kMaxTimeoutMs);
  kj::ArrayPtr<const kj::byte> payload = request.getPayload();
  kj::Promise<InvocationResult> run = nullptr;
  if (request.getMode() == api::InvokeRequest::Mode::WORKER) {
    std::string name = request.getHandler().getName();
    auto it = workers_.find(name);
    if (it == workers_.end()) {
      InvocationResult r;
      r.status = -1;
      r.error = "no worker named '" + name + "': call startWorker first";
      fill_result(r, context.getResults().initResult());
      return kj::READY_NOW;
    }
    run = it->second->invoke(payload, timeout_ms);
  } else {
    HandlerConfig config = handler_config_from_wire(request.getHandler());
    run = run_exec_invocation(services_, config, payload, timeout_ms, take_spare(config))
              .then([this, config](InvocationResult r) {
                make_spare_later(config);
                return r;
              });
  }
  // `context` keeps the request (and so `payload`) alive until the call returns.
  return run.then(
      [context](InvocationResult r) mutable { fill_result(r, context.getResults().initResult()); });
}

void AgentImpl::drop_dead_spare() {
  if (!spare_ || !spare_->dead()) return;
  if (spare_->failed()) spare_failed_for_ = spare_->config();
  spare_ = nullptr;
}

kj::Maybe<StartedSandbox> AgentImpl::take_spare(const HandlerConfig& config) {
  drop_dead_spare();
  if (!spare_ || awaiting_resume_ || !spare_->ready()) return nullptr;
  if (spare_misfit(spare_->config().sandbox, config.sandbox, config.cgroup) != nullptr) {
    return nullptr;
  }
  // Taken, found dead or refused: either way the next spare is made after this call.
  auto spare = kj::mv(spare_);
  try {
    return spare->take(config.cgroup);
  } catch (const kj::Exception& e) {
    // Its cgroup refused the call's limits: this call takes the fresh path, which says why.
    console_log("the spare exec sandbox could not be taken: %s", e.getDescription().cStr());
    return nullptr;
  }
}

void AgentImpl::make_spare(const HandlerConfig& config) {
  if (shutting_down_) return;
  drop_dead_spare();
  auto fits = [&config](const HandlerConfig& made_for) {
    return spare_misfit(made_for.sandbox, config.sandbox, config.cgroup) == nullptr;
  };
  if (spare_ && fits(spare_->config())) return;
  KJ_IF_MAYBE (failed, spare_failed_for_) {
    if (fits(*failed)) return;
  }
  if (config.cgroup.pids < 2) return;  // never fits (spare_fit.h)
  spare_ = nullptr;
  try {
    spare_ = kj::heap<SpareSandbox>(services_, config);
  } catch (const kj::Exception& e) {
    console_log("no spare exec sandbox: %s", e.getDescription().cStr());
  }
}

void AgentImpl::make_spare_later(const HandlerConfig& config) {
  // Off the reply's path, and a little later: a VM made for one call (wisp exec, serve's
  // clones) is usually told to shut down in that time and then makes none. Another call's
  // end replaces this, so back-to-back calls make one spare, after the last.
  spare_task_ = services_.timer.afterDelay(kAfterResultDelay)
                    .then([this, config]() { make_spare(config); })
                    .eagerlyEvaluate([](kj::Exception&& e) {
                      console_log("no spare exec sandbox: %s", e.getDescription().cStr());
                    });
}

kj::Promise<void> AgentImpl::startWorker(StartWorkerContext context) {
  KJ_REQUIRE(!shutting_down_, "the agent is shutting down");
  HandlerConfig config = handler_config_from_wire(context.getParams().getHandler());
  KJ_REQUIRE(!config.name.empty(), "a worker needs a handler name");
  auto it = workers_.find(config.name);
  if (it != workers_.end()) {
    if (it->second->alive()) return kj::READY_NOW;  // idempotent
    workers_.erase(it);                             // dead: restart it
  }
  std::string name = config.name;
  workers_.emplace(name, kj::refcounted<Worker>(services_, kj::mv(config)));
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::stopWorker(StopWorkerContext context) {
  std::string name = context.getParams().getName();
  auto it = workers_.find(name);
  if (it != workers_.end()) {
    it->second->stop();
    workers_.erase(it);
  }
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::prepareSnapshot(PrepareSnapshotContext context) {
  // Nothing of the agent's own runs on timers between calls (what earlier calls' sandboxes
  // left goes now, not in a clone: sandbox_remains.h); flush what the guest buffers.
  services_.remains.drop_all();
  sync();
  awaiting_resume_ = true;
  // Before the spare is forked, so that it runs on the moved code too (huge_text.h).
  std::string why;
  if (!move_text_to_huge_pages(&why)) console_log("code stays on 4 KiB pages: %s", why.c_str());
  auto params = context.getParams();
  if (params.hasSpare()) {
    spare_task_ = nullptr;
    make_spare(handler_config_from_wire(params.getSpare()));
  }
  // Also without `spare`: a spare being set up is not caught half-way in the snapshot.
  if (!spare_) return kj::READY_NOW;
  return spare_->settled().exclusiveJoin(
      services_.timer.afterDelay(kSpareSetupMs * kj::MILLISECONDS));
}

kj::Promise<void> AgentImpl::resumed(ResumedContext context) {
  auto params = context.getParams();
  awaiting_resume_ = false;  // the spare execs after this reseed (agent_server.h)
  auto entropy = params.getEntropy();
  KJ_REQUIRE(entropy.size() <= kMaxEntropyBytes, "entropy too large", entropy.size());
  int fd;
  KJ_SYSCALL(fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC));
  kj::AutoCloseFd owned(fd);
  if (entropy.size() > 0) {
    // Credited, not just mixed in: a restored clone must not wait for (or reuse) entropy.
    std::vector<char> buf(sizeof(rand_pool_info) + entropy.size());
    auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
    info->entropy_count = static_cast<int>(entropy.size() * 8);
    info->buf_size = static_cast<int>(entropy.size());
    memcpy(info->buf, entropy.begin(), entropy.size());
    KJ_SYSCALL(ioctl(fd, RNDADDENTROPY, info), "RNDADDENTROPY");
  }
  // Since Linux 5.18 crediting a CRNG that is already seeded does not reseed it: without this,
  // clones of one snapshot read the same bytes until the next scheduled reseed (up to a
  // minute). Even with no host entropy a reseed differs per clone: it mixes in RDSEED/RDRAND
  // and the interrupt timings since the restore.
  KJ_SYSCALL(ioctl(fd, RNDRESEEDCRNG), "RNDRESEEDCRNG");
  int64_t wall = params.getWallClockUnixNs();
  if (wall > 0) {
    timespec ts{static_cast<time_t>(wall / 1000000000), static_cast<long>(wall % 1000000000)};
    KJ_SYSCALL(clock_settime(CLOCK_REALTIME, &ts), "set the wall clock");
  }
  // After the kernel's reseed, so a worker reseeding from getrandom() gets fresh bytes. The
  // notice queues behind a call in progress, and the next call behind the notice, so this
  // reply need not wait for it.
  for (auto& [name, worker] : workers_) services_.background.add(worker->notify_resumed());
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::touchMemory(TouchMemoryContext context) {
  auto wire = context.getParams().getRanges();
  KJ_REQUIRE(wire.size() <= api::Agent::MAX_TOUCH_RANGES, "touchMemory: too many ranges",
             wire.size());
  std::vector<TouchRange> ranges;
  ranges.reserve(wire.size());
  for (auto r : wire) ranges.push_back({r.getFirstPage(), r.getPageCount()});
  check_touch_ranges(ranges, api::Agent::MAX_TOUCH_RANGES, api::Agent::MAX_TOUCH_PAGES);
  int fd = open(kDevMemPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    KJ_FAIL_REQUIRE("touchMemory: this guest's kernel has no /dev/mem (CONFIG_DEVMEM)");
  if (fd < 0) KJ_FAIL_SYSCALL("open(/dev/mem)", errno);
  kj::AutoCloseFd owned(fd);
  // On this loop, not a thread: it runs while a warm clone is made, when the agent has
  // nothing else to do (a few hundred ms for thousands of pages on a nested testbed).
  uint64_t t0 = now_ns();
  uint64_t pages = touch_pages(fd, ranges);
  auto results = context.getResults();
  results.setPages(pages);
  results.setNs(now_ns() - t0);
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::shutdown(ShutdownContext) {
  shutting_down_ = true;
  // Power off from a timer so this reply is on its way first.
  services_.background.add(
      services_.timer.afterDelay(20 * kj::MILLISECONDS).then([this]() { power_off_(); }));
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::execStream(ExecStreamContext context) {
  KJ_REQUIRE(!shutting_down_, "the agent is shutting down");
  auto params = context.getParams();
  HandlerConfig config = handler_config_from_wire(params.getHandler(), /*terminal_allowed=*/true);
  uint64_t timeout_ms = params.getTimeoutMs();
  KJ_REQUIRE(timeout_ms >= 1, "execStream: timeoutMs must be at least 1 (milliseconds)");
  timeout_ms = std::min(timeout_ms, kMaxTimeoutMs);
  auto process = kj::heap<StreamProcess>(services_, params.getOutput());
  process->start(config, timeout_ms);
  context.getResults().setProcess(kj::mv(process));
  return kj::READY_NOW;
}

ScratchDir& AgentImpl::scratch() {
  KJ_IF_MAYBE (s, scratch_) {
    return *s;
  }
  return scratch_.emplace(ScratchDir::open_default(api::Agent::MAX_FILE_BYTES));
}

kj::Promise<void> AgentImpl::putFile(PutFileContext context) {
  auto params = context.getParams();
  auto path = params.getPath();
  scratch().put(std::string_view(path.cStr(), path.size()), params.getData(), params.getMode());
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::getFile(GetFileContext context) {
  auto path = context.getParams().getPath();
  std::string data = scratch().get(std::string_view(path.cStr(), path.size()));
  context.getResults().setData(as_data(data));
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::criuCheck(CriuCheckContext context) {
  return criu_check(services_, context.getResults().initResult()).attach(kj::mv(context));
}

kj::Promise<void> AgentImpl::checkpointWorker(CheckpointWorkerContext context) {
  KJ_REQUIRE(!shutting_down_, "the agent is shutting down");
  auto params = context.getParams();
  std::string name = params.getName();
  auto it = workers_.find(name);
  KJ_REQUIRE(it != workers_.end() && it->second->alive(), "no running worker named", name);
  uint64_t cap = params.getMaxBytes();
  if (cap == 0 || cap > api::Agent::MAX_CRIU_IMAGE_BYTES) cap = api::Agent::MAX_CRIU_IMAGE_BYTES;
  auto sink = params.getSink();
  kj::Own<Worker> worker = kj::addRef(*it->second);
  Worker& w = *worker;
  return checkpoint_worker(services_, w)
      .then([context, sink = kj::mv(sink), cap](CheckpointResult dumped) mutable {
        uint64_t t0 = now_ns();
        std::string dir = dumped.dir;
        auto cleanup = kj::defer([dir]() { remove_criu_dir(dir); });
        return send_image(dir, kj::mv(sink), cap)
            .then([context, dumped, t0](SentImage sent) mutable {
              auto info = context.getResults().initInfo();
              info.setImageBytes(sent.bytes);
              info.setFiles(sent.files);
              info.setDumpNs(dumped.dump_ns);
              info.setSendNs(now_ns() - t0);
            })
            .attach(kj::mv(cleanup));
      })
      .attach(kj::mv(worker));
}

kj::Promise<void> AgentImpl::restoreWorker(RestoreWorkerContext context) {
  KJ_REQUIRE(!shutting_down_, "the agent is shutting down");
  HandlerConfig config = handler_config_from_wire(context.getParams().getHandler());
  KJ_REQUIRE(!config.name.empty(), "a worker needs a handler name");
  auto it = workers_.find(config.name);
  KJ_REQUIRE(it == workers_.end() || !it->second->alive(), "a worker of that name is running",
             config.name);
  auto upload = make_restore_upload(services_, kj::mv(config), [this](kj::Own<Worker> worker) {
    adopt_restored(kj::mv(worker));
  });
  context.getResults().setUpload(kj::mv(upload));
  return kj::READY_NOW;
}

kj::Promise<void> AgentImpl::restoreWorkerFromDrive(RestoreWorkerFromDriveContext context) {
  KJ_REQUIRE(!shutting_down_, "the agent is shutting down");
  auto params = context.getParams();
  HandlerConfig config = handler_config_from_wire(params.getHandler());
  KJ_REQUIRE(!config.name.empty(), "a worker needs a handler name");
  auto it = workers_.find(config.name);
  KJ_REQUIRE(it == workers_.end() || !it->second->alive(), "a worker of that name is running",
             config.name);
  std::string device(params.getDevice().cStr(), params.getDevice().size());
  return restore_worker_from_drive(
             services_, kj::mv(config), device,
             [this](kj::Own<Worker> worker) { adopt_restored(kj::mv(worker)); })
      .then([context](DriveRestore r) mutable {
        context.getResults().setRestoreNs(r.restore_ns);
        context.getResults().setMountNs(r.mount_ns);
      });
}

void AgentImpl::adopt_restored(kj::Own<Worker> worker) {
  std::string name = worker->config().name;
  auto old = workers_.find(name);
  KJ_REQUIRE(old == workers_.end() || !old->second->alive(),
             "a worker of that name started meanwhile", name);
  if (old != workers_.end()) workers_.erase(old);
  workers_.emplace(name, kj::mv(worker));
}

}  // namespace wisp::agent
