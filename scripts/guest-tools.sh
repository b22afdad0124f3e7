#!/usr/bin/env bash
# Build the guest's programs as static executables; print their paths: the
# Rust tools, and libnpu's C example linked against libnpu.a.
. "$(dirname "$0")/common.sh"
target=x86_64-unknown-linux-gnu
# The explicit --target keeps crt-static off build scripts and proc macros.
# (A static build has no cdylib: rustc says so and drops it.)
(cd "$NPU_TOP" && RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build -q --release --target "$target" -p npu-tools --bins -p libnpu --lib 2>&1 |
	grep -v "dropping unsupported crate type .cdylib." >&2 || true)
dir=$NPU_TOP/target/$target/release
[ -f "$dir/npu-submit" ] || die "guest tools did not build"
# (The static glibc link warns about NSS functions std links but never calls
# here; the log is shown only when the link fails.)
cc -static -O2 -Wall -Werror -I "$NPU_TOP/libnpu/include" "$NPU_TOP/libnpu/examples/c/run_kernel.c" \
	"$dir/libnpu.a" -lpthread -ldl -lm -o "$dir/npu-c-example" 2>"$dir/npu-c-example.log" ||
	{ cat "$dir/npu-c-example.log" >&2; die "the C example did not build"; }
for f in "$dir"/*; do
	[ -f "$f" ] && [ -x "$f" ] && echo "$f"
done
true
