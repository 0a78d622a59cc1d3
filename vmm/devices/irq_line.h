// How a device raises its interrupt: an edge on an eventfd that KVM turns into a guest interrupt
// (irqfd), so no ioctl and no vCPU thread is involved. Tests substitute a counting fake.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "base/error.h"
#include "base/unique_fd.h"

namespace wisp {

class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void trigger() = 0;
};

class EventFdIrq final : public IrqLine {
 public:
  EventFdIrq() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!fd_) throw_errno("eventfd for an IRQ line");
  }
  int fd() const { return fd_.get(); }
  void trigger() override {
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: an interrupt is pending already.
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
  }

 private:
  UniqueFd fd_;
};

}  // namespace wisp
