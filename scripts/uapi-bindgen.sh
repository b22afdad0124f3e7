#!/usr/bin/env bash
# Generate the npu-uapi crate's Rust ABI from C headers, the one source:
#   scripts/uapi-bindgen.sh          rewrite uapi/src/bindings.rs and drm_core.rs
#   scripts/uapi-bindgen.sh --check  fail if a committed file differs
# bindings.rs is the onpu driver's ABI (uapi/include/uapi/drm/onpu_accel.h);
# drm_core.rs the DRM core ioctls the stack uses (drm.h, through
# uapi/bindgen/drm_core.h). The bindgen and libclang of the build root (the
# ones that generate the kernel's uapi crate) do the work, so a userspace
# build needs neither; the lint stage of `make test` runs --check, so the
# files cannot drift from the headers. Host rustfmt formats them, as
# `cargo fmt` would.
. "$(dirname "$0")/common.sh"

mode=${1:-write}
case $mode in write|--check) ;; *) die "usage: $0 [--check]";; esac
"$NPU_TOP/scripts/buildroot.sh" >/dev/null
out=$NPU_TOP/build/uapi-bindgen
mkdir -p "$out"

# generate HEADER OUTPUT BINDGEN-OPTIONS...: bindgen HEADER into
# uapi/src/OUTPUT, or compare with it.
# - Enum constants keep their C names (DRM_ONPU_PARAM_CAPS, not
#   drm_onpu_param_DRM_ONPU_PARAM_CAPS): they are the names of the uAPI.
# - No layout tests: uapi/src/layout.rs compares with a C compiler instead.
# - drm.h comes from the root's linux-libc-dev, as for any userspace build;
#   --clang-macro-fallback lets clang evaluate DRM_IOWR(...)-style ioctl
#   numbers, which bindgen's own macro parser cannot.
generate() {
	local header=$1 name=$2
	shift 2
	in_root sh -c 'cd "$1" && header=$2 output=$3 && shift 3 && bindgen "$header" "$@" \
		--no-prepend-enum-name --use-core --no-layout-tests \
		--with-derive-default --with-derive-eq --with-derive-partialeq \
		--raw-line "// SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note OR MIT" \
		--raw-line "// Generated from $header by scripts/uapi-bindgen.sh: do not edit." \
		--formatter none -o "$output" -- -I/usr/include/drm' \
		sh "$NPU_TOP" "$header" "$out/$name" "$@" || die "bindgen failed on $header"
	rustfmt --edition 2021 "$out/$name" || die "rustfmt failed on $name"
	if [ "$mode" = --check ]; then
		diff -u "$NPU_TOP/uapi/src/$name" "$out/$name" \
			|| die "uapi/src/$name is not what $header generates: run scripts/uapi-bindgen.sh"
		echo "uapi/src/$name matches $header"
	else
		cp "$out/$name" "$NPU_TOP/uapi/src/$name"
		echo "$NPU_TOP/uapi/src/$name"
	fi
}

# Only what the header declares (and the __u32-style types it uses).
generate uapi/include/uapi/drm/onpu_accel.h bindings.rs \
	--allowlist-file ".*/onpu_accel\.h"
# Only the structs, flags and ioctl numbers libnpu and the tools use.
generate uapi/bindgen/drm_core.h drm_core.rs --clang-macro-fallback \
	--allowlist-type "drm_(gem_close|prime_handle|syncobj_(create|destroy|handle|wait|array|timeline_array))" \
	--allowlist-var "DRM_(IOCTL_BASE|COMMAND_BASE|CLOEXEC|RDWR|SYNCOBJ_CREATE_SIGNALED|SYNCOBJ_WAIT_FLAGS_WAIT_(ALL|FOR_SUBMIT))" \
	--allowlist-var "DRM_IOCTL_(GEM_CLOSE|PRIME_(HANDLE_TO_FD|FD_TO_HANDLE)|SYNCOBJ_(CREATE|DESTROY|HANDLE_TO_FD|FD_TO_HANDLE|WAIT|SIGNAL|QUERY|TIMELINE_SIGNAL))"
