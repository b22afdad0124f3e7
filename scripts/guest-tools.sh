#!/usr/bin/env bash
# Build the guest's programs as static executables; print their paths: the
# Rust tools, and libnpu's C example linked against libnpu.a.
. "$(dirname "$0")/common.sh"
target=x86_64-unknown-linux-gnu
# The explicit --target keeps crt-static off build scripts and proc macros.
# (A static build has no cdylib: rustc says so and drops it.)
# NPU_GUEST_RUSTFLAGS adds flags (the harness self-test breaks the build with it).
# The programs listed are the ones this build produced (cargo's JSON
# messages), never whatever an older build left in the target directory.
log=$(mktemp) json=$(mktemp)
trap 'rm -f "$log" "$json"' EXIT
# Without debug info: the line tables are 5/6 of each static program (10 MB
# vs 1.7 MB) and the initramfs lives in the guest's 1 GiB of RAM (at 190 MB
# the ioctl fuzzer's processes met the OOM killer). Symbols stay, so a
# panic's backtrace still names its functions.
if ! (cd "$NPU_TOP" && RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo ${NPU_GUEST_RUSTFLAGS:-}" \
	cargo build -q --release --target "$target" -p npu-tools --bins -p libnpu --lib \
	--message-format=json-render-diagnostics) >"$json" 2>"$log"; then
	grep -v "dropping unsupported crate type .cdylib." "$log" | tail -n 40 >&2
	die "the guest tools did not build (cargo build --target $target failed)"
fi
grep -v "dropping unsupported crate type .cdylib." "$log" >&2 || true
dir=$NPU_TOP/target/$target/release
mapfile -t programs < <(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4)
[ ${#programs[@]} -gt 0 ] && [ -f "$dir/npu-submit" ] || die "the guest tools did not build (no programs)"
# (The static glibc link warns about NSS functions std links but never calls
# here; the log is shown only when the link fails.)
cc -static -O2 -Wall -Werror -Wl,--strip-debug -I "$NPU_TOP/libnpu/include" "$NPU_TOP/libnpu/examples/c/runtime_api.c" \
	"$dir/libnpu.a" -lpthread -ldl -lm -o "$dir/npu-c-example" 2>"$dir/npu-c-example.log" ||
	{ cat "$dir/npu-c-example.log" >&2; die "the C example did not build"; }
printf '%s\n' "${programs[@]}" "$dir/npu-c-example"
