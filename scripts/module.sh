#!/usr/bin/env bash
# Build an out-of-tree module against the kernel of a flavour:
#   scripts/module.sh [base|debug] [MODULE_DIR]   -> prints the .ko path
# MODULE_DIR defaults to driver/ (onpu.ko); the module is named after the
# first obj-m object of its Kbuild file.
. "$(dirname "$0")/common.sh"
flavour=${1:-base}
src=${2:-$NPU_TOP/driver}
src=$(cd "$src" && pwd)
[ -f "$src/Makefile" ] || die "$src has no Kbuild Makefile"
name=$(sed -n 's/^obj-[^ ]*[[:space:]]*[:+]=[[:space:]]*\([a-z0-9_]*\)\.o.*/\1/p' "$src/Makefile" | head -n1)
[ -n "$name" ] || die "cannot find the module name in $src/Makefile"
kbuild=$("$NPU_TOP/scripts/kernel.sh" "$flavour" | tail -n1)
# Out-of-tree Rust modules must be built by the rustc that built the kernel.
[ "$(in_root rustc --version)" = "$(cat "$kbuild/.npu-rustc")" ] \
	|| die "rustc differs from the one that built $kbuild: rebuild the kernel"
out=$NPU_TOP/build/module-$name-$flavour
mkdir -p "$out"
stage "building $name.ko against the $flavour kernel"
# CLIPPY=1 runs clippy-driver in place of rustc (same objects): the kernel's
# own clippy lints apply to the driver, and any warning fails the build.
log=$out/build.log
rc=0
in_root make -s -C "$kbuild" M="$src" MO="$out" LLVM=-19 CLIPPY=1 modules >"$log" 2>&1 || rc=$?
cat "$log" >&2
[ $rc = 0 ] || die "build of $name.ko failed"
! grep -q '^warning' "$log" || die "$name.ko built with warnings (rustc or clippy): see above"
stage_done
echo "$out/$name.ko"
