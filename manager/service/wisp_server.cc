#include "manager/service/wisp_server.h"

#include <set>

#include "base/error.h"
#include "base/log.h"
#include "base/version.h"
#include "manager/service/api_convert.h"
#include "manager/service/exec_sandbox.h"

namespace wisp::service {
namespace {

constexpr uint64_t kMaxBootTimeoutMs = 600000;
constexpr uint32_t kMaxWarmup = 1000;
constexpr size_t kMaxArgs = 1024;

// Runs `fn`, turning a wisp::Error into the API's exception (its message already starts with
// the error word where one applies).
template <typename Fn>
auto api_call(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw_api_error(e.what());
  }
}

std::vector<std::string> strings(capnp::List<capnp::Text>::Reader list, const char* field) {
  if (list.size() > kMaxArgs)
    throw Error(std::string("bad-request: ") + field + ": more than " + std::to_string(kMaxArgs) +
                " entries");
  std::vector<std::string> out;
  for (auto t : list) {
    std::string s = text(t);
    if (s.find('\0') != std::string::npos || s.find('\n') != std::string::npos)
      throw Error(std::string("bad-request: ") + field + ": an entry contains a NUL or newline");
    out.push_back(std::move(s));
  }
  return out;
}

class TemplatesImpl final : public api::serve::Templates::Server {
 public:
  explicit TemplatesImpl(Service& s) : s_(s) {}

  kj::Promise<void> create(CreateContext context) override {
    s_.check_accepting();
    auto params = context.getParams();
    manager::TemplateSpec spec =
        api_call([&] { return template_spec(params.getSpec(), s_.allowed_dirs()); });
    spec.vm.jail = s_.options().jail;
    api::serve::ProgressSink::Client sink = params.getProgress();
    uint64_t mem = spec.vm.mem_bytes >> 20;
    std::string name = spec.name;
    auto in_flight = kj::heap<Service::InFlight>(s_, name);
    // A template build is a VM like any other: it is admitted against the same budget.
    return s_.admission()
        .acquire(name, mem, 30000 * kj::MILLISECONDS)
        .then([this, spec = std::move(spec), sink](kj::Own<Ticket> ticket) mutable {
          auto shared = std::make_shared<api::serve::ProgressSink::Client>(sink);
          auto progress = [shared](const std::string& message) {
            auto req = shared->eventRequest();
            req.setMessage(message);
            return req.send();
          };
          // Boot it in a pre-jailed VMM of the pool when one fits (spawn and jail off its path).
          auto standby = s_.starter().take_for_boot(manager::template_vm(spec));
          if (standby)
            LOG_INFO("template %s: booted by a standby VMM of the pool", spec.name.c_str());
          return s_.builds()
              .start(std::move(spec), progress, std::move(standby))
              .attach(kj::mv(ticket));
        })
        .then([this, context, sink](manager::TemplateCreated created) mutable {
          auto results = context.getResults();
          fill_template_info(results.initTemplate(), created.info, s_);
          // What `wisp template create --server --timings` prints, as the standalone does.
          results.setBootMs(created.boot_ms);
          results.setWarmupMs(created.warmup_ms);
          if (created.info.snapshot_ms == 0)
            results.getTemplate().setSnapshotMs(created.snapshot_ms);
          return sink.doneRequest().send().ignoreResult().catch_([](kj::Exception&&) {});
        })
        .attach(kj::mv(in_flight));
  }

  kj::Promise<void> list(ListContext context) override {
    std::vector<manager::TemplateInfo> infos;
    api_call([&] {
      for (const std::string& n : manager::template_names()) {
        try {
          infos.push_back(manager::read_template(n));
        } catch (const Error&) {
          // Removed meanwhile, or damaged: not listed (get names the fault).
        }
      }
      return 0;
    });
    auto out = context.getResults().initTemplates(static_cast<unsigned>(infos.size()));
    for (size_t i = 0; i < infos.size(); ++i)
      fill_template_info(out[static_cast<unsigned>(i)], infos[i], s_);
    return kj::READY_NOW;
  }

  kj::Promise<void> get(GetContext context) override {
    manager::OpenTemplate t = s_.open(text(context.getParams().getName()));
    fill_template_info(context.getResults().initTemplate(), t.info, s_);
    return kj::READY_NOW;
  }

