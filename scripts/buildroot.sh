#!/usr/bin/env bash
# Create the Debian trixie build root that holds the kernel toolchain (clang-19,
# rustc + rust-src, bindgen) and QEMU >= 10.1 (vfio-user-pci). Bookworm's own
# libclang is too old for a Rust kernel and its QEMU cannot attach a vfio-user
# device; see Documentation/dev/harness.rst. Idempotent: a finished root is kept.
. "$(dirname "$0")/common.sh"

# The driver's linters (clippy-driver and rustfmt of the root's own rustc
# release). They change nothing the root builds, so they are not part of
# ROOT_KEY: a root made before them gains them here without a kernel rebuild.
ROOT_LINT_PACKAGES="rust-clippy rustfmt"
install_lint_tools() {
	[ -f "$1/.npu-lint-v1" ] && return 0
	stage "installing the driver's linters into the build root"
	BUILDROOT=$1 in_root sh -c "
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends $ROOT_LINT_PACKAGES >/dev/null
	" || die "installing $ROOT_LINT_PACKAGES in the build root failed"
	touch "$1/.npu-lint-v1"
	stage_done
}

if [ -f "$BUILDROOT/.npu-complete" ]; then
	install_lint_tools "$BUILDROOT"
	exit 0
fi

need_host() {
	command -v "$1" >/dev/null 2>&1 && return
	stage "installing host package $2"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
	stage_done
}
[ "$(id -u)" = 0 ] || die "the build root needs root (debootstrap, chroot)"
need_host debootstrap debootstrap
need_host unshare util-linux

tmp=$BUILDROOT.tmp
rm -rf "$tmp"
stage "debootstrap $ROOT_SUITE into $tmp"
debootstrap --variant=minbase --include=ca-certificates "$ROOT_SUITE" "$tmp" \
	http://deb.debian.org/debian >"$NPU_CACHE/debootstrap.log" 2>&1 \
	|| { tail -20 "$NPU_CACHE/debootstrap.log"; die "debootstrap failed"; }
stage_done

cat >"$tmp/etc/apt/sources.list" <<EOS
deb http://deb.debian.org/debian $ROOT_SUITE main
deb http://deb.debian.org/debian $ROOT_SUITE-updates main
deb http://deb.debian.org/debian-security $ROOT_SUITE-security main
deb http://deb.debian.org/debian $ROOT_SUITE-backports main
EOS
# Keep downloaded packages: the cache is what makes a second run fast.
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$tmp/etc/apt/apt.conf.d/01keep"

stage "installing the toolchain and QEMU into the build root"
BUILDROOT=$tmp in_root sh -c "
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $ROOT_PACKAGES >/dev/null
	apt-get install -y -qq --no-install-recommends -t $ROOT_SUITE-backports \
		$ROOT_BACKPORTS_PACKAGES >/dev/null
" || die "package install in the build root failed"
stage_done

in_root_versions() {
	BUILDROOT=$tmp in_root sh -c 'rustc --version; bindgen --version; clang-19 --version | head -1;
		qemu-system-x86_64 --version | head -1'
}
install_lint_tools "$tmp"
in_root_versions | tee "$tmp/.npu-versions"
touch "$tmp/.npu-complete"
mv "$tmp" "$BUILDROOT"
