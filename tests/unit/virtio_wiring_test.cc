#include "vmm/machine/virtio_wiring.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "base/error.h"
#include "vmm/virtio/block/block_backend.h"

namespace wisp {
namespace {

// attach_virtio_devices needs a KVM VM; it is covered by the integration tests. What does not
// need one is checked here.

TEST(VirtioWiring, OneDevicePerSpecInOrder) {
  char tmpl[] = "/tmp/wisp-wiring-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  ::close(fd);
  char dir[] = "/tmp/wisp-wiring-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::vector<DeviceSpec> specs = {parse_drive_spec(std::string(tmpl) + ",ro"), RngSpec{},
                                   VsockSpec{std::string(dir) + "/v.sock", 42}};
  {
    auto devs = create_virtio_devices(specs);
    ASSERT_EQ(devs.size(), 3u);
    EXPECT_EQ(devs[0]->device_type(), virtio::kDeviceIdBlock);
    EXPECT_EQ(devs[1]->device_type(), virtio::kDeviceIdRng);
    EXPECT_EQ(devs[2]->device_type(), virtio::kDeviceIdVsock);
    // The event loop watches block's I/O completions and vsock's sockets; rng has nothing.
    ASSERT_EQ(devs[0]->backend_fds().size(), 1u);
    EXPECT_TRUE(devs[1]->backend_fds().empty());
    ASSERT_EQ(devs[2]->backend_fds().size(), 1u);
    EXPECT_GE(devs[2]->backend_fds()[0].fd, 0);
  }
  ::unlink(tmpl);
  ::rmdir(dir);  // the device removed its socket
}

TEST(VirtioWiring, MissingDriveIsAnError) {
  EXPECT_THROW(create_virtio_devices({BlockSpec{"/nonexistent/wisp.img", false}}), Error);
}

TEST(VirtioWiring, BadVsockSpecIsAnError) {
  char dir[] = "/tmp/wisp-wiring-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  EXPECT_THROW(create_virtio_devices({VsockSpec{std::string(dir) + "/v.sock", 2}}), Error);
  ::rmdir(dir);
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
