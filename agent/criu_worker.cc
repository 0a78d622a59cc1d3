#include "agent/criu_worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "agent/criu_kdat.h"
#include "agent/criu_mounts.h"
#include "agent/criu_runner.h"
#include "agent/pid1.h"
#include "api/criu_image.h"
#include "base/clock.h"

namespace wisp::agent {
namespace {

constexpr size_t kChunkBytes = 1 << 20;
// Where criu finds what it inherits (fd numbers in criu's process).
constexpr int kStdinFd = 3, kStdoutFd = 4, kStderrFd = 5, kStatusFd = 6;

uint64_t net_ns_inode(pid_t pid) {
  struct stat st;
  std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

struct WorkerInfo {
  WorkerPipeInodes pipes;
  uint64_t net_ns = 0;  // 0: the worker shares the guest's network namespace
};

std::string format_info(const WorkerInfo& w) {
  char buf[256];
  snprintf(buf, sizeof(buf), "stdin %llu\nstdout %llu\nstderr %llu\nstatus %llu\nnet %llu\n",
           static_cast<unsigned long long>(w.pipes.stdin_pipe),
           static_cast<unsigned long long>(w.pipes.stdout_pipe),
           static_cast<unsigned long long>(w.pipes.stderr_pipe),
           static_cast<unsigned long long>(w.pipes.status_pipe),
           static_cast<unsigned long long>(w.net_ns));
  return buf;
}

// The image's kWorkerInfoFile: five "key number" lines, each key once.
WorkerInfo parse_info(const std::string& text) {
  std::map<std::string, uint64_t> values;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    KJ_REQUIRE(end != std::string::npos, "criu image: wisp-worker.txt: unterminated line");
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    size_t sp = line.find(' ');
    KJ_REQUIRE(sp != std::string::npos && sp + 1 < line.size() && line.size() <= 40,
               "criu image: wisp-worker.txt: bad line", line);
    std::string key = line.substr(0, sp), number = line.substr(sp + 1);
    KJ_REQUIRE(number.find_first_not_of("0123456789") == std::string::npos && number.size() <= 19,
               "criu image: wisp-worker.txt: not a number", line);
    KJ_REQUIRE(values.emplace(key, std::stoull(number)).second,
               "criu image: wisp-worker.txt: key twice", key);
  }
  auto get = [&values](const char* key) {
    auto it = values.find(key);
    KJ_REQUIRE(it != values.end(), "criu image: wisp-worker.txt lacks", key);
    return it->second;
  };
  WorkerInfo w;
  w.pipes.stdin_pipe = get("stdin");
  w.pipes.stdout_pipe = get("stdout");
  w.pipes.stderr_pipe = get("stderr");
  w.pipes.status_pipe = get("status");
  w.net_ns = get("net");
  KJ_REQUIRE(values.size() == 5, "criu image: wisp-worker.txt has unknown keys");
  KJ_REQUIRE(
      w.pipes.stdin_pipe && w.pipes.stdout_pipe && w.pipes.stderr_pipe && w.pipes.status_pipe,
      "criu image: wisp-worker.txt: a pipe inode is 0");
  return w;
}

void write_file(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) KJ_FAIL_SYSCALL("create", errno, path);
  kj::AutoCloseFd owned(fd);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) KJ_FAIL_SYSCALL("write", errno, path);
    done += static_cast<size_t>(n);
  }
}

std::string read_file(const std::string& path, size_t cap) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) KJ_FAIL_SYSCALL("open", errno, path);
  kj::AutoCloseFd owned(fd);
  std::string out(cap + 1, '\0');
  ssize_t n = read(fd, out.data(), out.size());
  if (n < 0) KJ_FAIL_SYSCALL("read", errno, path);
  KJ_REQUIRE(static_cast<size_t>(n) <= cap, "file too large", path);
  out.resize(static_cast<size_t>(n));
  return out;
}

struct DirFile {
  std::string name;
  uint64_t size;
};

std::vector<DirFile> list_image(const std::string& dir) {
  std::vector<DirFile> files;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) KJ_FAIL_SYSCALL("opendir", errno, dir);
  KJ_DEFER(closedir(d));
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    KJ_REQUIRE(fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode),
               "criu image: not a regular file", name);
    KJ_REQUIRE(api::criu_image_name_ok(name), "criu image: file name not allowed", name);
    files.push_back({name, static_cast<uint64_t>(st.st_size)});
  }
  std::sort(files.begin(), files.end(),
            [](const DirFile& a, const DirFile& b) { return a.name < b.name; });
  return files;
}

