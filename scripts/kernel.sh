#!/usr/bin/env bash
# Build the guest kernel: scripts/kernel.sh [base|debug]
# Prints the build directory (O=) on its last line.
#
# - The source comes from Debian's linux-source-$KERNEL_SERIES package, kept in
#   the cache; the first version fetched is reused until the cache is cleared.
# - The source tree is a git repository with a "pristine" tag. The patch series
#   in kernel/patches/ is applied with git am in a scratch worktree, and the
#   source tree then moves to the result with one reset: only the files the old
#   and the new series patch differently are rewritten (the others keep their
#   timestamps), so the build directories below rebuild only what changed.
# - The build directory is keyed by version, flavour and config hash.
. "$(dirname "$0")/common.sh"

flavour=${1:-base}
case $flavour in base|debug) ;; *) die "unknown kernel flavour '$flavour' (base|debug)";; esac

"$NPU_TOP/scripts/buildroot.sh"

# --- the source package --------------------------------------------------
debs=$NPU_CACHE/debs
mkdir -p "$debs"
deb=$(ls "$debs"/linux-source-"$KERNEL_SERIES"_*_all.deb 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$deb" ]; then
	stage "downloading linux-source-$KERNEL_SERIES"
	in_root sh -c "cd '$debs' && apt-get update -qq &&
		(apt-get download -q -t $ROOT_SUITE-backports linux-source-$KERNEL_SERIES ||
		 apt-get download -q linux-source-$KERNEL_SERIES)" >&2 \
		|| die "cannot download linux-source-$KERNEL_SERIES from the mirror"
	deb=$(ls "$debs"/linux-source-"$KERNEL_SERIES"_*_all.deb | sort -V | tail -n1)
	stage_done
fi
version=$(dpkg-deb -f "$deb" Version)
kdir=$NPU_CACHE/linux-$version
src=$kdir/src

if [ ! -f "$src/.npu-pristine" ]; then
	stage "extracting linux-source $version"
	rm -rf "$src" "$kdir/tmp"
	mkdir -p "$kdir/tmp"
	with_progress "unpacking linux-source" sh -c 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" ./usr/src/' sh "$deb" "$kdir/tmp"
	NPU_PROGRESS_STATUS="find '$kdir/tmp' -type f | wc -l | sed 's/\$/ files extracted/'" \
		with_progress "extracting linux-source" \
		tar -xaf "$(ls "$kdir"/tmp/usr/src/linux-source-"$KERNEL_SERIES".tar.*)" -C "$kdir/tmp"
	mv "$kdir/tmp/linux-source-$KERNEL_SERIES" "$src"
	rm -rf "$kdir/tmp"
	git -C "$src" init -q
	with_progress "recording the pristine tree" sh -c 'git -C "$1" add -f -A &&
		git -C "$1" -c user.name=npu-stack -c user.email=npu-stack@localhost \
		commit -qm "linux-source $2 (Debian)"' sh "$src" "$version"
	git -C "$src" tag pristine
	echo "$version" >"$src/.npu-pristine"
	stage_done
fi

# --- the uAPI header and the patch series ---------------------------------
# The driver's uAPI header has one copy, uapi/include/uapi/drm/onpu_accel.h:
# it is committed into the tree as include/uapi/drm/onpu_accel.h first (the
# commit a posted series would carry), then the series is applied on top
# (patch 0003 lets bindgen turn the header into the kernel's uapi crate).
# The tree and the builds are keyed on the header as on the patches.
uapi_header=$NPU_TOP/uapi/include/uapi/drm/onpu_accel.h
[ -f "$uapi_header" ] || die "missing $uapi_header"
patches=$(ls "$NPU_TOP"/kernel/patches/*.patch 2>/dev/null || true)
patch_hash=$(cat "$uapi_header" /dev/null $patches | sha256sum | cut -c1-16)
if [ "$(cat "$src/.npu-patches" 2>/dev/null)" != "$patch_hash" ]; then
	stage "applying the uAPI header and kernel/patches ($(echo "$patches" | grep -c . || true) patches)"
	work=$kdir/patching
	git -C "$src" worktree remove --force "$work" 2>/dev/null || rm -rf "$work"
	git -C "$src" worktree prune
	git -C "$src" worktree add -q --detach "$work" pristine
	cp "$uapi_header" "$work/include/uapi/drm/onpu_accel.h"
	git -C "$work" add -f include/uapi/drm/onpu_accel.h
	git -C "$work" -c user.name=npu-stack -c user.email=npu-stack@localhost \
		commit -q -m "accel/onpu: add the uAPI header" \
		-m "Copied by scripts/kernel.sh from the project's uapi/include/uapi/drm/onpu_accel.h."
	if [ -n "$patches" ]; then
		# shellcheck disable=SC2086
		git -C "$work" -c user.name=npu-stack -c user.email=npu-stack@localhost \
			am -q --whitespace=nowarn $patches || {
			git -C "$src" worktree remove --force "$work" || true
			die "kernel/patches do not apply to linux $version"
		}
	fi
	patched=$(git -C "$work" rev-parse HEAD)
	git -C "$src" worktree remove --force "$work"
	git -C "$src" clean -qfdx -e .npu-pristine
	git -C "$src" reset -q --hard "$patched"
	echo "$patch_hash" >"$src/.npu-patches"
	stage_done
fi

# --- configuration -------------------------------------------------------
fragments="$NPU_TOP/kernel/config/base.config"
[ -f "$NPU_TOP/kernel/config/onpu.config" ] && fragments="$fragments $NPU_TOP/kernel/config/onpu.config"
[ "$flavour" = debug ] && fragments="$fragments $NPU_TOP/kernel/config/debug.config"
# shellcheck disable=SC2086
config_hash=$(cat $fragments | sha256sum | cut -c1-12)
build=$kdir/build-$flavour-$config_hash
make_k() {
	in_root make -C "$src" O="$build" LLVM=-19 "$@"
}

if [ ! -f "$build/.npu-configured" ]; then
	stage "configuring the $flavour kernel ($config_hash)"
	rm -rf "$build"
	# A new configuration starts from a copy of the newest finished build of
	# the flavour, if any: kbuild tracks which objects use which option, so
	# only what the changed options touch is rebuilt, not the whole kernel.
	seed=$(ls -td "$kdir"/build-"$flavour"-*/.npu-built 2>/dev/null | head -n1 || true)
	if [ -n "$seed" ]; then
		cp -a "${seed%/.npu-built}" "$build"
		rm -f "$build/.npu-built" "$build/.npu-configured"
	else
		mkdir -p "$build"
	fi
	make_k -s tinyconfig >&2
	# shellcheck disable=SC2086
	in_root sh -c "cd '$build' && '$src/scripts/kconfig/merge_config.sh' -m -O . .config $fragments" >&2
	make_k -s olddefconfig >&2
	# Every option a fragment asks for must have survived; a dropped one means
	# a missing dependency, and the build would silently lack a feature.
	missing=$(cat $fragments | grep -E '^CONFIG_[A-Z0-9_]+=' | while IFS= read -r line; do
		grep -qxF "$line" "$build/.config" || echo "$line"
	done)
	[ -z "$missing" ] || die "kernel config dropped: $(echo $missing)"
	make_k -s rustavailable >&2 || die "Rust is not available for the kernel build"
	touch "$build/.npu-configured"
	stage_done
fi

# A finished build is not run through make again (a no-op make of the tree
# costs tens of seconds): its stamp names everything it was built from.
built_key="$version|$patch_hash|$config_hash|$ROOT_KEY"
if [ "$(cat "$build/.npu-built" 2>/dev/null)" = "$built_key" ] && [ -f "$build/arch/x86/boot/bzImage" ]; then
	echo "$build"
	exit 0
fi
stage "building the $flavour kernel (linux $version)"
rm -f "$build/.npu-built"
blog=$build/.npu-build.log
total=$(cat "$kdir/objects-$flavour" 2>/dev/null || true)
# Progress every 30 s: object files in the build directory (of how many the
# last finished build of this flavour had) and the step make is on.
NPU_PROGRESS_STATUS="printf '%s objects%s, at: %s' \"\$(find '$build' -name '*.o' | wc -l)\" '${total:+ of ~$total}' \"\$(tail -n1 '$blog' | tr -s ' ' | cut -c1-70)\""
# The onpu driver's directory (drivers/accel/onpu, kernel patch 0029) holds
# only its Kconfig and Makefile until `scripts/module.sh intree` copies the
# driver in: the kernel build leaves it out, so it never depends on driver/.
make_logged() { make_k -j"$(nproc)" CONFIG_DRM_ACCEL_ONPU= bzImage modules >"$blog" 2>&1; }
if ! with_progress "building the $flavour kernel" make_logged; then
	grep -E 'error|Error' "$blog" | head -n 20 >&2
	tail -n 30 "$blog" >&2
	die "kernel build failed (log: $blog)"
fi
find "$build" -name '*.o' | wc -l >"$kdir/objects-$flavour"
in_root rustc --version >"$build/.npu-rustc"
echo "$version" >"$build/.npu-version"
echo "$built_key" >"$build/.npu-built"
stage_done
echo "$build"
