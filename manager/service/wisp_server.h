// api/wisp.capnp served over the engine (service.h): the bootstrap Wisp capability each
// connection of serve's socket gets, and the Templates, Sandboxes and Sandbox capabilities it
// hands out.
#pragma once

#include "api/wisp.capnp.h"
#include "manager/service/service.h"

namespace wisp::service {

api::serve::Wisp::Client make_wisp_server(Service& service);
api::serve::Templates::Client make_templates_server(Service& service);
api::serve::Sandboxes::Client make_sandboxes_server(Service& service);

// The manager's spec for an API TemplateSpec: every field checked, host files under an allowed
// directory. Throws wisp::Error "bad-request: FIELD ..." naming the field at fault.
manager::TemplateSpec template_spec(api::serve::TemplateSpec::Reader spec,
                                    const AllowedDirs& allowed);

}  // namespace wisp::service
