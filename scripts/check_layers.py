#!/usr/bin/env python3
"""Checks that every C++ file includes only what its layer may see.

The layers are the CMake library targets (base/, vmm/, snapshot/, api/, manager/, cli/ and
agent/ CMakeLists.txt); a folder belongs to one of them. A file may include headers of its own
layer and of the layers it depends on, nothing else. The table below is the one place this is
written down; the CMake targets link the same graph, so a forbidden include is caught here even
when the linker would not notice (a header only include). The build runs it (target
wisp_layer_check, which wisp depends on) and so does `make lint`. Exits 1 listing each
offending include, 0 otherwise.
"""
import pathlib
import re
import subprocess
import sys

# Layer: (folders it owns, layers it may include). Longest folder prefix wins. The comment
# after each names the CMake target that builds it.
LAYERS = {
    "base": (["base/"], []),  # wisp_base
    "kvm": (["vmm/kvm/"], ["base"]),  # wisp_kvm
    "devices": (["vmm/bus/", "vmm/devices/", "vmm/event/"], ["base"]),  # wisp_devices
    "boot": (["vmm/memory/", "vmm/arch/", "vmm/boot/", "vmm/acpi/"],
             ["base", "kvm", "devices"]),  # wisp_boot
    "virtio": (["vmm/virtio/"], ["base", "devices", "boot"]),  # wisp_virtio
    "api": (["api/"], ["base"]),  # wisp_api_schema (generated), wisp_api
    # The jail: namespaces, root, cgroup, uid, capabilities, seccomp. Knows no machine.
    "jail": (["vmm/jail/"], ["base"]),  # wisp_jail
    # The State of the whole machine, plain data: what the snapshot format encodes.
    "machine-state": (["vmm/machine/machine_state.h"],
                      ["base", "kvm", "devices", "boot", "virtio"]),  # wisp_machine_state
    "machine": (["vmm/machine/", "vmm/vcpu/", "vmm/control/"],
                ["base", "kvm", "devices", "boot", "virtio", "api", "machine-state"]),  # wisp_machine
    # The snapshot format sees each component's State types (header-only plain data), never a
    # live machine.
    "snapshot": (["snapshot/"],
                 ["base", "kvm", "devices", "boot", "virtio", "machine-state"]),  # wisp_snapshot
    "vmm-main": (["vmm/main/"], ["base", "kvm", "devices", "boot", "virtio", "machine", "api",
                                 "snapshot", "machine-state", "jail"]),  # wisp_vmm_main
    # A VM's own network on the host: namespace, veth, nftables (bare --net).
    "host_net": (["manager/host_net/"], ["base"]),  # wisp_host_net
    "manager": (["manager/"], ["base", "api", "snapshot", "machine-state", "host_net"]),  # wisp_manager
    # `wisp serve`'s engine: the Wisp API (api/wisp.capnp) served over the manager library.
    "service": (["manager/service/"], ["base", "api", "manager"]),  # wisp_service
    # The HTTP/JSON gateway: HTTP routes onto a Wisp capability, nothing of how it is served.
    "gateway": (["manager/http_gateway/"], ["base", "api"]),  # wisp_http_gateway
    "cli": (["cli/"], ["base", "api", "manager", "service", "gateway", "host_net"]),  # wisp_cli, wisp
    "agent": (["agent/"], ["base", "api"]),  # wisp_agent_logic, wisp-agent
    # containerd's runtime v2 shim: a front end like cli/, over base/, api/ and manager/.
    "shim": (["shim/"], ["base", "api", "manager"]),  # wisp_shim, containerd-shim-wisp-v2
}


def layer_of(path):
    best, best_len = None, -1
    for name, (folders, _) in LAYERS.items():
        for f in folders:
            if path.startswith(f) and len(f) > best_len:
                best, best_len = name, len(f)
    return best


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    files = subprocess.run(["git", "ls-files", "*.cc", "*.h"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    include = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    bad = []
    for f in files:
        layer = layer_of(f)
        if layer is None:
            continue  # tests, guest tools: may include anything
        allowed = {layer, *LAYERS[layer][1]}
        for n, line in enumerate((root / f).read_text().splitlines(), 1):
            m = include.match(line)
            if not m:
                continue
            target = layer_of(m.group(1))
            if target is not None and target not in allowed:
                bad.append(f"{f}:{n}: layer '{layer}' includes {m.group(1)} (layer '{target}')")
    for b in bad:
        print(b)
    if bad:
        print(f"check_layers: {len(bad)} include(s) cross a layer boundary "
              "(scripts/check_layers.py lists what each layer may see)")
        return 1
    print(f"check_layers: {len(files)} files, every include within its layer's reach")
    return 0


if __name__ == "__main__":
    sys.exit(main())
