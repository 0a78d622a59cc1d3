// The huge-page layer's copies: byte for byte the store's file, its 2 MiB-aligned holes kept,
// made in the background, replaced when the file changes, refused past the layer's size; and
// mapped MAP_PRIVATE, PMD-mapped where the kernel's THP allows it.
#include "manager/huge_page_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/file_io.h"

namespace wisp::manager {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1 << 20;

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

class HugePageLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("wisp-huge-layer-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<HugePageLayer> layer(uint64_t mib) {
    std::string why;
    auto l = HugePageLayer::create(mib, &why);
    if (!l) ADD_FAILURE() << "no layer: " << why;
    return l;
  }

  // An 8 MiB memory file: data in its first two 2 MiB blocks (`fill`, page by page), the rest
  // a hole, written as a snapshot writes one (sized first, then the data).
  std::string memory_file(const std::string& name, uint8_t fill) {
    std::string path = (dir_ / name).string();
    std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), 8 * kMiB), 0);
    std::vector<uint8_t> page(4096);
    for (uint64_t p : {0ull, 1ull, 300ull, 511ull, 512ull, 700ull}) {
      std::fill(page.begin(), page.end(), static_cast<uint8_t>(fill + p));
      EXPECT_EQ(pwrite_exact(fd.get(), p * 4096, page), 0);
    }
    fd.reset();
    fs::rename(tmp, path);  // a new inode, as a rebuilt template's file is
    return path;
  }

  // The copy of `path` once the background copy that the first ask starts is made.
  static UniqueFd made_copy(HugePageLayer& l, const std::string& path) {
    l.copy_of(path);
    l.wait_idle();
    return l.copy_of(path);
  }

  static std::vector<uint8_t> contents(int fd) {
    std::vector<uint8_t> out(8 * kMiB);
    EXPECT_EQ(pread_exact(fd, 0, out), 0);
    return out;
  }

  fs::path dir_;
};

bool can_mount_tmpfs() {
  std::string why;
  return HugePageLayer::create(4, &why) != nullptr;
}

#define SKIP_WITHOUT_MOUNT()                                                      \
  if (!can_mount_tmpfs())                                                         \
  GTEST_SKIP() << "fsmount of a tmpfs needs CAP_SYS_ADMIN (serve runs as root); " \
                  "this test runs without it"

TEST_F(HugePageLayerTest, TheCopyIsTheFileByteForByteAndMadeInTheBackground) {
  SKIP_WITHOUT_MOUNT();
  auto l = layer(64);
  std::string path = memory_file("memory", 7);
  EXPECT_FALSE(l->copy_of(path).valid());  // the first ask starts the copy
  l->wait_idle();
  UniqueFd copy = l->copy_of(path);
  ASSERT_TRUE(copy.valid());
  UniqueFd orig(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(contents(copy.get()), contents(orig.get()));
  EXPECT_EQ(::lseek(copy.get(), 0, SEEK_END), static_cast<off_t>(8 * kMiB));
  // The blocks past the data stay holes: nothing allocated for them.
  errno = 0;
  off_t data = ::lseek(copy.get(), 4 * kMiB, SEEK_DATA);
  EXPECT_TRUE(data < 0 && errno == ENXIO) << data;
  EXPECT_EQ(l->copies(), 1u);
  EXPECT_GE(l->bytes(), 2 * 4096u);
  EXPECT_LE(l->bytes(), 4 * kMiB);
  // Read-only: nothing writes through a descriptor a VMM is handed.
  uint8_t b = 1;
  EXPECT_LT(::pwrite(copy.get(), &b, 1, 0), 0);
}

TEST_F(HugePageLayerTest, AChangedFileGetsANewCopy) {
  SKIP_WITHOUT_MOUNT();
  auto l = layer(64);
  std::string path = memory_file("memory", 7);
  UniqueFd old_copy = made_copy(*l, path);
  ASSERT_TRUE(old_copy.valid());
  memory_file("memory", 40);  // replaced: another inode, other bytes
  EXPECT_FALSE(l->copy_of(path).valid());
  l->wait_idle();
  UniqueFd copy = l->copy_of(path);
  ASSERT_TRUE(copy.valid());
  UniqueFd orig(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(contents(copy.get()), contents(orig.get()));
  EXPECT_EQ(l->copies(), 1u);
  // A clone that mapped the old copy still reads it whole.
  std::vector<uint8_t> old_bytes = contents(old_copy.get());
  EXPECT_EQ(old_bytes[0], 7);
}

TEST_F(HugePageLayerTest, AFileLargerThanTheLayerIsNotCopied) {
  SKIP_WITHOUT_MOUNT();
  auto l = layer(4);
  std::string path = memory_file("memory", 7);
  EXPECT_FALSE(l->copy_of(path).valid());
  l->wait_idle();
  EXPECT_FALSE(l->copy_of(path).valid());
  EXPECT_EQ(l->copies(), 0u);
  EXPECT_FALSE(l->copy_of((dir_ / "missing").string()).valid());
}

TEST_F(HugePageLayerTest, APrivateMappingOfTheCopyIsMappedTwoMegabytesAtATime) {
  SKIP_WITHOUT_MOUNT();
  std::ifstream policy("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string text((std::istreambuf_iterator<char>(policy)), {});
  if (text.empty() || text.find("[deny]") != std::string::npos)
    GTEST_SKIP() << "no shmem THP on this kernel: " << text;
  auto l = layer(64);
  std::string path = memory_file("memory", 7);
  UniqueFd copy = made_copy(*l, path);
  ASSERT_TRUE(copy.valid());
  void* p =
      ::mmap(nullptr, 8 * kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, copy.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(::madvise(p, 2 * kMiB, MADV_POPULATE_READ), 0);
  // This mapping's ShmemPmdMapped in smaps.
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  char start[32];
  std::snprintf(start, sizeof(start), "%lx-", reinterpret_cast<unsigned long>(p));
  bool in_mapping = false;
  uint64_t pmd_kib = 0;
  while (std::getline(smaps, line)) {
    if (line.find('-') != std::string::npos && line.find(':') > line.find(' ')) {
      in_mapping = line.rfind(start, 0) == 0;
    } else if (in_mapping && line.rfind("ShmemPmdMapped:", 0) == 0) {
      std::istringstream(line.substr(15)) >> pmd_kib;
    }
  }
  EXPECT_EQ(pmd_kib, 2048u);
  // A write copies 4 KiB: the others of its block still read the file's bytes.
  static_cast<uint8_t*>(p)[4096] = 99;
  EXPECT_EQ(static_cast<uint8_t*>(p)[0], 7);
  EXPECT_EQ(static_cast<uint8_t*>(p)[300 * 4096], static_cast<uint8_t>(7 + 300));
  ::munmap(p, 8 * kMiB);
}

}  // namespace
}  // namespace wisp::manager
