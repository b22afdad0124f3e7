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

.PHONY: reliability help demo test host-deps lint host-test fuzz-test guest-test harness-test buildroot kernel kernel-debug module guest vm bench install-libnpu install-libnpu-onnx clean clean-cache

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
# libnpu.so.X.Y.Z with the links libnpu.so.X (its SONAME) and libnpu.so;
# the version is npu.h's NPU_VERSION_*. NPU_FEATURES=model adds the
# in-process device model (the tests' C programs run on it).
# LIBNPU_TARGET_DIR: cargo's target directory for this build. libnpu is a
# cdylib, so its files in deps/ carry no hash: a build of libnpu alone
# (other features of its dependencies than a workspace build) into the
# workspace's target dir would overwrite the rlib the workspace's crates
# were built against (the tests use a separate one).
PREFIX ?= /usr/local
NPU_FEATURES ?=
LIBNPU_TARGET_DIR ?= target
NPU_ABI = $$(sed -n 's/^\#define NPU_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' libnpu/include/npu.h | paste -sd.)
install-libnpu:
	CARGO_TARGET_DIR=$(LIBNPU_TARGET_DIR) $(CARGO) build --release -p libnpu --lib $(if $(NPU_FEATURES),--features $(NPU_FEATURES))
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 $(LIBNPU_TARGET_DIR)/release/libnpu.a $(DESTDIR)$(PREFIX)/lib/
	v=$(NPU_ABI) && install -m 755 $(LIBNPU_TARGET_DIR)/release/libnpu.so $(DESTDIR)$(PREFIX)/lib/libnpu.so.$$v && \
		ln -sf libnpu.so.$$v $(DESTDIR)$(PREFIX)/lib/libnpu.so.$${v%%.*} && \
		ln -sf libnpu.so.$${v%%.*} $(DESTDIR)$(PREFIX)/lib/libnpu.so
	install -m 644 libnpu/include/npu.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e "s|@VERSION@|$(NPU_ABI)|" \
		libnpu/npu.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/npu.pc

# libnpu's ONNX plugin, libnpu-onnx.so.1, beside libnpu under $(PREFIX):
# npu_model_load_onnx() (npu.h) loads it on first use. Its own target dir
# (it builds libnpu without the device model: see LIBNPU_TARGET_DIR).
LIBNPU_ONNX_TARGET_DIR ?= target/libnpu-onnx
install-libnpu-onnx:
	CARGO_TARGET_DIR=$(LIBNPU_ONNX_TARGET_DIR) $(CARGO) build --release -p npu-onnx-capi --lib
	install -d $(DESTDIR)$(PREFIX)/lib
	install -m 755 $(LIBNPU_ONNX_TARGET_DIR)/release/libnpu_onnx_capi.so $(DESTDIR)$(PREFIX)/lib/libnpu-onnx.so.1

clean:
	rm -rf build target

clean-cache:
	rm -rf "$${NPU_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/npu-stack}"
