// What wisp-agent does because it is the guest's PID 1: early mounts, the console, the
// power-off path, and boot-time bookkeeping.
#pragma once

#include <cstdint>

namespace wisp::agent {

// On a read-only root (a root filesystem image), first switches into a tmpfs overlay of it
// (root_overlay.h). Then mounts proc, sysfs, devtmpfs, devpts, tmpfs on /tmp, /run and
// /dev/shm, and cgroup2; a filesystem already mounted there is fine. Makes sure fds 0-2 are
// the console.
void set_up_pid1();

// Ends the VM: kills every other process, syncs, then powers off when the guest has ACPI and
// otherwise reboots, which a microVM VMM (wisp, Firecracker) treats as the VM exiting.
[[noreturn]] void power_off();

// When the kernel printed "Run /init as init process" (or "Run <init=> as init process" for a
// root filesystem), printk clock, ns since boot, read from /dev/kmsg; 0 if it is not there.
uint64_t init_handover_ns();

// Writes "wisp-agent: <message>\n" to the console.
void console_log(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace wisp::agent