  kj::Promise<void> remove(RemoveContext context) override {
    std::string name = text(context.getParams().getName());
    s_.open(name);  // bad-request or not-found first
    api_call([&] {
      try {
        manager::remove_template(name);
      } catch (const Error& e) {
        std::string m = e.what();
        throw Error((m.find("not found") != std::string::npos ? "not-found: " : "bad-request: ") +
                    m);
      }
      return 0;
    });
    return kj::READY_NOW;
  }

 private:
  Service& s_;
};

class WispImpl final : public api::serve::Wisp::Server {
 public:
  explicit WispImpl(Service& s) : s_(s) {}

  kj::Promise<void> version(VersionContext context) override {
    auto info = context.getResults().initInfo();
    info.setApiVersion(api::serve::API_VERSION);
    info.setWispVersion(kWispVersion);
    info.setHome(manager::wisp_home());
    info.setDraining(s_.draining());
    return kj::READY_NOW;
  }

  kj::Promise<void> templates(TemplatesContext context) override {
    context.getResults().setTemplates(make_templates_server(s_));
    return kj::READY_NOW;
  }

  kj::Promise<void> sandboxes(SandboxesContext context) override {
    context.getResults().setSandboxes(make_sandboxes_server(s_));
    return kj::READY_NOW;
  }

  kj::Promise<void> invoke(InvokeContext context) override {
    auto params = context.getParams();
    std::string name = text(params.getTemplate());
    CallRequest request = call_request(params.getRequest());
    context.releaseParams();  // the payload is copied: free the message early
    // A client that drops the call or disconnects gets its clone destroyed: capnp 0.9 cancels
    // a server's promise (destroying the clone it holds) only when the call allows it.
    context.allowCancellation();
    return s_.invoke(name, std::move(request)).then([context](CallResult r) mutable {
      fill_response(context.getResults().initResponse(), r.result, r.timings);
    });
  }

  kj::Promise<void> stats(StatsContext context) override {
    auto out = context.getResults().initStats();
    Admission& a = s_.admission();
    out.setVmsRunning(a.vms());
    out.setMemoryCommittedMib(a.memory_mib());
    out.setMaxVms(a.limits().max_vms);
    out.setMaxMemoryMib(a.limits().max_memory_mib);
    out.setPoolIdle(s_.starter().idle());
    out.setPoolTarget(s_.options().pool);
    if (const manager::HugePageLayer* layer = s_.starter().huge_layer()) {
      out.setHugePageLayerFiles(static_cast<uint32_t>(layer->copies()));
      out.setHugePageLayerBytes(layer->bytes());
    }
    out.setSandboxes(static_cast<uint32_t>(s_.sandboxes().size()));
    out.setWaiting(a.waiting());
    out.setDraining(s_.draining());
    // Every template in the store, and any that has outcomes or warm clones (removed since).
    std::set<std::string> names;
    try {
      for (const std::string& n : manager::template_names()) names.insert(n);
    } catch (const Error&) {
    }
    for (const auto& [n, o] : s_.stats().outcomes()) names.insert(n);
    for (const auto& [n, c] : s_.stats().criu_fallbacks()) names.insert(n);
    for (const auto& [n, w] : s_.options().warm) names.insert(n);
    auto ts = out.initTemplates(static_cast<unsigned>(names.size()));
    unsigned i = 0;
    for (const std::string& n : names) {
      auto t = ts[i++];
      t.setName(n);
      t.setWarmReady(s_.warm_ready(n));
      t.setWarmTarget(s_.warm_target(n));
      t.setInFlight(s_.in_flight(n));
      auto fb = s_.stats().criu_fallbacks().find(n);
      t.setCriuFallbacks(fb == s_.stats().criu_fallbacks().end() ? 0 : fb->second);
      auto touched = s_.stats().warm_touched_pages().find(n);
      if (touched != s_.stats().warm_touched_pages().end()) t.setWarmTouchedPages(touched->second);
      auto it = s_.stats().outcomes().find(n);
      if (it == s_.stats().outcomes().end()) {
        t.initOutcomes(0);
        continue;
      }
      auto os = t.initOutcomes(static_cast<unsigned>(it->second.size()));
      unsigned j = 0;
      for (const auto& [outcome, count] : it->second) {
        os[j].setOutcome(outcome);
        os[j++].setCount(count);
      }
    }
    auto stages = out.initStages(static_cast<unsigned>(std::size(kStages)));
    unsigned k = 0;
    for (const char* stage : kStages) {
      auto h = stages[k++];
      h.setStage(stage);
      Histogram empty;
      auto found = s_.stats().stages().find(stage);
      const Histogram& hist = found == s_.stats().stages().end() ? empty : found->second;
      const auto& bounds = Histogram::bounds();
      auto b = h.initBucketBounds(static_cast<unsigned>(bounds.size()));
      for (size_t x = 0; x < bounds.size(); ++x) b.set(static_cast<unsigned>(x), bounds[x]);
      std::vector<uint64_t> cum = hist.cumulative();
      auto c = h.initBucketCounts(static_cast<unsigned>(cum.size()));
      for (size_t x = 0; x < cum.size(); ++x) c.set(static_cast<unsigned>(x), cum[x]);
      h.setSum(hist.sum());
      h.setCount(hist.count());
    }
    return kj::READY_NOW;
  }

