# wisp: the entry point for building, testing and benchmarking. `make test` on a fresh machine
# installs what it needs (scripts/setup.sh), builds everything and runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := all

BUILD      := build
CMAKE_DIR  := $(BUILD)/cmake
ASAN_DIR   := $(BUILD)/asan
GUEST_DIR  := $(BUILD)/guest
JOBS       ?= $(shell nproc)
# Integration tests and benchmarks boot guests: directly on a host with kvm_intel/kvm_amd,
# otherwise inside the nested-KVM testbed (tests/testbed/README.md).
IN_KVM     := tests/integration/in-kvm
# ccache (scripts/setup.sh installs it) keyed by paths relative to the checkout, so another
# clone's build of the same sources finds the cached objects (make test builds three times:
# RelWithDebInfo, ASan, the fuzzers).
LAUNCHER    = $(if $(shell command -v ccache),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
# A build with debug info (-g) hashes its directory too unless told not to, which made every
# clone miss; the cost is that a cached object's debug info names the clone that compiled it.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: all setup rootfs-prefetch wisp guest agent-guest rootfs ml-rootfs unit-test check integration-test test perf soak demo lint format fuzz clean

all: rootfs-prefetch wisp guest agent-guest rootfs

setup:
	@scripts/setup.sh

wisp: setup
	@cmake -S . -B $(CMAKE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(LAUNCHER) -DWISP_BIN_DIR=$(CURDIR)/$(BUILD)/bin >/dev/null
	@$(MAKE) --no-print-directory -C $(CMAKE_DIR) -j$(JOBS)

guest: setup
	@guest/build-kernel.sh $(GUEST_DIR)
	@guest/build-initramfs.sh $(GUEST_DIR)/initramfs.cpio.gz
	@guest/tools/build.sh $(GUEST_DIR)/tools >/dev/null
	@guest/build-initramfs.sh $(GUEST_DIR)/test-initramfs.cpio.gz \
	  --add $(GUEST_DIR)/tools/vsock_tool:/bin/vsock_tool \
	  --add guest/tools/actions/vsocktest:/etc/wisp/actions/vsocktest \
	  --add guest/tools/actions/vsockbench:/etc/wisp/actions/vsockbench
	@guest/build-net-initramfs.sh $(GUEST_DIR)/net-initramfs.cpio.gz $(GUEST_DIR)/tools

# The function guest: wisp-agent as PID 1 (it is built with wisp), handler runtimes, busybox.
agent-guest: wisp guest
	@guest/build-agent-initramfs.sh $(GUEST_DIR)/agent-initramfs.cpio.gz

# Starts the Python image's Debian tree (debootstrap: minutes, mostly waiting on the archive) in
# the background, so that it overlaps the compiler and the kernel build; `rootfs` later waits
# for it (build-rootfs.sh's lock) or finds it cached, and reports any failure itself.
rootfs-prefetch: setup
	@mkdir -p $(BUILD)
	@guest/build-rootfs.sh --tree-only >$(BUILD)/rootfs-prefetch.log 2>&1 </dev/null &

# The Python function guest: Debian bookworm + python3 (debootstrap, cached in ~/.cache/wisp)
# with wisp-agent as init, an ext4 image booted read-only by `wisp run/exec --rootfs`.
rootfs: wisp
	@guest/build-rootfs.sh $(GUEST_DIR)/python-rootfs.ext4

# The serverless-ML guest (issue 15): the Python image plus numpy and scikit-learn and
# guest/runtimes/ml_worker.py, cached the same way under its own key. Not part of `all` or
# `test`: `make perf` and `make demo` build it.
ml-rootfs: wisp
	@guest/build-rootfs.sh $(GUEST_DIR)/ml-rootfs.ext4 --variant ml

# Unit tests run on the host under AddressSanitizer + UBSan.
ASAN_CMAKE  = cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DWISP_SANITIZE=ON $(LAUNCHER) -DWISP_BIN_DIR=$(CURDIR)/$(ASAN_DIR)/bin
UNIT_CTEST := cd $(ASAN_DIR) && ctest -L unit --output-on-failure -j$(JOBS)

unit-test: setup
	@$(ASAN_CMAKE) >/dev/null
	@$(MAKE) --no-print-directory -C $(ASAN_DIR) -j$(JOBS) wisp_unit_tests
	@$(UNIT_CTEST)

# The fast check before a commit: every target of the build (the binaries, the unit and
# integration test programs) under ASan + UBSan, the unit tests and lint. Boots no guest and
# builds no kernel or root filesystem.
check: setup
	@$(ASAN_CMAKE) >/dev/null
	@$(MAKE) --no-print-directory -C $(ASAN_DIR) -j$(JOBS) all
	@$(UNIT_CTEST)
	@scripts/lint.sh

integration-test: all
	@tests/integration/fetch-cloud-kernel.sh $(GUEST_DIR)/cloud
	@tests/integration/fetch-cloud-kernel.sh $(GUEST_DIR)/debian linux-image-amd64
	@$(IN_KVM) ctest --test-dir $(CMAKE_DIR) -L integration --output-on-failure

# Each fuzz target runs TEST_FUZZ_SECONDS here (seventeen targets: about 3 minutes), a sixth of
# `make fuzz`'s minute: a smoke run that keeps every corpus growing, so that the whole of
# `make test` stays under 45 minutes as integration tests land; `make fuzz` is the real run.
TEST_FUZZ_SECONDS ?= 10
test: rootfs-prefetch unit-test all
	@scripts/fuzz.sh $(TEST_FUZZ_SECONDS)
	@tests/integration/fetch-cloud-kernel.sh $(GUEST_DIR)/cloud
	@tests/integration/fetch-cloud-kernel.sh $(GUEST_DIR)/debian linux-image-amd64
	@tests/integration/run-all.sh

# The benchmarks, then build/perf/report.md with its plots (perf/report.py, on the host), also
# when a benchmark failed: the report shows what ran, and make still fails. Each benchmark runs
# in a testbed of its own, two lanes at once where the testbed emulates the CPU (perf/lanes.sh).
# QUICK=1: fewer runs (perf/run-all.sh), every plot within ~10 minutes, no soak. Full: serve
# sweeps concurrency 1-32 with 32 calls a mode and level (8 cold boots at 1, 8, 32), the soak
# makes 1000 invokes; sized so that the whole stays within 45 minutes in the testbed.
# `make soak`: issue 12's full sizes, the soak's 10 000 invokes and serve's load test of
# 2000 + 1000 calls (69 and 41 minutes side by side in the testbed, so not within make perf's
# 45 minutes), then the report (its soak goals judge that run).
QUICK ?=
PERF_FULL := WISP_BENCH_RUNS_SNAPSHOT_QEMU=20 WISP_BENCH_RUNS_SNAPSHOT_COLD=5 \
  WISP_BENCH_RUNS_JAIL=10 WISP_BENCH_SERVE_CALLS=32 WISP_BENCH_SERVE_COLD_CALLS=8 \
  WISP_BENCH_SERVE_COLD_CONCURRENCY=1,8,32 WISP_BENCH_SOAK=1000
perf: all ml-rootfs
	@env $(if $(filter-out 0,$(QUICK)),QUICK=1,$(PERF_FULL)) perf/lanes.sh

soak: all
	@env SOAK=1 WISP_BENCH_SOAK=10000 perf/lanes.sh

demo: all ml-rootfs
	@$(IN_KVM) scripts/demo.sh

# libFuzzer targets (clang, ASan + UBSan), each for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz: setup
	@scripts/fuzz.sh $(FUZZ_SECONDS)

lint:
	@scripts/lint.sh

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