capnp::Data::Reader as_data(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

// Sends the archive's pieces in order: `pending` holds the bytes not sent yet.
struct Sender {
  explicit Sender(api::CriuImageSink::Client s) : sink(kj::mv(s)) {}
  api::CriuImageSink::Client sink;
  std::string dir;
  std::vector<DirFile> files;
  size_t next_file = 0;
  int fd = -1;  // the file being sent
  uint64_t left = 0;
  std::string pending;
  bool ended = false;

  ~Sender() {
    if (fd >= 0) close(fd);
  }

  // Fills `pending` with up to one chunk; false when everything was sent.
  bool fill() {
    while (pending.size() < kChunkBytes) {
      if (fd >= 0 && left > 0) {
        size_t want = std::min<uint64_t>(left, kChunkBytes - pending.size());
        size_t at = pending.size();
        pending.resize(at + want);
        ssize_t n = read(fd, pending.data() + at, want);
        if (n <= 0) KJ_FAIL_REQUIRE("criu image: a file shrank while it was sent");
        pending.resize(at + static_cast<size_t>(n));
        left -= static_cast<uint64_t>(n);
        continue;
      }
      if (fd >= 0) {
        close(fd);
        fd = -1;
      }
      if (next_file < files.size()) {
        const DirFile& f = files[next_file++];
        std::string path = dir + "/" + f.name;
        fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) KJ_FAIL_SYSCALL("open", errno, path);
        left = f.size;
        pending += api::criu_record_header(f.name, f.size);
        continue;
      }
      if (!ended) {
        pending += api::criu_image_end();
        ended = true;
      }
      break;
    }
    return !pending.empty();
  }

  kj::Promise<void> pump() {
    if (!fill()) return sink.doneRequest().send().ignoreResult();
    auto req = sink.writeRequest();
    req.setData(as_data(pending));
    pending.clear();
    return req.send().then([this]() { return pump(); });
  }
};

