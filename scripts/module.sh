#!/usr/bin/env bash
# Build an out-of-tree module against the kernel of a flavour:
#   scripts/module.sh [base|debug] [MODULE_DIR]   -> prints the .ko path
# MODULE_DIR defaults to driver/ (onpu.ko); the module is named after the
# first obj-m object of its Kbuild file.
#
# Or build the driver in-tree, as drivers/accel/onpu (kernel patch 0029):
#   scripts/module.sh intree [base|debug]          -> prints the .ko path
# driver/'s sources are copied into the kernel tree (unchanged files keep
# their time stamps) and kbuild builds the modules of the configured tree
# (CONFIG_DRM_ACCEL_ONPU=m): only what changed is rebuilt.
. "$(dirname "$0")/common.sh"

if [ "${1:-}" = intree ]; then
	flavour=${2:-base}
	kbuild=$("$NPU_TOP/scripts/kernel.sh" "$flavour" | tail -n1)
	ksrc=$(dirname "$kbuild")/src
	dir=$ksrc/drivers/accel/onpu
	[ -f "$dir/Kconfig" ] || die "$ksrc has no drivers/accel/onpu (kernel patch 0029)"
	cmp -s "$NPU_TOP/driver/Kconfig" "$dir/Kconfig" \
		|| die "driver/Kconfig differs from drivers/accel/onpu/Kconfig of kernel patch 0029: update the patch"
	grep -qx 'CONFIG_DRM_ACCEL_ONPU=m' "$kbuild/.config" \
		|| die "$kbuild is not configured with CONFIG_DRM_ACCEL_ONPU=m"
	[ "$(in_root rustc --version)" = "$(cat "$kbuild/.npu-rustc")" ] \
		|| die "rustc differs from the one that built $kbuild: rebuild the kernel"
	for f in "$NPU_TOP"/driver/*.rs; do
		cmp -s "$f" "$dir/${f##*/}" || cp -L "$f" "$dir/${f##*/}"
	done
	for f in "$dir"/*.rs; do
		[ -e "$f" ] && [ ! -e "$NPU_TOP/driver/${f##*/}" ] && rm -f "$f"
	done
	stage "building onpu.ko in-tree (drivers/accel/onpu) in the $flavour kernel"
	in_root make -s -C "$ksrc" O="$kbuild" LLVM=-19 -j"$(nproc)" modules >&2 \
		|| die "in-tree build of onpu.ko failed"
	stage_done
	out=$NPU_TOP/build/module-onpu-intree-$flavour
	mkdir -p "$out"
	cp "$kbuild/drivers/accel/onpu/onpu.ko" "$out/onpu.ko"
	echo "$out/onpu.ko"
	exit 0
fi
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
