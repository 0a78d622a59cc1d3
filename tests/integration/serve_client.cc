// wisp-serve-client: a tiny Cap'n Proto client of `wisp serve` for the integration tests. It
// prints each answer as the JSON form of its api/wisp.capnp struct (capnp's JSON codec), one
// per line on stdout, so a Python test can check every field; an RPC exception is printed as
// {"exception": "..."} with exit status 3.
//
//   wisp-serve-client SOCKET version|stats|list
//   wisp-serve-client SOCKET invoke NAME PAYLOAD [TIMEOUT_MS [DEADLINE_MS]]
//   wisp-serve-client SOCKET parallel-invoke NAME PAYLOAD N   (N calls at once, one line each)
//   wisp-serve-client SOCKET get|remove NAME
//   wisp-serve-client SOCKET create NAME ARGV0 [ARGS...]   (KERNEL=PATH: its kernel)
//   wisp-serve-client SOCKET sandbox NAME   (create, exec, invoke, put/get a file, info, kill)
//   wisp-serve-client SOCKET hold NAME MS   (an invoke dropped after MS: a client that leaves)
#include <capnp/compat/json.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "api/wisp.capnp.h"

namespace {

namespace api = wisp::api::serve;

capnp::JsonCodec& codec() {
  static capnp::JsonCodec* c = [] {
    auto* c = new capnp::JsonCodec;
    c->handleByAnnotation<api::InvokeResponse>();
    c->handleByAnnotation<api::Stats>();
    c->handleByAnnotation<api::TemplateInfo>();
    c->handleByAnnotation<api::SandboxInfo>();
    c->handleByAnnotation<api::ServerInfo>();
    return c;
  }();
  return *c;
}

template <typename Reader>
void print(Reader r) {
  std::printf("%s\n", codec().encode(r).cStr());
  std::fflush(stdout);
}

void print_exception(const kj::Exception& e) {
  std::string d = e.getDescription().cStr();
  std::string esc;
  for (char c : d) {
    if (c == '"' || c == '\\') esc += '\\';
    if (c == '\n') {
      esc += "\\n";
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20) continue;
    esc += c;
  }
  std::printf("{\"exception\": \"%s\"}\n", esc.c_str());
  std::fflush(stdout);
}

// Prints each progress line as it comes.
class PrintProgress final : public api::ProgressSink::Server {
 public:
  kj::Promise<void> event(EventContext context) override {
    std::string m = context.getParams().getMessage().cStr();
    for (char& c : m)
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = ' ';
    std::printf("{\"progress\": \"%s\"}\n", m.c_str());
    std::fflush(stdout);
    return kj::READY_NOW;
  }
  kj::Promise<void> done(DoneContext) override {
    std::printf("{\"progress_done\": true}\n");
    return kj::READY_NOW;
  }
};

capnp::Data::Reader bytes(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

kj::Promise<void> invoke(api::Wisp::Client& wisp, const std::string& name,
                         const std::string& payload, uint64_t timeout, uint64_t deadline) {
  auto req = wisp.invokeRequest();
  req.setTemplate(name);
  auto r = req.initRequest();
  r.setPayload(bytes(payload));
  r.setTimeoutMs(timeout);
  r.setDeadlineMs(deadline);
  return req.send().then([](auto resp) { print(resp.getResponse()); });
}

int run(int argc, char** argv, kj::AsyncIoContext& io) {
  std::string socket = argv[1], cmd = argv[2];
  auto addr =
      io.provider->getNetwork().parseAddress(kj::str("unix:", socket.c_str())).wait(io.waitScope);
  auto stream = addr->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  api::Wisp::Client wisp = client.bootstrap().castAs<api::Wisp>();
  auto& ws = io.waitScope;
  auto arg = [&](int i) { return std::string(i < argc ? argv[i] : ""); };
  auto num = [&](int i, uint64_t d) { return i < argc ? std::strtoull(argv[i], nullptr, 10) : d; };
  if (cmd == "version") {
    print(wisp.versionRequest().send().wait(ws).getInfo());
  } else if (cmd == "stats") {
    print(wisp.statsRequest().send().wait(ws).getStats());
  } else if (cmd == "list") {
    auto t = wisp.templatesRequest().send().getTemplates();
    auto resp = t.listRequest().send().wait(ws);  // kept: the list reads from it
    for (auto i : resp.getTemplates()) print(i);
  } else if (cmd == "get") {
    auto t = wisp.templatesRequest().send().getTemplates();
    auto req = t.getRequest();
    req.setName(arg(3));
    print(req.send().wait(ws).getTemplate());
  } else if (cmd == "remove") {
    auto t = wisp.templatesRequest().send().getTemplates();
    auto req = t.removeRequest();
    req.setName(arg(3));
    req.send().wait(ws);
    std::printf("{\"removed\": true}\n");
  } else if (cmd == "create") {
    // create NAME ARGV0 [ARGS...]: a template over the API (KERNEL=... in the environment
    // names a kernel, to check the allowed directories).
    auto t = wisp.templatesRequest().send().getTemplates();
    auto req = t.createRequest();
    auto spec = req.initSpec();
    spec.setName(arg(3));
    auto av = spec.initArgv(static_cast<unsigned>(argc > 4 ? argc - 4 : 0));
    for (int i = 4; i < argc; ++i) av.set(static_cast<unsigned>(i - 4), argv[i]);
    spec.setMemMib(128);
    spec.setWarmup(1);
    if (const char* k = std::getenv("KERNEL")) spec.setKernel(k);
    req.setProgress(kj::heap<PrintProgress>());
    print(req.send().wait(ws).getTemplate());
  } else if (cmd == "invoke") {
    invoke(wisp, arg(3), arg(4), num(5, 30000), num(6, 30000)).wait(ws);
  } else if (cmd == "parallel-invoke") {
    kj::Vector<kj::Promise<void>> calls;
    for (uint64_t i = 0; i < num(5, 1); ++i)
      calls.add(invoke(wisp, arg(3), arg(4), 30000, 120000).catch_([](kj::Exception&& e) {
        print_exception(e);
      }));
    kj::joinPromises(calls.releaseAsArray()).wait(ws);
  } else if (cmd == "hold") {
    auto call = invoke(wisp, arg(3), "", 60000, 30000);
    auto timer = io.provider->getTimer().afterDelay(num(4, 1000) * kj::MILLISECONDS);
    call.exclusiveJoin(kj::mv(timer)).wait(ws);
    std::printf("{\"dropped\": true}\n");
  } else if (cmd == "sandbox") {
    auto sbs = wisp.sandboxesRequest().send().getSandboxes();
    auto creq = sbs.createRequest();
    creq.setTemplate(arg(3));
    auto created = creq.send().wait(ws);
    print(created.getInfo());
    api::Sandbox::Client sb = created.getSandbox();
    auto ereq = sb.execRequest();
    auto e = ereq.initRequest();
    auto argvl = e.initArgv(3);
    argvl.set(0, "sh");
    argvl.set(1, "-c");
    argvl.set(2, "cat; echo from-exec");
    e.setStdin(bytes("stdin-data "));
    print(ereq.send().wait(ws).getResponse());
    auto ireq = sb.invokeRequest();
    ireq.initRequest().setPayload(bytes("sandbox-payload"));
    print(ireq.send().wait(ws).getResponse());
    auto preq = sb.putFileRequest();
    preq.setPath("dir-less.txt");
    preq.setData(bytes("file-content"));
    try {
      preq.send().wait(ws);
      auto greq = sb.getFileRequest();
      greq.setPath("dir-less.txt");
      auto got = greq.send().wait(ws).getData();
      std::printf("{\"file\": \"%s\"}\n",
                  std::string(reinterpret_cast<const char*>(got.begin()), got.size()).c_str());
    } catch (const kj::Exception& ex) {
      print_exception(ex);  // an agent without putFile (helper A's) answers unimplemented
    }
    auto bad = sb.putFileRequest();
    bad.setPath("../escape");
    bad.setData(bytes("x"));
    try {
      bad.send().wait(ws);
      std::printf("{\"bad_path_accepted\": true}\n");
    } catch (const kj::Exception& ex) {
      print_exception(ex);
    }
    auto lreq = sbs.listRequest();
    auto listed = lreq.send().wait(ws);
    for (auto i : listed.getSandboxes()) print(i);
    print(sb.infoRequest().send().wait(ws).getInfo());
    sb.killRequest().send().wait(ws);
    try {
      sb.infoRequest().send().wait(ws);
      std::printf("{\"alive_after_kill\": true}\n");
    } catch (const kj::Exception& ex) {
      print_exception(ex);
    }
  } else {
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: wisp-serve-client SOCKET COMMAND [ARGS]\n");
    return 2;
  }
  auto io = kj::setupAsyncIo();
  try {
    return run(argc, argv, io);
  } catch (const kj::Exception& e) {
    print_exception(e);
    return 3;
  }
}
