// The agent's own code on huge pages before a template's snapshot (issue 13: fewer nested page
// faults on restore).
//
// A clone's guest touches each 4 KiB page of the agent's code it runs, and every first touch
// in a clone is a nested page fault (EPT/NPT): about 230 of them in an exec call, the code of
// the RPC layer scattered over the 3 MiB of a static binary. Its page-cache pages lie among
// pages the guest writes in every call, so a host that maps the template's memory with 2 MiB
// pages (serve's huge-page layer) has to split those blocks and map them 4 KiB at a time.
// Copied onto hugetlb pages (2 MiB, physically contiguous, only ever read), the same code is
// one block a clone maps with one fault.
//
// The copy replaces the mapping in place (mremap over the same addresses, the same bytes), so
// code keeps running through it. Only the 2 MiB-aligned part of the read-only image moves:
// the ELF headers, the code and the start of the read-only data, which all become readable
// and executable (a hugetlb page has one protection; nothing becomes writable).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace wisp::agent {

inline constexpr uint64_t kHugeTextPageBytes = 2ull << 20;

struct ImageSegment {
  uint64_t start = 0;  // virtual address
  uint64_t size = 0;   // in memory
  bool writable = false;
};

struct HugeTextRange {
  uint64_t start = 0;
  uint64_t size = 0;  // 0: nothing to move
};

// The largest run of whole `page_bytes` pages inside the read-only segments that start the
// image (in address order, without gaps between them beyond page rounding; the first writable
// segment ends the run).
HugeTextRange huge_text_range(std::span<const ImageSegment> segments, uint64_t page_bytes);

// Moves the running program's range onto hugetlb pages, reserving them in the guest kernel's
// pool (/proc/sys/vm/nr_hugepages) first. Idempotent. False, with `why`, when it cannot (no
// contiguous memory, no hugetlb, nothing aligned to move); the program runs on as before.
bool move_text_to_huge_pages(std::string* why);

}  // namespace wisp::agent
