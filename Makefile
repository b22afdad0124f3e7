# The open NPU stack: top-level entry points. See README.md and
# Documentation/dev/harness.rst.
#
#   make demo     boot the emulated machine and run the main job on the NPU
#   make test     the whole test suite: host tests, then the guest runs
#
# Heavy outputs (build root, kernel, downloaded packages) are cached in
# $(NPU_CACHE) (default ~/.cache/npu-stack); `make clean-cache` drops them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: reliability help demo test host-deps lint host-test fuzz-test guest-test harness-test buildroot kernel kernel-debug module guest vm bench install-libnpu clean clean-cache

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# The main job (scripts/demo.sh): in the guest, the driver loads, libnpu
# compiles and checks a small CNN, then a real published ONNX model
# classifies a scanned page's orientation through /dev/accel, beside
# onnxruntime on the host (host-deps: onnxruntime, Pillow, the models).
demo: host-deps buildroot
	@scripts/demo.sh

# Every stage runs (lint, host, fuzz, guest, harness); the last line is
# "total: N passed, N failed, N skipped", and a skip fails the suite.
test: host-deps buildroot
	@scripts/test.sh

# Single stages, for a quicker look.
lint:
	@NPU_TEST_STAGES=lint scripts/test.sh

host-test: host-deps
	@NPU_TEST_STAGES=host scripts/test.sh

# cargo-fuzz on the device's command processor, the vfio-user backend and
# the kernel parser, 25 s per target (scripts/fuzz-host.sh long for more).
fuzz-test:
	@NPU_TEST_STAGES=fuzz scripts/test.sh

guest-test: buildroot
	@NPU_TEST_STAGES=guest scripts/test.sh

# The long reliability runs (a million fuzzed ioctls on the debug kernel),
# then build/reliability.md with the counts of every reliability run.
reliability: buildroot
	@NPU_RUNS_LIST=tools/selftests/reliability.list NPU_RUN_TIMEOUT=3600 scripts/guest-tests.sh
	@scripts/reliability-report.sh

# The harness must fail on every way a run can go wrong, and say which.
harness-test: buildroot
	@NPU_TEST_STAGES=harness scripts/test.sh

# What the host needs besides Rust: python3 (TAP checker, references) and
# pkg-config (the C API's .pc test), installed when missing.
host-deps:
	@scripts/host-deps.sh

buildroot:
	@scripts/buildroot.sh

kernel: buildroot
	@scripts/kernel.sh base

kernel-debug: buildroot
	@scripts/kernel.sh debug

module: buildroot
	@scripts/module.sh base

guest: buildroot
	@mkdir -p build && printf 'true\n' > build/empty-run.sh && scripts/guest.sh build/initrd.gz build/empty-run.sh

# An interactive shell in the guest, with the device attached (Ctrl-A X quits).
vm: buildroot
	@scripts/vm.sh --name shell --shell

# Every performance figure beside its baseline: build/bench/report.md.
bench: buildroot
	@scripts/bench.sh

# libnpu for C users: the libraries, npu.h and npu.pc under $(PREFIX).
PREFIX ?= /usr/local
install-libnpu:
	$(CARGO) build --release -p libnpu --lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 target/release/libnpu.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 target/release/libnpu.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 libnpu/include/npu.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e "s|@VERSION@|$$(sed -n 's/^version = "\(.*\)"/\1/p' libnpu/Cargo.toml)|" \
		libnpu/npu.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/npu.pc

clean:
	rm -rf build target

clean-cache:
	rm -rf "$${NPU_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/npu-stack}"
