#include "vmm/main/control_handler.h"

#include <cinttypes>
#include <cstdio>

#include "base/clock.h"
#include "base/version.h"
#include "snapshot/machine_snapshot.h"

namespace wisp {
namespace {

size_t count(const std::vector<bool>& v) {
  size_t n = 0;
  for (bool b : v) n += b;
  return n;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

std::string take_snapshot(Machine& machine, const ControlContext& ctx, std::string args) {
  bool diff = false;
  if (args.rfind("--diff ", 0) == 0) {
    diff = true;
    args.erase(0, 7);
  }
  const std::string& dir = args;
  if (dir.empty() || dir[0] != '/') return "error snapshot: expected an absolute directory path";
  if (diff && ctx.restored_from_dir.empty())
    return "error snapshot --diff: this VM was booted, not restored; a diff needs a parent";
  bool was_paused = machine.paused();
  uint64_t t0 = now_ns();
  machine.pause();
  double pause_ms = ms_since(t0);
  snapshot::SaveResult r;
  try {
    uint64_t t1 = now_ns();
    MachineState state = machine.save_state();
    double collect_ms = ms_since(t1);
    snapshot::SaveOptions options;
    options.diff = diff;
    options.parent_dir = ctx.restored_from_dir;
    options.parent_id = ctx.restored_from_id;
    options.creator_version = kWispVersion;
    r = snapshot::save_machine_snapshot(dir, state, machine.memory(), options);
    r.state_ms += collect_ms;
  } catch (...) {
    if (!was_paused) machine.resume();
    throw;
  }
  if (!was_paused) machine.resume();
  char buf[512];
  snprintf(buf, sizeof(buf),
           "{\"pause_ms\":%.3f,\"state_ms\":%.3f,\"memory_ms\":%.3f,\"total_ms\":%.3f,"
           "\"memory_file_bytes\":%" PRIu64 ",\"memory_disk_bytes\":%" PRIu64
           ",\"pages_written\":%" PRIu64 ",\"pages_in_layer\":%" PRIu64 ",\"diff\":%s",
           pause_ms, r.state_ms, r.memory_ms, ms_since(t0), r.memory_file_bytes,
           r.memory_disk_bytes, r.pages_written, r.pages_in_layer, diff ? "true" : "false");
  return "ok " + std::string(buf) + ",\"id\":" + json_string(r.id) + "}";
}

}  // namespace

ControlHandler make_control_handler(ControlContext context) {
  return [ctx = std::move(context)](Machine& machine, const std::string& line) -> std::string {
    std::string cmd = line.substr(0, line.find(' '));
    std::string args = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "";
    if (cmd == "ping") return "ok";
    if (cmd == "pause") {
      machine.pause();
      return "ok";
    }
    if (cmd == "resume") {
      machine.resume();
      return "ok";
    }
    if (cmd == "snapshot") return take_snapshot(machine, ctx, args);
    if (cmd == "stats") {
      const GuestMemory& mem = machine.memory();
      char buf[160];
      snprintf(buf, sizeof(buf),
               "ok {\"resident_pages\":%zu,\"written_pages\":%zu,\"pages\":%" PRIu64 "}",
               count(mem.resident_pages()), mem.is_file_private() ? count(mem.written_pages()) : 0,
               mem.page_count());
      return buf;
    }
    return "error unknown command '" + cmd + "' (ping, pause, resume, snapshot, stats)";
  };
}

}  // namespace wisp
