#include "vmm/boot/kernel_image.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "base/error.h"

namespace wisp {
namespace {

// A minimal, valid vmlinux-like ELF: one PT_LOAD at 16 MiB containing the entry.
std::vector<uint8_t> make_elf(uint64_t file_size = 0x3000) {
  std::vector<uint8_t> f(file_size, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = 0x1000000;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;
  std::memcpy(f.data(), &eh, sizeof(eh));
  Elf64_Phdr ph[2]{};
  ph[0].p_type = PT_LOAD;
  ph[0].p_offset = 0x1000;
  ph[0].p_paddr = 0x1000000;
  ph[0].p_filesz = 0x1000;
  ph[0].p_memsz = 0x5000;  // .bss beyond the file bytes
  ph[1].p_type = PT_NOTE;
  std::memcpy(f.data() + eh.e_phoff, ph, sizeof(ph));
  return f;
}

Elf64_Ehdr& ehdr(std::vector<uint8_t>& f) { return *reinterpret_cast<Elf64_Ehdr*>(f.data()); }
Elf64_Phdr& phdr(std::vector<uint8_t>& f, int i) {
  return reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr))[i];
}

std::string error_of(const std::vector<uint8_t>& f, uint64_t size) {
  try {
    parse_kernel(f, size);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ElfKernel, ParsesLoadSegmentsAndEntry) {
  auto f = make_elf();
  auto img = parse_kernel(f, f.size());
  EXPECT_EQ(img.format, KernelImage::Format::kElf);
  EXPECT_EQ(img.entry, 0x1000000u);
  ASSERT_EQ(img.segments.size(), 1u);
  EXPECT_EQ(img.segments[0].file_offset, 0x1000u);
  EXPECT_EQ(img.segments[0].mem_size, 0x5000u);
  EXPECT_EQ(img.kernel_end, 0x1005000u);
}

TEST(ElfKernel, RejectsMalformedHeaders) {
  struct Case {
    const char* expect;
    void (*mutate)(std::vector<uint8_t>&);
  };
  const Case cases[] = {
      {"EI_CLASS", [](auto& f) { ehdr(f).e_ident[EI_CLASS] = ELFCLASS32; }},
      {"little-endian", [](auto& f) { ehdr(f).e_ident[EI_DATA] = ELFDATA2MSB; }},
      {"x86-64", [](auto& f) { ehdr(f).e_machine = EM_AARCH64; }},
      {"ET_EXEC", [](auto& f) { ehdr(f).e_type = ET_DYN; }},
      {"e_phentsize", [](auto& f) { ehdr(f).e_phentsize = 32; }},
      {"e_phnum", [](auto& f) { ehdr(f).e_phnum = 0; }},
      {"program headers", [](auto& f) { ehdr(f).e_phoff = 0xffffffffffffff00ull; }},
      {"p_filesz > p_memsz", [](auto& f) { phdr(f, 0).p_filesz = 0x6000; }},
      {"past the end of the file", [](auto& f) { phdr(f, 0).p_offset = 0x2800; }},
      {"outside [1 MiB", [](auto& f) { phdr(f, 0).p_paddr = 0x1000; }},
      {"outside [1 MiB", [](auto& f) { phdr(f, 0).p_paddr = 0xfffffffffffff000ull; }},
      {"not inside a loaded segment", [](auto& f) { ehdr(f).e_entry = 0xffffffff81000000ull; }},
      {"no PT_LOAD", [](auto& f) { phdr(f, 0).p_type = PT_NOTE; }},
  };
  for (const auto& c : cases) {
    auto f = make_elf();
    c.mutate(f);
    std::string err = error_of(f, f.size());
    EXPECT_NE(err.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "', got '" << err << "'";
  }
}

TEST(ElfKernel, TruncatedFilesAreRejected) {
  auto f = make_elf();
  for (size_t n : {size_t{0}, size_t{3}, size_t{20}, sizeof(Elf64_Ehdr) + 10}) {
    std::vector<uint8_t> head(f.begin(), f.begin() + static_cast<long>(n));
    EXPECT_THROW(parse_kernel(head, n), Error) << n;
  }
}

std::vector<uint8_t> make_bzimage(size_t size = 0x10000) {
  std::vector<uint8_t> f(size, 0);
  auto put16 = [&](size_t o, uint16_t v) { std::memcpy(&f[o], &v, 2); };
  auto put32 = [&](size_t o, uint32_t v) { std::memcpy(&f[o], &v, 4); };
  auto put64 = [&](size_t o, uint64_t v) { std::memcpy(&f[o], &v, 8); };
  f[0x1f1] = 3;  // setup_sects: protected-mode code starts at 4*512
  put16(0x1fe, 0xAA55);
  f[0x200] = 0xeb;
  f[0x201] = 0x6a;  // header length: ends at 0x26c
  put32(0x202, 0x53726448);
  put16(0x206, 0x020f);
  f[0x211] = 0x01;  // LOADED_HIGH
  put32(0x22c, 0x7fffffff);
  put32(0x230, 0x200000);
  f[0x234] = 1;
  put16(0x236, 0x3);  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
  put32(0x238, 2047);
  put64(0x258, 0x1000000);
  put32(0x260, 0x800000);
  return f;
}

TEST(BzImage, ParsesSetupHeader) {
  auto f = make_bzimage();
  auto img = parse_kernel(f, f.size());
  EXPECT_EQ(img.format, KernelImage::Format::kBzImage);
  ASSERT_EQ(img.segments.size(), 1u);
  EXPECT_EQ(img.segments[0].file_offset, 4u * 512);
  EXPECT_EQ(img.segments[0].file_size, f.size() - 4 * 512);
  EXPECT_EQ(img.segments[0].guest_addr, 0x1000000u);
  EXPECT_EQ(img.entry, 0x1000200u);
  EXPECT_EQ(img.kernel_end, 0x1800000u);  // init_size dominates
  EXPECT_EQ(img.cmdline_max, 2048u);
  EXPECT_EQ(img.setup_header.size(), 0x26cu - 0x1f1u);
}

TEST(BzImage, RejectsMalformedHeaders) {
  struct Case {
    const char* expect;
    void (*mutate)(std::vector<uint8_t>&);
  };
  const Case cases[] = {
      {"too old", [](auto& f) { f[0x206] = 0x0b; }},
      {"XLF_KERNEL_64", [](auto& f) { f[0x236] = 0; }},
      {"LOADED_HIGH", [](auto& f) { f[0x211] = 0; }},
      {"no protected-mode kernel", [](auto& f) { f[0x1f1] = 200; }},
      {"beyond 3 GiB", [](auto& f) { f[0x263] = 0xff; }},
      {"outside [1 MiB, 3 GiB)",
       [](auto& f) {
         f[0x234] = 0;
         std::memset(&f[0x258], 0, 8);
       }},
  };
  for (const auto& c : cases) {
    auto f = make_bzimage();
    c.mutate(f);
    std::string err = error_of(f, f.size());
    EXPECT_NE(err.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "', got '" << err << "'";
  }
}

TEST(BzImage, RelocatableKernelWithLowPrefAddressGoesTo16MiB) {
  auto f = make_bzimage();
  std::memset(&f[0x258], 0, 8);
  auto img = parse_kernel(f, f.size());
  EXPECT_EQ(img.segments[0].guest_addr, 0x1000000u);
}

TEST(BzImage, HugePrefAddressCannotWrapTheRangeCheck) {
  // Found by kernel_image_fuzz: pref_address near 2^64 made load + init_size wrap.
  auto f = make_bzimage();
  uint64_t pref = 0xffffffff07ff0021ull;
  std::memcpy(&f[0x258], &pref, 8);
  uint32_t init = 0xffffffff;
  std::memcpy(&f[0x260], &init, 4);
  EXPECT_NE(error_of(f, f.size()).find("beyond 3 GiB"), std::string::npos);
  f[0x234] = 0;  // not relocatable: the address itself is refused
  EXPECT_NE(error_of(f, f.size()).find("outside [1 MiB, 3 GiB)"), std::string::npos);
}

TEST(KernelImage, UnknownFormatIsNamed) {
  std::vector<uint8_t> junk(4096, 0x90);
  EXPECT_NE(error_of(junk, junk.size()).find("not a kernel image"), std::string::npos);
  std::vector<uint8_t> empty;
  EXPECT_THROW(parse_kernel(empty, 0), Error);
}

}  // namespace
}  // namespace wisp
