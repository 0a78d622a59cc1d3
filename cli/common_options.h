// The options several commands share, declared once: the VM a function runs in (`wisp exec`,
// `wisp template create`: passed on to wisp-vmm run), the handler's environment and mode.
#pragma once

#include <string>
#include <vector>

#include "base/options.h"
#include "manager/vm_spec.h"

namespace wisp::cli {

// --kernel, --initrd, --rootfs, --cmdline, --raw-cmdline, --mem, --vcpus, --drive, --net, --no-rng,
// --vsock-cid, --console none|FILE and -v/--verbose, into `vm`.
void add_vm_options(OptionParser& parser, manager::VmSpec* vm);

// What add_vm_options cannot check option by option: --allow without a bare --net, a bare
// --net beside --net tap=. Throws UsageError.
void check_vm_options(const manager::VmSpec& vm);

// The help text for add_vm_options' options, the jail's included.
std::string vm_options_help();

// --env KEY=VALUE (repeatable), appended to `env`.
void add_env_option(OptionParser& parser, std::vector<std::string>* env);

// --mode exec|worker; `worker` is set for worker.
void add_mode_option(OptionParser& parser, std::string* mode);

}  // namespace wisp::cli
