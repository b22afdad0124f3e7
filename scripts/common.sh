# Shared helpers for the harness scripts. Sourced, never run.
# shellcheck shell=bash

set -euo pipefail

NPU_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Heavy outputs live outside the repo, keyed by version inside.
NPU_CACHE=${NPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/npu-stack}
mkdir -p "$NPU_CACHE"

# The build root: Debian trixie with the kernel toolchain and QEMU.
ROOT_SUITE=trixie
ROOT_PACKAGES="make gcc libc6-dev flex bison bc libelf-dev libssl-dev cpio python3 \
clang-19 lld-19 llvm-19 libclang-19-dev rustc rust-src bindgen xz-utils \
busybox-static kmod ca-certificates patch"
ROOT_BACKPORTS_PACKAGES="qemu-system-x86"
# The kernel series we build against; any point release the mirror still has.
KERNEL_SERIES=7.2
ROOT_KEY=$(printf '%s|%s|%s|%s' "$ROOT_SUITE" "$ROOT_PACKAGES" "$ROOT_BACKPORTS_PACKAGES" "v1" \
	| sha256sum | cut -c1-12)
BUILDROOT=$NPU_CACHE/buildroot-$ROOT_SUITE-$ROOT_KEY

_stage_start=0
stage() {
	_stage_name=$1
	_stage_start=$(date +%s)
	printf '==> %s\n' "$_stage_name" >&2
}
stage_done() {
	printf '==> %s: done in %ss\n' "$_stage_name" "$(( $(date +%s) - _stage_start ))" >&2
}
# Run a command, saying every 30 s that it is still running (terminals and CI
# logs alike): with_progress LABEL CMD... ; NPU_PROGRESS_STATUS, if set, is a
# command whose one-line output is shown beside the time (e.g. a count of
# objects built).
with_progress() {
	local label=$1 pid rc start ticker
	shift
	start=$(date +%s)
	"$@" &
	pid=$!
	(
		while sleep "${NPU_PROGRESS_INTERVAL:-30}" </dev/null >/dev/null 2>&1; do
			kill -0 "$pid" 2>/dev/null || exit 0
			extra=""
			[ -n "${NPU_PROGRESS_STATUS:-}" ] && extra=": $(eval "$NPU_PROGRESS_STATUS" 2>/dev/null | head -n1)"
			printf '==> %s: running for %ss%s\n' "$label" "$(($(date +%s) - start))" "$extra" >&2
		done
	) &
	ticker=$!
	rc=0
	wait "$pid" || rc=$?
	kill "$ticker" 2>/dev/null || true
	wait "$ticker" 2>/dev/null || true
	return $rc
}
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# Run a command inside the build root, with the repo and the cache visible at
# the same paths as on the host. A private mount namespace means nothing is
# left mounted behind us, whatever happens.
in_root() {
	[ -x "$BUILDROOT/usr/bin/env" ] || die "build root missing: run scripts/buildroot.sh"
	unshare --mount --propagation private -- /bin/sh -e -c '
		root=$1; shift
		for d in proc sys dev dev/pts; do mkdir -p "$root/$d"; done
		mount -t proc proc "$root/proc"
		mount --rbind /sys "$root/sys"
		mount --rbind /dev "$root/dev"
		for d in "$NPU_TOP" "$NPU_CACHE" ${NPU_EXTRA_BINDS:-}; do
			mkdir -p "$root$d"
			mount --bind "$d" "$root$d"
		done
		exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
	' in_root "$BUILDROOT" "$@"
}
export NPU_TOP NPU_CACHE