// The root criu restores the worker's mount namespace on (its --root): a read-only bind of
// the guest's root mount alone. criu binds --root recursively, and "/" itself would bring the
// agent's /run, /sys and the rest into the sandbox; its own mounts (/proc, /dev, /tmp) are
// restored on top. Read-only as the dumped sandbox's root was (criu does not re-apply the
// root mount's flags).
struct RestoreRoot {
  explicit RestoreRoot(std::string p) : path(kj::mv(p)) {
    if (mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) KJ_FAIL_SYSCALL("mkdir", errno, path);
    if (mount("/", path.c_str(), nullptr, MS_BIND, nullptr) < 0) {
      int err = errno;
      rmdir(path.c_str());
      KJ_FAIL_SYSCALL("bind the root for criu restore", err, path);
    }
    if (mount(nullptr, path.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0) {
      int err = errno;
      umount2(path.c_str(), MNT_DETACH);
      rmdir(path.c_str());
      KJ_FAIL_SYSCALL("remount the root for criu restore read-only", err, path);
    }
  }
  ~RestoreRoot() {
    umount2(path.c_str(), MNT_DETACH);
    rmdir(path.c_str());
  }
  KJ_DISALLOW_COPY(RestoreRoot);
  std::string path;
};

// criu restore of the worker in image directory `images_dir` (read only by criu) with
// `work_dir` (writable) for its pidfile and anything else it writes; hands the worker to
// `adopt` and returns criu restore's run time.
kj::Promise<uint64_t> restore_from_dir(AgentServices& services, HandlerConfig config,
                                       const std::string& images_dir, const std::string& work_dir,
                                       const WorkerInfo& info,
                                       kj::Function<void(kj::Own<Worker>)> adopt) {
  auto cgroup = kj::heap<Cgroup>(services.next_cgroup_name("worker"), config.cgroup);
  // New pipes in place of the dumped ones: criu's ends at kStdinFd.., the agent's kept.
  int in[2], out[2], err[2], status[2];
  KJ_SYSCALL(pipe2(in, O_CLOEXEC));
  KJ_SYSCALL(pipe2(out, O_CLOEXEC));
  KJ_SYSCALL(pipe2(err, O_CLOEXEC));
  KJ_SYSCALL(pipe2(status, O_CLOEXEC));
  kj::AutoCloseFd in_r(in[0]), out_w(out[1]), err_w(err[1]), status_w(status[1]);
  SandboxedProcess proc;
  proc.stdin_fd = kj::AutoCloseFd(in[1]);
  proc.stdout_fd = kj::AutoCloseFd(out[0]);
  proc.stderr_fd = kj::AutoCloseFd(err[0]);
  proc.status_fd = kj::AutoCloseFd(status[0]);
  auto pipe_key = [](int fd, uint64_t ino) {
    return "fd[" + std::to_string(fd) + "]:pipe:[" + std::to_string(ino) + "]";
  };
  std::string pidfile = work_dir + "/restored.pid";
  auto root = std::make_unique<RestoreRoot>(work_dir + ".root");
  CriuSpawn spawn;
  // --work-dir: criu writes nothing into the image directory (which may be a read-only
  // drive); its log goes to its stderr (run_criu's output file).
  spawn.args = {"restore",
                "--restore-detached",
                "--images-dir",
                images_dir,
                "--work-dir",
                work_dir,
                "--root",
                root->path,
                "--pidfile",
                pidfile,
                "--manage-cgroups=ignore",
                "--inherit-fd",
                pipe_key(kStdinFd, info.pipes.stdin_pipe),
                "--inherit-fd",
                pipe_key(kStdoutFd, info.pipes.stdout_pipe),
                "--inherit-fd",
                pipe_key(kStderrFd, info.pipes.stderr_pipe),
                "--inherit-fd",
                pipe_key(kStatusFd, info.pipes.status_pipe)};
  spawn.fds = {{in_r.get(), kStdinFd},
               {out_w.get(), kStdoutFd},
               {err_w.get(), kStderrFd},
               {status_w.get(), kStatusFd}};
  // The dump ran in the worker's network namespace (see checkpoint_worker), so the image
  // names none: the restored tree gets criu's, a fresh one with a loopback.
  spawn.new_net_ns = info.net_ns != 0;
  auto mounts =
      std::make_unique<CriuRestoreMounts>(work_dir + ".mnt", config.sandbox.scratch_bytes);
  for (auto& a : mounts->args()) spawn.args.push_back(kj::mv(a));
  install_criu_kdat(images_dir);
  spawn.cgroup_fd = cgroup->dir_fd();
  return run_criu(services, spawn)
      .then([&services, pidfile, config = kj::mv(config), adopt = kj::mv(adopt),
             root = kj::mv(root), mounts = kj::mv(mounts), cgroup = kj::mv(cgroup),
             proc = kj::mv(proc), in_r = kj::mv(in_r), out_w = kj::mv(out_w), err_w = kj::mv(err_w),
             status_w = kj::mv(status_w)](CriuRun run) mutable {
        root.reset();  // the restored namespace holds its own binds of these now
        mounts.reset();
        // criu's ends: the restored tree holds its own copies now.
        in_r = nullptr;
        out_w = nullptr;
        err_w = nullptr;
        status_w = nullptr;
        if (!run.ok()) {
          console_log("%s", run.describe("restore").c_str());
          KJ_FAIL_REQUIRE(run.describe("criu restore of worker " + config.name));
        }
        std::string pid_text = read_file(pidfile, 32);
        long pid = strtol(pid_text.c_str(), nullptr, 10);
        KJ_REQUIRE(pid > 1, "criu restore: no pid in its pidfile", pid_text);
        proc.pid = static_cast<pid_t>(pid);
        adopt(kj::refcounted<Worker>(services, config, kj::mv(cgroup), kj::mv(proc)));
        return run.duration_ns;
      });
}

// Writes the upload into a file; unpacks it on done() and restores.
class RestoreUpload final : public api::CriuImageUpload::Server {
 public:
  RestoreUpload(AgentServices& services, HandlerConfig config,
                kj::Function<void(kj::Own<Worker>)> adopt)
      : services_(services), config_(kj::mv(config)), adopt_(kj::mv(adopt)) {
    dir_ = fresh_criu_dir("restore-" + std::to_string(++services_.next_id));
    archive_path_ = dir_ + ".wci";
    unlink(archive_path_.c_str());
    int fd = open(archive_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) KJ_FAIL_SYSCALL("create", errno, archive_path_);
    archive_ = kj::AutoCloseFd(fd);
  }
  ~RestoreUpload() {
    archive_ = nullptr;
    unlink(archive_path_.c_str());
    remove_criu_dir(dir_);
  }

