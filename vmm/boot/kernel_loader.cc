#include "vmm/boot/kernel_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "vmm/arch/layout.h"
#include "vmm/boot/boot_params.h"
#include "vmm/boot/mptable.h"

namespace wisp {
namespace {

struct OpenFile {
  UniqueFd fd;  // when opened here
  int raw = -1;
  uint64_t size = 0;
};

// `given` (not owned) when >= 0, else `path` opened here.
OpenFile open_regular(const std::string& path, int given, const char* what) {
  OpenFile f;
  int fd = given;
  if (given < 0) {
    f.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f.fd) throw Error(errno_message(std::string(what) + " " + path));
    fd = f.fd.get();
  }
  f.raw = fd;
  struct stat st;
  if (fstat(fd, &st) != 0) throw Error(errno_message(std::string(what) + " " + path));
  if (!S_ISREG(st.st_mode)) throw Error(std::string(what) + " " + path + ": not a regular file");
  if (st.st_size == 0) throw Error(std::string(what) + " " + path + ": file is empty");
  f.size = static_cast<uint64_t>(st.st_size);
  return f;
}

// Reads exactly dst.size() bytes at `offset`, straight into guest memory.
void read_exact(int fd, uint64_t offset, std::span<uint8_t> dst, const std::string& path) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = pread(fd, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(errno_message("reading " + path));
    if (n == 0) throw Error("reading " + path + ": file shrank while loading");
    done += static_cast<size_t>(n);
  }
}

}  // namespace

LoadedKernel load_boot_image(const GuestMemory& mem, const BootSetup& setup) {
  LoadedKernel out;
  OpenFile kernel = open_regular(setup.kernel_path, setup.kernel_fd, "kernel");
  std::vector<uint8_t> head(std::min<uint64_t>(kernel.size, kKernelHeadBytes));
  read_exact(kernel.raw, 0, head, setup.kernel_path);
  try {
    out.image = parse_kernel(head, kernel.size);
  } catch (const Error& e) {
    throw Error("kernel " + setup.kernel_path + ": " + e.what());
  }
  const KernelImage& img = out.image;
  if (img.kernel_end > mem.size())
    throw Error("memory too small for the kernel: " + setup.kernel_path + " needs " +
                std::to_string((img.kernel_end + (1 << 20) - 1) >> 20) +
                " MiB of guest RAM, the VM has " + std::to_string(mem.size() >> 20) +
                " MiB (raise --mem)");
  for (const auto& seg : img.segments) {
    auto dst = mem.slice_or_throw(GuestAddress(seg.guest_addr), seg.mem_size,
                                  "kernel " + setup.kernel_path + " segment");
    read_exact(kernel.raw, seg.file_offset, dst.first(seg.file_size), setup.kernel_path);
    // [file_size, mem_size) is .bss: fresh guest RAM is already zero.
  }

  uint64_t initrd_addr = 0, initrd_size = 0;
  if (!setup.initrd_path.empty() || setup.initrd_fd >= 0) {
    OpenFile initrd = open_regular(setup.initrd_path, setup.initrd_fd, "initrd");
    initrd_size = initrd.size;
    initrd_addr = place_initrd(img, mem.size(), initrd_size);
    auto dst = mem.slice_or_throw(GuestAddress(initrd_addr), initrd_size, "initrd");
    read_exact(initrd.raw, 0, dst, setup.initrd_path);
  }

  if (setup.cmdline.size() + 1 > img.cmdline_max || setup.cmdline.size() + 1 > layout::kCmdlineMax)
    throw Error("kernel command line is " + std::to_string(setup.cmdline.size()) +
                " bytes; this kernel accepts at most " + std::to_string(img.cmdline_max - 1));
  auto cmd = mem.slice_or_throw(GuestAddress(layout::kCmdlineAddr), setup.cmdline.size() + 1,
                                "kernel command line");
  std::memcpy(cmd.data(), setup.cmdline.c_str(), setup.cmdline.size() + 1);

  // The MP table describes the CPUs and interrupt wiring to kernels without ACPI (wisp's own);
  // the caller's ACPI tables say the same to distribution kernels.
  auto mp = build_mptable(layout::kEbdaStart, setup.vcpus);
  auto mpd = mem.slice_or_throw(GuestAddress(layout::kEbdaStart), mp.size(), "MP table");
  std::memcpy(mpd.data(), mp.data(), mp.size());

  BootParamsInput bp;
  bp.kernel = &img;
  bp.mem_size = mem.size();
  bp.cmdline_addr = layout::kCmdlineAddr;
  bp.cmdline_size = static_cast<uint32_t>(setup.cmdline.size());
  bp.initrd_addr = initrd_addr;
  bp.initrd_size = initrd_size;
  bp.acpi_rsdp_addr = setup.acpi_rsdp_addr;
  auto zero_page = build_boot_params(bp);
  auto zp = mem.slice_or_throw(GuestAddress(layout::kZeroPageAddr), zero_page.size(), "zero page");
  std::memcpy(zp.data(), zero_page.data(), zero_page.size());
  out.boot_params_addr = layout::kZeroPageAddr;
  return out;
}

}  // namespace wisp
