#!/usr/bin/env bash
# Judge one guest run:
#   scripts/check-log.sh --qemu-rc N [--timeout SECS] [--device] [--allow-skip] RUN_DIR
# Prints the run's TAP stream (tap.log, nested per test), then one line per
# reason the run failed, each saying which check failed; writes RUN_DIR/counts
# ("PASSED FAILED SKIPPED" over the leaf test points) and exits non-zero on
# any failure.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
qemu_rc="" timeout=? device=0 allow_skip=()
while [ $# -gt 1 ]; do
	case $1 in
	--qemu-rc) qemu_rc=$2; shift 2;;
	--timeout) timeout=$2; shift 2;;
	--device) device=1; shift;;
	--allow-skip) allow_skip=(--allow-skip); shift;;
	*) echo "check-log: unknown option $1" >&2; exit 2;;
	esac
done
run=$1
log=$run/serial.log tap=$run/tap.log
reasons=()

tr -d '\r' <"$tap" 2>/dev/null | grep -v '^# NPU-HARNESS: done' || true

# 1. The TAP stream: plans, counts, not ok, skips, nesting.
if ! tapout=$(python3 "$top/scripts/tap-check.py" "${allow_skip[@]}" --counts "$run/counts" \
	--name "$(basename "$run")" "$tap"); then
	while IFS= read -r l; do [ -n "$l" ] && reasons+=("${l#tap: }"); done <<<"$tapout"
	[ -s "$run/counts" ] || echo "0 1 0" >"$run/counts"
fi

# 2. The guest reached its end: the last line of the TAP channel, written
#    after the tests, the kmemleak scan and sync.
done_line=$(tr -d '\r' <"$tap" 2>/dev/null | grep '^# NPU-HARNESS: done rc=' | tail -n1)
if [ -z "$done_line" ]; then
	if grep -q 'NPU-HARNESS: TAP-END' "$log" 2>/dev/null; then
		reasons+=("the guest finished its tests but never reached its end (hang in the kmemleak scan or sync)")
	else
		reasons+=("the guest did not finish its tests (crash, hang or panic)")
	fi
fi

# 3. QEMU powered off by itself: 124/137 is our timeout.
case $qemu_rc in
0) ;;
124 | 137) reasons+=("QEMU was killed after the ${timeout} s time limit: the guest hung${done_line:+ at power-off, after its last line}") ;;
*) reasons+=("QEMU exited with status $qemu_rc") ;;
esac

# 4. What a kernel says when something is wrong.
reports='Oops|BUG:|WARNING:|KASAN|UBSAN|kmemleak: [0-9]+ new suspected|unreferenced object|Kernel panic|Call Trace|possible circular locking|possible recursive locking|inconsistent lock state|INFO: task .* blocked|general protection fault|list_add corruption|list_del corruption|refcount_t:|DMA-API: .*device driver'
if grep -En "$reports" "$log" >"$run/reports.txt" 2>/dev/null; then
	reasons+=("kernel reports in serial.log (first: $(head -n1 "$run/reports.txt" | cut -c1-120))")
	echo "# kernel reports in $log:"
	grep -En -B2 -A25 "$reports" "$log" | head -80 | sed 's/^/#   /'
fi

# 5. The device server exited by itself with status 0.
if [ "$device" = 1 ]; then
	drc=$(cat "$run/device.rc" 2>/dev/null || echo missing)
	case $drc in
	0) ;;
	hung) reasons+=("the device server did not exit after QEMU disconnected (killed)") ;;
	missing) reasons+=("the device server's exit status is missing") ;;
	*)
		if [ "$drc" -gt 128 ] 2>/dev/null; then
			sig=$(kill -l "$((drc - 128))" 2>/dev/null || echo "?")
			reasons+=("the device server died of signal $((drc - 128)) (SIG$sig)")
		else
			reasons+=("the device server exited with status $drc")
		fi
		;;
	esac
	if grep -q 'panicked' "$run/device.log" 2>/dev/null; then
		reasons+=("the device server panicked")
	fi
	if [ "$drc" != 0 ] || grep -q 'panicked' "$run/device.log" 2>/dev/null; then
		echo "# device server log (last lines):"
		tail -n 20 "$run/device.log" 2>/dev/null | sed 's/^/#   /'
	fi
fi

if [ ${#reasons[@]} -gt 0 ]; then
	if [ -z "$done_line" ] || [ "$qemu_rc" != 0 ]; then
		echo "# last lines of $log:"
		tail -n 30 "$log" 2>/dev/null | tr -d '\r' | sed 's/^/#   /'
	fi
	for r in "${reasons[@]}"; do echo "# FAIL: $r"; done
	# A run with no failed point still failed: count it once.
	read -r p f s <"$run/counts" 2>/dev/null || { p=0 f=0 s=0; }
	[ "${f:-0}" -gt 0 ] || echo "${p:-0} 1 ${s:-0}" >"$run/counts"
	exit 1
fi
exit 0
