#include "shim/snapshot_start.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <thread>

#include "base/error.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "shim/serve_link.h"

namespace wisp::shim {

namespace {

constexpr uint32_t kGuestBaseMib = 256;
constexpr uint32_t kGuestOverheadMib = 64;  // the agent, page tables, the writable layer's start
constexpr uint64_t kTemplateBootTimeoutMs = 600000;  // TCG in the testbed boots slowly

double ms_since(const timespec& t0) {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec - t0.tv_sec) * 1e3 +
         static_cast<double>(t.tv_nsec - t0.tv_nsec) / 1e6;
}

timespec now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}

// Template builds report progress; the shim only logs the end.
class QuietProgress final : public api::serve::ProgressSink::Server {
 protected:
  kj::Promise<void> event(EventContext) override { return kj::READY_NOW; }
  kj::Promise<void> done(DoneContext) override { return kj::READY_NOW; }
};

bool is_not_found(const kj::Exception& e) {
  return std::string(e.getDescription().cStr()).find("not-found") != std::string::npos;
}

bool is_exists(const kj::Exception& e) {
  return std::string(e.getDescription().cStr()).find("already exists") != std::string::npos;
}

// Made or found; throws Error with serve's message.
bool ensure_template(const std::string& serve_socket, const std::string& name,
                     const ContainerStart& start) {
  auto io = kj::setupAsyncIo();
  ServeLink link(*io.provider, serve_socket);
  api::serve::Wisp::Client wisp = link.connect().wait(io.waitScope);
  auto templates = wisp.templatesRequest().send().wait(io.waitScope).getTemplates();
  auto got = templates.getRequest();
  got.setName(name);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { got.send().wait(io.waitScope); })) {
    if (!is_not_found(*e))
      throw Error("template " + name + ": " + std::string(e->getDescription().cStr()));
  } else {
    return false;
  }
  auto create = templates.createRequest();
  auto spec = create.initSpec();
  spec.setName(name);
  spec.setMode("exec");
  auto argv = spec.initArgv(static_cast<unsigned>(start.args.size()));
  for (unsigned i = 0; i < argv.size(); ++i) argv.set(i, start.args[i]);
  auto env = spec.initEnv(static_cast<unsigned>(start.env.size()));
  for (unsigned i = 0; i < env.size(); ++i) env.set(i, start.env[i]);
  spec.setWarmup(0);
  auto drives = spec.initDrives(1);
  drives.set(0, start.image_path + ",ro");
  uint64_t limit_mib = start.sandbox.memory_bytes >> 20;
  spec.setMemMib(
      static_cast<uint32_t>(std::max<uint64_t>(kGuestBaseMib, limit_mib + kGuestOverheadMib)));
  spec.setBootTimeoutMs(kTemplateBootTimeoutMs);
  fill_exec_sandbox(spec.initHandlerSandbox(), start.sandbox);
  create.setProgress(kj::heap<QuietProgress>());
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { create.send().wait(io.waitScope); })) {
    // Another host's shim (the store is shared) made it meanwhile: it is there to use.
    if (is_exists(*e)) return false;
    throw Error("making template " + name +
                " in wisp serve: " + std::string(e->getDescription().cStr()));
  }
  return true;
}

}  // namespace

std::string template_name_for(const ContainerStart& start) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw Error("template name: sha256 (libcrypto) failed");
  auto add = [&](const std::string& s) {
    uint64_t n = s.size();  // length-prefixed: no two field sequences hash alike
    EVP_DigestUpdate(ctx.get(), &n, sizeof(n));
    EVP_DigestUpdate(ctx.get(), s.data(), s.size());
  };
  add("wisp-container-template-v1");
  add(start.image_key);
  add("args " + std::to_string(start.args.size()));
  for (const auto& a : start.args) add(a);
  add("env " + std::to_string(start.env.size()));
  for (const auto& e : start.env) add(e);
  const OciSandbox& s = start.sandbox;
  add(s.cwd);
  std::string ids = std::to_string(s.uid) + ":" + std::to_string(s.gid);
  for (uint32_t g : s.additional_gids) ids += "," + std::to_string(g);
  add(ids);
  add(std::to_string(s.memory_bytes) + " " + std::to_string(s.pids) + " " +
      std::to_string(s.open_files) + " " + std::to_string(s.cpu_time_ms));
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(ctx.get(), d, &size) != 1)
    throw Error("template name: sha256 (libcrypto) failed");
  return "ctr-" + hex_bytes(std::span<const uint8_t>(d, size)).substr(0, 40);
}

void fill_exec_sandbox(api::serve::ExecSandbox::Builder out, const OciSandbox& s) {
  out.setRootDevice(kContainerRootDevice);
  out.setCwd(s.cwd);
  out.setUid(s.uid);
  out.setGid(s.gid);
  auto groups = out.initAdditionalGids(static_cast<unsigned>(s.additional_gids.size()));
  for (unsigned i = 0; i < groups.size(); ++i) groups.set(i, s.additional_gids[i]);
  out.setMemoryBytes(s.memory_bytes);
  out.setPids(s.pids);
  out.setCpuTimeMs(s.cpu_time_ms);
  out.setOpenFiles(s.open_files);
}

PreparedStart prepare_start(const RootfsSource& source, const RootfsCache& cache,
                            const std::string& serve_socket, std::vector<std::string> args,
                            std::vector<std::string> env, const OciSandbox& sandbox) {
  if (serve_socket.empty())
    throw Error("WISP_SERVER is not set: containerd-shim-wisp-v2 needs wisp serve's socket");
  PreparedStart out;
  timespec t0 = now();
  out.image = ensure_rootfs_image(source, cache);
  out.image_ms = ms_since(t0);
  ContainerStart start{out.image.path, out.image.key, std::move(args), std::move(env), sandbox};
  out.template_name = template_name_for(start);
  timespec t1 = now();
  // One first start per template on this host builds; the others wait here and find it.
  std::string lock_path = cache.dir + "/." + out.template_name + ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) throw_errno("template lock " + lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_errno("template lock " + lock_path);
  }
  out.template_made = ensure_template(serve_socket, out.template_name, start);
  out.template_ms = ms_since(t1);
  return out;
}

kj::Promise<PreparedStart> prepare_start_async(RootfsSource source, RootfsCache cache,
                                               std::string serve_socket,
                                               std::vector<std::string> args,
                                               std::vector<std::string> env, OciSandbox sandbox) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<PreparedStart>();
  // Held by pointer: kj::Own's destructor may throw, which std::thread's state may not.
  auto* fulfiller =
      new kj::Own<kj::CrossThreadPromiseFulfiller<PreparedStart>>(kj::mv(paf.fulfiller));
  std::thread([fulfiller, source = std::move(source), cache = std::move(cache),
               serve_socket = std::move(serve_socket), args = std::move(args), env = std::move(env),
               sandbox = std::move(sandbox)]() mutable {
    auto& f = *fulfiller;
    try {
      f->fulfill(
          prepare_start(source, cache, serve_socket, std::move(args), std::move(env), sandbox));
    } catch (const Error& e) {
      f->reject(KJ_EXCEPTION(FAILED, e.what()));
    } catch (const kj::Exception& e) {
      f->reject(kj::cp(e));
    } catch (const std::exception& e) {
      f->reject(KJ_EXCEPTION(FAILED, e.what()));
    }
    delete fulfiller;
  }).detach();
  return kj::mv(paf.promise);
}

}  // namespace wisp::shim
