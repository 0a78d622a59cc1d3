// Whether a template's VM snapshot can be restored on this host, asked before a clone is
// restored so that a worker template with a CRIU image can start from that image instead
// (issue 17). A VM snapshot is tied to one state format and one CPU model; a CRIU image of the
// worker process is not.
//
// What is checked here, in this process, is what needs no KVM: the top layer's state file
// (readable by this wisp: format major, checksum, schema) and its memory file (present, a
// regular file of the size the state's layout needs). The CPU comparison needs KVM's CPUID,
// which only the VMM asks for: its refusal ("snapshot is from another CPU") is recognised in
// the failed restore's message instead (is_cpu_mismatch).
#pragma once

#include <string>

namespace wisp::manager {

// "" when the snapshot at `dir` looks restorable here, else why not (naming the file), e.g.
// ".../state: snapshot format version 1.1 was written by an older wisp (...)" or
// ".../memory: missing". Never throws.
std::string snapshot_unfit_reason(const std::string& dir);

// The part of snapshot_unfit_reason that costs no more than a stat and a 24-byte read, for
// every call of a template with a CRIU image before its clone's VMM is spawned: the memory
// file missing or not a regular file, the state file missing or of a format this wisp does not
// read (its header). "" when none of those: the VMM's restore then checks the rest. A snapshot
// that fails here would only have cost a VMM's spawn, jail and refusal before the fallback.
// Never throws.
std::string snapshot_plainly_unfit_reason(const std::string& dir);

// Whether `message` (a failed restore's, with the VMM's log) is the VMM's refusal of a
// snapshot taken on another CPU model.
bool is_cpu_mismatch(const std::string& message);

}  // namespace wisp::manager
