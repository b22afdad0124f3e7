#!/usr/bin/env bash
# The harness must fail on every way a run can go wrong, and say which. Each
# case below breaks one thing on purpose and requires the harness to fail
# with its own message; one control case must pass. Prints TAP; writes
# build/results/harness.counts.
#
# First the TAP checker itself against hand-written streams
# (tests/harness/tap/*.tap, the verdict in *.expect), then guest runs.
. "$(dirname "$0")/common.sh"
set +e # every case's failure is expected and judged below
cd "$NPU_TOP"
results=$NPU_TOP/build/results
mkdir -p "$results"

golden=(tests/harness/tap/*.tap)
guest_cases=(pass not-ok crash skip bad-plan module-fails warn hang-after-tap server-abort build-fails)
echo "TAP version 13"
echo "1..$((${#golden[@]} + ${#guest_cases[@]}))"
n=0 passed=0 failed=0
report() { # report OK? NAME [DETAIL...]
	local ok=$1 name=$2
	shift 2
	n=$((n + 1))
	if [ "$ok" = 1 ]; then
		echo "ok $n $name"
		passed=$((passed + 1))
	else
		printf '%s\n' "$@" | sed 's/^/# /' | tail -n 40
		echo "not ok $n $name"
		failed=$((failed + 1))
	fi
}

# --- the TAP checker on streams whose verdict is known --------------------
for f in "${golden[@]}"; do
	read -r verdict want <"${f%.tap}.expect"
	out=$(python3 scripts/tap-check.py --counts "$results/golden.counts" "$f")
	rc=$?
	case $verdict in
	pass) ok=$([ $rc = 0 ] && [ "$(cat "$results/golden.counts")" = "$want" ] && echo 1 || echo 0) ;;
	fail) ok=$([ $rc != 0 ] && grep -qF -- "$want" <<<"$out" && echo 1 || echo 0) ;;
	*) die "$f: bad .expect verdict '$verdict'" ;;
	esac
	report "$ok" "tap-check: $(basename "$f" .tap) is judged '$verdict${want:+ $want}'" \
		"tap-check exit $rc, counts $(cat "$results/golden.counts" 2>/dev/null):" "$out"
done
rm -f "$results/golden.counts"

# --- guest runs broken one way each ------------------------------------------
warn_ko=$(scripts/module.sh base tests/harness/warn_on_load | tail -n1) && [ -f "$warn_ko" ] ||
	die "the warn_on_load module did not build"
fail_ko=$(scripts/module.sh base tests/harness/fail_on_load | tail -n1) && [ -f "$fail_ko" ] ||
	die "the fail_on_load module did not build"
server=$NPU_TOP/target/release/npu-device-server
cargo build -q --release -p npu-device --bin npu-device-server || die "the device server did not build"

# expect NAME PATTERN [vm.sh ARGS...]: the run must fail and print PATTERN
# (an extended regex) in its "# FAIL:" lines or TAP, or, for PATTERN "PASS",
# must pass.
expect() {
	local name=$1 want=$2 out rc
	shift 2
	out=$(timeout 900 scripts/vm.sh --name "harness-$name" --timeout 120 "$@" 2>&1)
	rc=$?
	if [ "$want" = PASS ]; then
		report "$([ $rc = 0 ] && echo 1 || echo 0)" "$name: a good run passes" "vm.sh exit $rc:" "$out"
	else
		local ok=0
		[ $rc != 0 ] && grep -Eq -- "$want" <<<"$out" && ok=1
		report "$ok" "$name: the run fails, saying /$want/" "vm.sh exit $rc, expected non-zero with /$want/:" "$out"
	fi
}

for c in "${guest_cases[@]}"; do
	case $c in
	pass) expect pass PASS --no-device -- /tests/harness/pass.sh ;;
	not-ok) expect not-ok 'FAIL: .*deliberately failing test point: not ok' --no-device -- /tests/harness/not-ok.sh ;;
	crash) expect crash 'FAIL: .*exit status 139' --no-device -- /tests/harness/crash.sh ;;
	skip) expect skip 'FAIL: .*skipping is not allowed' --no-device -- /tests/harness/skip.sh ;;
	bad-plan) expect bad-plan 'FAIL: .*plan 1\.\.3 but 2 test points' --no-device -- /tests/harness/bad-plan.sh ;;
	module-fails) expect module-fails 'FAIL: .*Bail out! the module fail_on_load.ko failed to load' \
		--no-device --module "$fail_ko" -- /tests/harness/pass.sh ;;
	warn) expect warn 'FAIL: kernel reports in serial.log.*(WARNING|deliberate warning)' \
		--no-device --module "$warn_ko" -- /tests/harness/pass.sh ;;
	hang-after-tap) expect hang-after-tap 'FAIL: QEMU was killed after the 120 s time limit' \
		--no-device --hang-after-tap -- /tests/harness/pass.sh ;;
	server-abort)
		NPU_DEVICE_SERVER=$NPU_TOP/tests/harness/abort-server.sh NPU_REAL_DEVICE_SERVER=$server \
			expect server-abort 'FAIL: the device server died of signal 6 \(SIGABRT\)' -- /tests/pci-probe.sh ;;
	build-fails)
		NPU_GUEST_RUSTFLAGS="-C npu-harness-selftest-no-such-option" \
			expect build-fails 'the guest tools did not build' --no-device -- /tests/harness/pass.sh ;;
	esac
done

echo "$passed $failed 0" >"$results/harness.counts"
echo "# harness: $passed passed, $failed failed"
[ $failed = 0 ]
