#include "vmm/machine/virtio_wiring.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "base/error.h"

namespace wisp {
namespace {

// attach_virtio_devices needs a KVM VM; it is covered by the integration tests. What does not
// need one is checked here.

TEST(VirtioWiring, DrivesComeFirstThenRng) {
  char tmpl[] = "/tmp/wisp-wiring-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  ::close(fd);
  VirtioConfig cfg;
  cfg.drives.push_back(parse_drive_spec(std::string(tmpl) + ",ro"));
  auto devs = create_virtio_devices(cfg);
  ::unlink(tmpl);
  ASSERT_EQ(devs.size(), 2u);
  EXPECT_EQ(devs[0]->device_type(), virtio::kDeviceIdBlock);
  EXPECT_EQ(devs[1]->device_type(), virtio::kDeviceIdRng);
}

TEST(VirtioWiring, MissingDriveIsAnError) {
  VirtioConfig cfg;
  cfg.drives.push_back({"/nonexistent/wisp.img", false});
  EXPECT_THROW(create_virtio_devices(cfg), Error);
}

TEST(VirtioWiring, VsockComesLast) {
  char dir[] = "/tmp/wisp-wiring-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  VirtioConfig cfg;
  cfg.vsock = VsockConfig{std::string(dir) + "/v.sock", 42};
  {
    auto devs = create_virtio_devices(cfg);
    ASSERT_EQ(devs.size(), 2u);
    EXPECT_EQ(devs[1]->device_type(), virtio::kDeviceIdVsock);
  }
  ::rmdir(dir);  // the device removed its socket
  cfg.vsock->guest_cid = 2;
  EXPECT_THROW(create_virtio_devices(cfg), Error);
}

TEST(VirtioWiring, KernelCommandLineListsEverySlot) {
  std::vector<AttachedVirtioDevice> devs(2);
  devs[0].slot = virtio_mmio_slot(0);
  devs[1].slot = virtio_mmio_slot(1);
  EXPECT_EQ(virtio_kernel_cmdline(devs),
            "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
  EXPECT_EQ(virtio_kernel_cmdline({}), "");
}

}  // namespace
}  // namespace wisp
