#!/usr/bin/env bash
# The whole test suite (`make test`): every stage runs even after one fails,
# then one summary line over all of them:
#
#   total: N passed, N failed, N skipped
#
# Stages: lint (rustfmt, generated uAPI bindings, clippy), host (cargo test),
# fuzz (cargo-fuzz, short),
# guest (tools/selftests/runs.list in QEMU), harness (the harness's own
# failure paths). A skip is a failure here: every test the suite lists must
# run. Each stage leaves "PASSED FAILED SKIPPED" in build/results/STAGE.counts.
. "$(dirname "$0")/common.sh"
cd "$NPU_TOP"
results=$NPU_TOP/build/results
rm -rf "$results"
mkdir -p "$results"
stages=(${NPU_TEST_STAGES:-lint host fuzz guest harness})
CARGO=${CARGO:-cargo}
export NPU_REQUIRE_NUMPY=1

# Run one stage: its output goes to the terminal and to build/results/STAGE.log.
run_stage() {
	local name=$1
	shift
	stage "test stage: $name"
	local rc=0
	"$@" 2>&1 | tee "$results/$name.log" || rc=$?
	[ -s "$results/$name.counts" ] || echo "0 $([ $rc = 0 ] && echo 0 || echo 1) 0" >"$results/$name.counts"
	read -r p f s <"$results/$name.counts"
	# A failed stage with no failed test counted still failed.
	[ $rc = 0 ] || [ "$f" -gt 0 ] || echo "$p 1 $s" >"$results/$name.counts"
	printf '==> test stage %s: %s (%ss)\n' "$name" "$([ $rc = 0 ] && echo passed || echo FAILED)" \
		"$(($(date +%s) - _stage_start))" >&2
	return 0
}

lint() {
	local p=0 f=0
	if $CARGO fmt --all --check >"$results/fmt.out" 2>&1; then
		p=$((p + 1)); echo "ok cargo fmt --check"
	else
		f=$((f + 1)); echo "not ok cargo fmt --check: $(grep -c '^Diff in' "$results/fmt.out") hunks"
		head -n 40 "$results/fmt.out"
	fi
	# The driver is not a cargo package: rustfmt with the kernel's settings
	# (its .rustfmt.toml: edition 2021, defaults otherwise), from the crate
	# root through its modules. Its clippy run is the module build (CLIPPY=1).
	if rustfmt --check --edition 2021 driver/onpu.rs >"$results/fmt-driver.out" 2>&1; then
		p=$((p + 1)); echo "ok rustfmt --check driver/"
	else
		f=$((f + 1)); echo "not ok rustfmt --check driver/: $(grep -c '^Diff in' "$results/fmt-driver.out") hunks"
		head -n 40 "$results/fmt-driver.out"
	fi
	# The uAPI crate's bindings are generated from the C header: regenerate
	# them and fail on any difference, so the two can never drift.
	if scripts/uapi-bindgen.sh --check >"$results/uapi-bindgen.out" 2>&1; then
		p=$((p + 1)); echo "ok uapi/src/bindings.rs is what onpu_accel.h generates"
	else
		f=$((f + 1)); echo "not ok uapi/src/bindings.rs differs from what onpu_accel.h generates"
		head -n 40 "$results/uapi-bindgen.out"
	fi
	if $CARGO clippy --workspace --all-targets --release -q -- -D warnings >"$results/clippy.out" 2>&1; then
		p=$((p + 1)); echo "ok cargo clippy -D warnings"
	else
		f=$((f + 1)); echo "not ok cargo clippy -D warnings"
		grep -E '^(error|warning)' -A6 "$results/clippy.out" | head -n 60
	fi
	echo "$p $f 0" >"$results/lint.counts"
	[ $f = 0 ]
}

host() {
	local rc=0
	cargo_test() { $CARGO test --workspace --release >"$results/host.out" 2>&1; }
	with_progress "cargo test" cargo_test || rc=$?
	grep -E '^(test result:|failures:|---- |thread .* panicked|error(\[|:))' "$results/host.out" | head -n 80
	# "test result: ok. 12 passed; 0 failed; 1 ignored; ..." per test binary.
	awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i;
		if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
		END { print p + 0, f + 0, s + 0 }' "$results/host.out" >"$results/host.counts"
	read -r p f s <"$results/host.counts"
	[ "$s" = 0 ] || echo "# FAIL: $s host tests are #[ignore]d: every test must run"
	[ $rc = 0 ] && [ "$s" = 0 ]
}

fuzz() {
	local rc=0
	# Counted from its own copy, complete once the pipeline ends: the
	# stage's fuzz.log is written by run_stage's tee, which may not have
	# caught up yet (the count was then lost).
	scripts/fuzz-host.sh short 2>&1 | tee "$results/fuzz-host.out"
	rc=${PIPESTATUS[0]}
	awk '/^fuzz-host: [0-9]+ passed, [0-9]+ failed/ { print $2, $4, 0 }' "$results/fuzz-host.out" >"$results/fuzz.counts"
	return $rc
}

# (run_stage calls a stage in a `||` list, where bash ignores errexit: each
# step's status is checked here.)
guest() {
	local rc=0
	scripts/buildroot.sh || return 1
	scripts/guest-tests.sh || rc=$?
	scripts/reliability-report.sh >/dev/null || rc=1
	return $rc
}

harness() {
	scripts/harness-selftest.sh
}

for s in "${stages[@]}"; do
	case $s in
	lint | host | fuzz | guest | harness) run_stage "$s" "$s" ;;
	*) die "unknown test stage '$s'" ;;
	esac
done

tp=0 tf=0 ts=0
echo
for s in "${stages[@]}"; do
	read -r p f n <"$results/$s.counts"
	printf '%-8s %5s passed, %s failed, %s skipped\n' "$s:" "$p" "$f" "$n"
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + n))
done
echo "total: $tp passed, $tf failed, $ts skipped"
[ "$tf" = 0 ] && [ "$ts" = 0 ]
