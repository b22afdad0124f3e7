#!/usr/bin/env bash
# Generate the npu-uapi crate's Rust ABI from the C header, the one source:
#   scripts/uapi-bindgen.sh          rewrite uapi/src/bindings.rs
#   scripts/uapi-bindgen.sh --check  fail if the committed file differs
# The bindgen and libclang of the build root (the ones that generate the
# kernel's uapi crate) do the work, so a userspace build needs neither; the
# lint stage of `make test` runs --check, so the file cannot drift from the
# header. Host rustfmt formats it, as `cargo fmt` would.
. "$(dirname "$0")/common.sh"

mode=${1:-write}
case $mode in write|--check) ;; *) die "usage: $0 [--check]";; esac
header=uapi/include/uapi/drm/onpu_accel.h
committed=$NPU_TOP/uapi/src/bindings.rs
"$NPU_TOP/scripts/buildroot.sh" >/dev/null
out=$NPU_TOP/build/uapi-bindgen
mkdir -p "$out"
# - Only what the header declares (and the __u32-style types it uses).
# - Enum constants keep their C names (DRM_ONPU_PARAM_CAPS, not
#   drm_onpu_param_DRM_ONPU_PARAM_CAPS): they are the names of the uAPI.
# - No layout tests: uapi/src/layout.rs compares with a C compiler instead.
# - drm.h comes from the root's linux-libc-dev, as for any userspace build.
in_root sh -c 'cd "$1" && bindgen "$2" \
	--allowlist-file ".*/onpu_accel\.h" \
	--no-prepend-enum-name --use-core --no-layout-tests \
	--with-derive-default --with-derive-eq --with-derive-partialeq \
	--raw-line "// SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note OR MIT" \
	--raw-line "// Generated from $2 by scripts/uapi-bindgen.sh: do not edit." \
	--formatter none -o "$3" -- -I/usr/include/drm' \
	sh "$NPU_TOP" "$header" "$out/bindings.rs" || die "bindgen failed on $header"
rustfmt --edition 2021 "$out/bindings.rs" || die "rustfmt failed on the generated bindings"
if [ "$mode" = --check ]; then
	diff -u "$committed" "$out/bindings.rs" \
		|| die "uapi/src/bindings.rs is not what $header generates: run scripts/uapi-bindgen.sh"
	echo "uapi/src/bindings.rs matches $header"
else
	cp "$out/bindings.rs" "$committed"
	echo "$committed"
fi