 protected:
  kj::Promise<void> write(WriteContext context) override {
    KJ_REQUIRE(!finished_, "criu upload: write after done");
    auto data = context.getParams().getData();
    KJ_REQUIRE(received_ + data.size() <= api::Agent::MAX_CRIU_IMAGE_BYTES,
               "criu upload: the image exceeds Agent.maxCriuImageBytes");
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(archive_.get(), data.begin() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) KJ_FAIL_SYSCALL("write the criu upload", errno, archive_path_);
      done += static_cast<size_t>(n);
    }
    received_ += data.size();
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext context) override {
    KJ_REQUIRE(!finished_, "criu upload: done twice");
    finished_ = true;
    uint64_t t0 = now_ns();
    WorkerInfo info = unpack();
    unpack_ns_ = now_ns() - t0;
    archive_ = nullptr;
    unlink(archive_path_.c_str());
    return restore_from_dir(services_, kj::mv(config_), dir_, dir_, info, kj::mv(adopt_))
        .then([this, context](uint64_t restore_ns) mutable {
          restore_ns_ = restore_ns;
          context.getResults().setRestoreNs(restore_ns_);
          context.getResults().setUnpackNs(unpack_ns_);
        });
  }

 private:
  WorkerInfo unpack() {
    KJ_REQUIRE(received_ > 0, "criu upload: empty image");
    void* map = mmap(nullptr, received_, PROT_READ, MAP_PRIVATE, archive_.get(), 0);
    if (map == MAP_FAILED) KJ_FAIL_SYSCALL("mmap the criu upload", errno);
    KJ_DEFER(munmap(map, received_));
    std::span<const uint8_t> bytes(static_cast<const uint8_t*>(map), received_);
    std::vector<api::CriuImageEntry> entries;
    try {
      entries = api::parse_criu_image(bytes, "criu upload");
    } catch (const std::exception& e) {
      KJ_FAIL_REQUIRE(e.what());
    }
    for (const auto& e : entries) copy_out(dir_ + "/" + e.name, e.offset, e.size);
    return parse_info(read_file(dir_ + "/" + kWorkerInfoFile, 4096));
  }

  // Copies `size` bytes of the archive from `offset` into a new file `path`, in the kernel
  // (the archive and the image directory share /run's tmpfs): copying through this process
  // costs a page fault per 4 KiB, which in a nested guest took a second for a 4 MiB image.
  void copy_out(const std::string& path, uint64_t offset, uint64_t size) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) KJ_FAIL_SYSCALL("create", errno, path);
    kj::AutoCloseFd out(fd);
    loff_t from = static_cast<loff_t>(offset);
    uint64_t left = size;
    while (left > 0) {
      ssize_t n = copy_file_range(archive_.get(), &from, fd, nullptr, left, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
        return copy_out_by_reads(fd, path, static_cast<uint64_t>(from), left);
      if (n < 0) KJ_FAIL_SYSCALL("copy_file_range", errno, path);
      KJ_REQUIRE(n > 0, "criu upload: the archive ended early", path);
      left -= static_cast<uint64_t>(n);
    }
  }

  void copy_out_by_reads(int fd, const std::string& path, uint64_t offset, uint64_t left) {
    std::vector<char> buffer(1 << 16);
    while (left > 0) {
      size_t want = std::min<uint64_t>(left, buffer.size());
      ssize_t n = pread(archive_.get(), buffer.data(), want, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) KJ_FAIL_SYSCALL("read the criu upload", errno, archive_path_);
      KJ_REQUIRE(n > 0, "criu upload: the archive ended early", path);
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::write(fd, buffer.data() + done, static_cast<size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) KJ_FAIL_SYSCALL("write", errno, path);
        done += w;
      }
      offset += static_cast<uint64_t>(n);
      left -= static_cast<uint64_t>(n);
    }
  }

  AgentServices& services_;
  HandlerConfig config_;
  kj::Function<void(kj::Own<Worker>)> adopt_;
  std::string dir_, archive_path_;
  kj::AutoCloseFd archive_;
  uint64_t received_ = 0;
  bool finished_ = false;
  uint64_t unpack_ns_ = 0, restore_ns_ = 0;
};

}  // namespace

