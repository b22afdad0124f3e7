#!/usr/bin/env bash
# Build the guest's Rust programs as static executables; print their paths.
. "$(dirname "$0")/common.sh"
target=x86_64-unknown-linux-gnu
# The explicit --target keeps crt-static off build scripts and proc macros.
(cd "$NPU_TOP" && RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build -q --release --target "$target" -p npu-tools --bins) >&2
dir=$NPU_TOP/target/$target/release
for f in "$dir"/*; do
	[ -f "$f" ] && [ -x "$f" ] && echo "$f"
done
true
