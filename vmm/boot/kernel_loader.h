// Puts a kernel, an initrd, the command line, the zero page and the MP table into guest memory,
// from files the user named (or descriptors a manager passed, a standby VMM's boot order: the
// path is then the name errors give). Every failure names the file and what is wrong with it. ACPI
// tables are the caller's (acpi/): the zero page only points at them.
#pragma once

#include <cstdint>
#include <string>

#include "vmm/boot/kernel_image.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

struct BootSetup {
  std::string kernel_path;
  std::string initrd_path;  // may be empty
  std::string cmdline;
  uint32_t vcpus = 1;
  uint64_t acpi_rsdp_addr = 0;  // where the caller puts the ACPI tables; 0: none
  // Open files to read instead of opening the paths (-1: open the path). Not owned.
  int kernel_fd = -1;
  int initrd_fd = -1;
};

struct LoadedKernel {
  KernelImage image;
  uint64_t boot_params_addr = 0;
};

LoadedKernel load_boot_image(const GuestMemory& mem, const BootSetup& setup);

}  // namespace wisp