kj::Promise<CheckpointResult> checkpoint_worker(AgentServices& services, Worker& worker) {
  KJ_REQUIRE(worker.alive(), "worker is not running", worker.config().name);
  auto result = kj::heap<CheckpointResult>();
  CheckpointResult* r = result.get();
  return worker
      .run_between_calls([&services, &worker, r]() -> kj::Promise<void> {
        KJ_REQUIRE(worker.alive(), "worker is not running", worker.config().name);
        r->dir = fresh_criu_dir("dump-" + std::to_string(++services.next_id));
        WorkerInfo info;
        info.pipes = worker.pipe_inodes();
        uint64_t own_net = net_ns_inode(getpid());
        uint64_t net = net_ns_inode(worker.pid());
        if (net != 0 && net != own_net) info.net_ns = net;
        CriuSpawn spawn;
        spawn.args = {"dump",         "--tree", std::to_string(worker.pid()),
                      "--images-dir", r->dir,   "--leave-running"};
        // criu runs in the worker's own network namespace (only a loopback), so it does not
        // dump it as a namespace: that would also dump its conntrack table, which the guest
        // kernel does not have (no NF_CONNTRACK: EINVAL), and lock it with iptables or
        // nftables. No lock is needed: the restore gives the worker a fresh namespace anyway,
        // and an established TCP connection (the one thing a lock protects) makes criu refuse
        // the dump without --tcp-established, which wisp does not pass.
        kj::AutoCloseFd net_fd;
        if (info.net_ns != 0) {
          std::string ns = "/proc/" + std::to_string(worker.pid()) + "/ns/net";
          int fd = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0) KJ_FAIL_SYSCALL("open", errno, ns);
          net_fd = kj::AutoCloseFd(fd);
          spawn.join_net_ns_fd = fd;
        }
        for (auto& a : criu_dump_externals(worker.pid())) spawn.args.push_back(kj::mv(a));
        auto started = run_criu(services, spawn);
        net_fd = nullptr;  // criu holds its own now
        return started.then([r, info](CriuRun run) {
          r->dump_ns = run.duration_ns;
          if (!run.ok()) {
            console_log("%s", run.describe("dump").c_str());
            KJ_FAIL_REQUIRE(run.describe("criu dump"));
          }
          write_file(r->dir + "/" + kWorkerInfoFile, format_info(info));
          save_criu_kdat(r->dir);
        });
      })
      .then([result = kj::mv(result)]() mutable { return kj::mv(*result); });
}

kj::Promise<SentImage> send_image(const std::string& dir, api::CriuImageSink::Client sink,
                                  uint64_t max_bytes) {
  auto sender = kj::heap<Sender>(kj::mv(sink));
  sender->dir = dir;
  sender->files = list_image(dir);
  SentImage sent;
  sent.bytes = api::kCriuImageMagic.size() + api::criu_image_end().size();
  for (const auto& f : sender->files)
    sent.bytes += api::criu_record_header(f.name, f.size).size() + f.size;
  sent.files = static_cast<uint32_t>(sender->files.size());
  KJ_REQUIRE(sent.bytes <= max_bytes, "the worker's CRIU image exceeds the size cap", sent.bytes,
             max_bytes);
  sender->pending = std::string(api::kCriuImageMagic);
  auto done = sender->pump();
  return done.attach(kj::mv(sender)).then([sent]() { return sent; });
}

kj::Promise<uint64_t> restore_worker_from_dir(AgentServices& services, HandlerConfig config,
                                              const std::string& images_dir,
                                              const std::string& work_dir,
                                              kj::Function<void(kj::Own<Worker>)> adopt) {
  WorkerInfo info = parse_info(read_file(images_dir + "/" + kWorkerInfoFile, 4096));
  return restore_from_dir(services, kj::mv(config), images_dir, work_dir, info, kj::mv(adopt));
}

kj::Own<api::CriuImageUpload::Server> make_restore_upload(
    AgentServices& services, HandlerConfig config, kj::Function<void(kj::Own<Worker>)> adopt) {
  return kj::heap<RestoreUpload>(services, kj::mv(config), kj::mv(adopt));
}

kj::Promise<void> criu_check(AgentServices& services, api::CriuCheckResult::Builder out) {
  CriuSpawn version;
  version.args = {"--version"};
  return run_criu(services, version).then([&services, out](CriuRun v) mutable {
    std::string first = v.output.substr(0, v.output.find('\n'));
    out.setCriuVersion(first);
    CriuSpawn check;
    check.args = {"check"};
    return run_criu(services, check).then([out](CriuRun c) mutable {
      out.setPassed(c.ok());
      out.setOutput(c.output);
    });
  });
}

}  // namespace wisp::agent
