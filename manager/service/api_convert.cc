#include "manager/service/api_convert.h"

namespace wisp::service {
namespace {

capnp::Data::Reader bytes(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

template <typename List>
void set_list(List list, const std::vector<std::string>& v) {
  for (size_t i = 0; i < v.size(); ++i) list.set(static_cast<unsigned>(i), v[i]);
}

}  // namespace

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

std::string data(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

CallRequest call_request(api::serve::InvokeRequest::Reader r) {
  CallRequest c;
  if (r.getPayload().size() > api::serve::Wisp::MAX_PAYLOAD_BYTES)
    throw_api_error("too-large: the payload is " + std::to_string(r.getPayload().size()) +
                    " bytes; at most " + std::to_string(api::serve::Wisp::MAX_PAYLOAD_BYTES) +
                    " (Wisp.maxPayloadBytes)");
  c.payload = data(r.getPayload());
  c.timeout_ms = r.getTimeoutMs();
  c.deadline_ms = r.getDeadlineMs();
  return c;
}

void fill_response(api::serve::InvokeResponse::Builder out, const client::InvokeResult& r,
                   const CallTimings& t) {
  out.setStdout(bytes(r.out));
  out.setStderr(bytes(r.err));
  if (r.signaled)
    out.setSignal(r.signal);
  else
    out.setExitCode(r.exit_code);
  out.setTimedOut(r.timed_out);
  out.setOutputTruncated(r.output_truncated);
  out.setLimitExceeded(r.limit_exceeded);
  out.setError(r.error);
  out.setDurationNs(r.duration_ns);
  out.setPeakMemoryBytes(r.peak_memory_bytes);
  out.setCpuTimeNs(r.cpu_time_ns);
  auto tm = out.initTimings();
  tm.setQueueMs(t.queue_ms);
  tm.setRestoreMs(t.restore_ms);
  tm.setReconnectMs(t.reconnect_ms);
  tm.setInvokeMs(t.invoke_ms);
  tm.setTotalMs(t.total_ms);
  tm.setWarm(t.warm);
  tm.setPooled(t.pooled);
  tm.setConnectMs(t.connect_ms);
  tm.setResumeMs(t.resume_ms);
  tm.setReseedMs(t.reseed_ms);
  tm.setHandlerMs(t.handler_ms);
  tm.setWarmFilling(t.warm_filling);
  tm.setCriuFallback(t.criu_fallback);
  tm.setBootMs(t.boot_ms);
  tm.setCriuRestoreMs(t.criu_restore_ms);
  tm.setCriuGuestMs(t.criu_guest_ms);
  tm.setCriuUploadMs(t.criu_upload_ms);
  tm.setCriuUnpackMs(t.criu_unpack_ms);
  tm.setCriuSource(t.criu_source);
  tm.setCriuMountMs(t.criu_mount_ms);
  tm.setCriuDriveMs(t.criu_drive_ms);
  tm.setVcpuCounted(t.vcpu_counted);
  tm.setExits(t.exits);
  tm.setNestedPageFaults(t.nested_page_faults);
  tm.setWrittenPages(t.written_pages);
}

void fill_template_info(api::serve::TemplateInfo::Builder out, const manager::TemplateInfo& t,
                        const Service& service) {
  out.setName(t.name);
  out.setMode(t.mode);
  set_list(out.initArgv(static_cast<unsigned>(t.argv.size())), t.argv);
  set_list(out.initEnv(static_cast<unsigned>(t.env.size())), t.env);
  set_list(out.initDrives(static_cast<unsigned>(t.drives.size())), t.drives);
  out.setMemMib(t.mem_mib);
  out.setVcpus(t.vcpus);
  out.setGuest(t.guest);
  out.setCreatedUnix(t.created_unix);
  out.setParent(t.parent);
  out.setMemoryFileBytes(t.memory_file_bytes);
  out.setMemoryDiskBytes(t.memory_disk_bytes);
  out.setSnapshotMs(t.snapshot_ms);
  out.setWarm(service.warm_target(t.name));
  out.setWarmReady(service.warm_ready(t.name));
}

void fill_sandbox_info(api::serve::SandboxInfo::Builder out, const SandboxEntry& e) {
  out.setId(e.id);
  out.setTemplate(e.template_name);
  out.setState(e.state);
  out.setCreatedUnixMs(e.created_unix_ms);
  out.setExpiresUnixMs(e.expires_unix_ms);
  out.setMemMib(e.mem_mib);
  out.setInvocations(e.invocations);
}

}  // namespace wisp::service
