// A restore's prefetch of the snapshot's working set (snapshot/working_set.h), shared by
// `wisp-vmm restore` and a standby VMM's restore order: the file read and checked against the
// mapped memory (a corrupt or mismatched one fails the restore, naming it), then its pages
// loaded (vmm/memory/page_prefetch.h) before the vCPUs run.
#pragma once

#include <string>

#include "vmm/memory/guest_memory.h"
#include "vmm/memory/page_prefetch.h"

namespace wisp {

// `fd`: the working-set file, open for reading; `name` names it in messages. Throws Error.
PrefetchResult prefetch_working_set(int fd, const std::string& name, const GuestMemory& memory);
// The written set in `fd` (named `name` in messages) made private copies in `memory`
// (GuestMemory::populate_writable). Throws Error on a damaged file; returns the pages.
uint64_t populate_written_set(int fd, const std::string& name, const GuestMemory& memory);

}  // namespace wisp