 private:
  Service& s_;
};

}  // namespace

manager::TemplateSpec template_spec(api::serve::TemplateSpec::Reader spec,
                                    const AllowedDirs& allowed) {
  manager::TemplateSpec out;
  out.name = text(spec.getName());
  try {
    manager::check_template_name(out.name);
  } catch (const Error& e) {
    throw Error(std::string("bad-request: name: ") + e.what());
  }
  out.rebuild = spec.getRebuild();
  out.mode = text(spec.getMode());
  if (out.mode != "exec" && out.mode != "worker")
    throw Error("bad-request: mode '" + out.mode.substr(0, 64) + "': expected exec or worker");
  out.argv = strings(spec.getArgv(), "argv");
  if (out.argv.empty() || out.argv[0].empty())
    throw Error("bad-request: argv: the handler command is empty");
  out.env = strings(spec.getEnv(), "env");
  for (const std::string& e : out.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      throw Error("bad-request: env '" + e.substr(0, 64) + "': expected KEY=value");
  out.warmup = spec.getWarmup();
  if (out.warmup > kMaxWarmup)
    throw Error("bad-request: warmup " + std::to_string(out.warmup) + ": at most " +
                std::to_string(kMaxWarmup));
  if (spec.getWarmupPayload().size() > api::serve::Wisp::MAX_PAYLOAD_BYTES)
    throw Error("too-large: warmupPayload is over Wisp.maxPayloadBytes");
  out.warmup_payload = data(spec.getWarmupPayload());
  if (spec.getKernel().size() > 0) out.vm.kernel = allowed.check("kernel", text(spec.getKernel()));
  if (spec.getInitrd().size() > 0) out.vm.initrd = allowed.check("initrd", text(spec.getInitrd()));
  if (spec.getRootfs().size() > 0) out.vm.rootfs = allowed.check("rootfs", text(spec.getRootfs()));
  for (const std::string& d : strings(spec.getDrives(), "drives"))
    out.vm.drives.push_back(allowed.check_drive("drives", d));
  uint64_t mem_mib = spec.getMemMib() ? spec.getMemMib() : 256;
  if ((mem_mib << 20) < kMinGuestMemBytes || (mem_mib << 20) > kMaxGuestMemBytes)
    throw Error("bad-request: memMib " + std::to_string(mem_mib) + ": expected " +
                std::to_string(kMinGuestMemBytes >> 20) + " to " +
                std::to_string(kMaxGuestMemBytes >> 20));
  out.vm.mem_bytes = mem_mib << 20;
  out.vm.vcpus = spec.getVcpus() ? spec.getVcpus() : 1;
  if (out.vm.vcpus > kMaxGuestVcpus)
    throw Error("bad-request: vcpus " + std::to_string(out.vm.vcpus) + ": at most " +
                std::to_string(kMaxGuestVcpus));
  uint64_t boot = spec.getBootTimeoutMs();
  if (boot == 0 || boot > kMaxBootTimeoutMs)
    throw Error("bad-request: bootTimeoutMs " + std::to_string(boot) + ": expected 1 to " +
                std::to_string(kMaxBootTimeoutMs));
  out.boot_timeout = std::chrono::milliseconds(boot);
  if (spec.hasHandlerSandbox()) {
    if (out.mode != "exec") throw Error("bad-request: handlerSandbox: only for mode exec");
    apply_exec_sandbox(spec.getHandlerSandbox(), &out.handler_sandbox);
  }
  return out;
}

api::serve::Wisp::Client make_wisp_server(Service& service) { return kj::heap<WispImpl>(service); }

api::serve::Templates::Client make_templates_server(Service& service) {
  return kj::heap<TemplatesImpl>(service);
}

}  // namespace wisp::service
