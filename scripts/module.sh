#!/usr/bin/env bash
# Build driver/ out of tree against the kernel of a flavour:
#   scripts/module.sh [base|debug]   -> prints the path of onpu.ko
. "$(dirname "$0")/common.sh"
flavour=${1:-base}
[ -f "$NPU_TOP/driver/Makefile" ] || die "driver/ has no Kbuild Makefile yet"
kbuild=$("$NPU_TOP/scripts/kernel.sh" "$flavour" | tail -n1)
# Out-of-tree Rust modules must be built by the rustc that built the kernel.
[ "$(in_root rustc --version)" = "$(cat "$kbuild/.npu-rustc")" ] \
	|| die "rustc differs from the one that built $kbuild: rebuild the kernel"
out=$NPU_TOP/build/driver-$flavour
mkdir -p "$out"
stage "building driver/ against the $flavour kernel"
in_root make -s -C "$kbuild" M="$NPU_TOP/driver" MO="$out" LLVM=-19 modules >&2 \
	|| die "driver build failed"
stage_done
echo "$out/onpu.ko"
