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
// `ranges` (may be null) receives the set's pages, for pre_fault_working_set.
// `populate` as for prefetch_pages.
PrefetchResult prefetch_working_set(int fd, const std::string& name, const GuestMemory& memory,
                                    PageRanges* ranges = nullptr, bool populate = true);
// The working set's pages mapped in KVM's EPT/NPT (Machine::pre_fault), after
// Machine::restore and before run(); logged, never fatal.
PreFaultResult pre_fault_working_set(Machine& machine, const PageRanges& ranges);
// The written set in `fd` (named `name` in messages) made private copies in `memory`
// (GuestMemory::populate_writable). Throws Error on a damaged file; returns the pages.
uint64_t populate_written_set(int fd, const std::string& name, const GuestMemory& memory);

}  // namespace wisp
