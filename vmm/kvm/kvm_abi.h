// KVM ABI details shared by the files of vmm/kvm/ (and only them: it includes <linux/kvm.h>).
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace wisp {

// The UAPI headers declare kvm_cpuid2's and kvm_msrs's trailing arrays with
// __DECLARE_FLEX_ARRAY, whose empty struct has size 1 in C++: that moves `entries` and changes
// the ioctl numbers. So wisp uses its own headers with the C layout (8 bytes, entries right after)
// and its own ioctl numbers for the ioctls that take them.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8);

// KVM_PRE_FAULT_MEMORY (Linux 6.10): maps guest-physical memory in the VM's stage-2 tables
// (EPT/NPT) ahead of the guest's first touch. Debian 12's headers (6.1) predate it, so the
// struct and numbers are spelled here; an older kernel answers the capability check with 0.
struct PreFaultMemory {
  uint64_t gpa;
  uint64_t size;
  uint64_t flags;
  uint64_t padding[5];
};
static_assert(sizeof(PreFaultMemory) == 64);
constexpr long kCapPreFaultMemory = 236;  // KVM_CAP_PRE_FAULT_MEMORY
constexpr unsigned long kPreFaultMemory = _IOWR(KVMIO, 0xd5, PreFaultMemory);

// A header followed by `n` entries, laid out as the kernel expects.
template <typename Header, typename Entry>
class FlexBuffer {
 public:
  explicit FlexBuffer(size_t n) : words_((sizeof(Header) + n * sizeof(Entry) + 7) / 8, 0) {}
  Header* header() { return reinterpret_cast<Header*>(words_.data()); }
  Entry* entries() {
    return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(words_.data()) + sizeof(Header));
  }
  void* data() { return words_.data(); }

 private:
  std::vector<uint64_t> words_;  // zeroed, 8-byte aligned
};

// kvm_msr_list (KVM_GET_MSR_INDEX_LIST): a 4-byte count, then the indices.
struct MsrListHeader {
  uint32_t nmsrs;
};
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
static_assert(sizeof(MsrListHeader) == 4);

// kvm_xsave ends in a flex array too (4100 bytes in C++, 4096 in C): same fix. With
// KVM_CAP_XSAVE2 the buffer may be larger than this struct; the kernel reads/writes that size.
struct XsaveRegion {
  uint32_t region[1024];
};
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveRegion);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveRegion);
constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveRegion);
static_assert(sizeof(XsaveRegion) == 4096);

}  // namespace wisp
