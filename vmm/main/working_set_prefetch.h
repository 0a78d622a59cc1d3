// A restore's prefetch of the snapshot's working set (snapshot/working_set.h), shared by
// `wisp-vmm restore` and a standby VMM's restore order: the file read and checked against the
// mapped memory (a corrupt or mismatched one fails the restore, naming it), then its pages
// loaded (vmm/memory/page_prefetch.h) before the vCPUs run, and, once the machine is built,
// mapped in KVM's EPT/NPT where the host's KVM can (Machine::pre_fault).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "vmm/machine/machine.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/memory/page_prefetch.h"

namespace wisp {

using PageRanges = std::vector<std::pair<uint64_t, uint64_t>>;  // (first page, count)

// `fd`: the working-set file, open for reading; `name` names it in messages. Throws Error.
// `guest_pages` (may be null) receives the set's pages as guest-physical page ranges
// (snapshot::guest_physical_ranges), for pre_fault_working_set. `populate` as for
// prefetch_pages: false where the restore pre-faults. `written_fd` (>= 0: the written-set
// file, named `written_name`): its pages made private copies (populate_written_set) after the
// readahead and before the populate, so a block's reads are mapped after its writes.
PrefetchResult prefetch_working_set(int fd, const std::string& name, const GuestMemory& memory,
                                    PageRanges* guest_pages = nullptr, bool populate = true,
                                    int written_fd = -1, const std::string& written_name = "");
// The working set's pages mapped in KVM's EPT/NPT (Machine::pre_fault), after
// Machine::restore and before run(), where Kvm::has_pre_fault_memory(); logged, never fatal.
PreFaultResult pre_fault_working_set(Machine& machine, const PageRanges& guest_pages);
// The written set in `fd` (named `name` in messages) made private copies in `memory`
// (GuestMemory::populate_writable). Throws Error on a damaged file; returns the pages.
uint64_t populate_written_set(int fd, const std::string& name, const GuestMemory& memory);

}  // namespace wisp
