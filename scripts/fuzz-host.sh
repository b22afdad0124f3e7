#!/usr/bin/env bash
# Host-side fuzzing (issue 6): the cargo-fuzz targets in fuzz/.
#
#   scripts/fuzz-host.sh short [TARGET...]   ~25 s a target, for the test suite
#   scripts/fuzz-host.sh long  [TARGET...]   FUZZ_SECONDS (default 600) a target
#
# Targets: cmdbuf (command decoder/executor), server (vfio-user backend
# handlers), text (libnpu's kernel-language parser). Seeds come from
# fuzz/corpus/TARGET (read only); what the fuzzer learns goes to a corpus
# in the cache, so later runs start from it. A finding is written to
# $cache/artifacts/TARGET/ and fails the run; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a --target-dir "$cache/target" TARGET FILE
# (from fuzz/).
set -euo pipefail

mode=${1:-short}
shift || true
case $mode in
short) seconds=25 ;;
long) seconds=${FUZZ_SECONDS:-600} ;;
*)
	echo "usage: $0 short|long [TARGET...]" >&2
	exit 2
	;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${NPU_CACHE:-$HOME/.cache/npu-stack}/fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cmdbuf server text)

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# libfuzzer-sys compiles libFuzzer (C++) from source.
if ! command -v c++ >/dev/null 2>&1; then
	echo "fuzz-host: installing g++ (libFuzzer is C++)" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz-host: installing cargo-fuzz from crates.io" >&2
	cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sancov); the
# machine has one stable toolchain, which accepts them with this set.
export RUSTC_BOOTSTRAP=1

cd "$root/fuzz"
opts=(-a --target-dir "$cache/target")
# Build first, so a build failure is not mistaken for a finding.
cargo fuzz build "${opts[@]}"

passed=0
failed=0
for t in "${targets[@]}"; do
	mkdir -p "$cache/corpus/$t" "$cache/artifacts/$t"
	log="$cache/$t.log"
	start=$(date +%s)
	# -timeout: any single input slower than 10 s is a hang finding.
	# -rss_limit_mb/-malloc_limit_mb: a runaway allocation is a finding.
	if cargo fuzz run "${opts[@]}" "$t" "$cache/corpus/$t" "corpus/$t" -- \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
		-max_len=4096 -print_final_stats=1 -artifact_prefix="$cache/artifacts/$t/" >"$log" 2>&1; then
		passed=$((passed + 1))
		status=ok
	else
		failed=$((failed + 1))
		status=FAILED
		grep -E "panicked|ERROR|SUMMARY|Test unit written|artifact" "$log" | head -n 20 >&2 || true
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
	corpus=$(find "$cache/corpus/$t" -type f | wc -l)
	echo "fuzz-host: $t $status: ${execs:-?} execs in $(($(date +%s) - start)) s, ${cov:-cov: ?}, corpus $corpus (log $log)"
done
echo "fuzz-host: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
