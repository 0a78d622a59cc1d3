// Conversions between api/wisp.capnp's structs and the engine's plain types, shared by the
// Wisp, Templates and Sandbox servers.
#pragma once

#include <string>

#include "api/wisp.capnp.h"
#include "manager/service/service.h"

namespace wisp::service {

std::string text(capnp::Text::Reader t);
std::string data(capnp::Data::Reader d);

// The request's fields, checked ("too-large"/"bad-request").
CallRequest call_request(api::serve::InvokeRequest::Reader r);
void fill_response(api::serve::InvokeResponse::Builder out, const client::InvokeResult& r,
                   const CallTimings& t);
void fill_template_info(api::serve::TemplateInfo::Builder out, const manager::TemplateInfo& t,
                        const Service& service);
void fill_sandbox_info(api::serve::SandboxInfo::Builder out, const SandboxEntry& e);

}  // namespace wisp::service
