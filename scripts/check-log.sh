#!/usr/bin/env bash
# Judge one guest run: scripts/check-log.sh RUN_DIR QEMU_EXIT_STATUS
# Prints the TAP, then any kernel report, and exits non-zero on failure.
set -uo pipefail
run=$1 qemu_rc=$2
log=$run/serial.log
fail=0

sed -n '/NPU-HARNESS: TAP-BEGIN/,/NPU-HARNESS: TAP-END/p' "$log" | sed '1d;$d' | tr -d '\r'

# What a kernel says when something is wrong.
reports='Oops|BUG:|WARNING:|KASAN|UBSAN|kmemleak: [0-9]+ new suspected|unreferenced object|Kernel panic|Call Trace|possible circular locking|possible recursive locking|inconsistent lock state|INFO: task .* blocked|general protection fault|list_add corruption|list_del corruption|refcount_t:|DMA-API: .*device driver'
if grep -En "$reports" "$log" >"$run/reports.txt"; then
	echo "# kernel reports in $log:"
	grep -En -B2 -A25 "$reports" "$log" | head -80 | sed 's/^/#   /'
	fail=1
fi
if grep -q 'NPU-HARNESS: TAP-END' "$log"; then
	grep -q '^not ok' <(sed -n '/TAP-BEGIN/,/TAP-END/p' "$log" | tr -d '\r') && fail=1
	grep -q 'NPU-HARNESS: insmod failed\|NPU-HARNESS: rmmod failed' "$log" && { echo "# module load/unload failed"; fail=1; }
else
	echo "# the guest did not finish its tests (qemu exit $qemu_rc); last lines of $log:"
	tail -n 30 "$log" | sed 's/^/#   /'
	fail=1
fi
if [ -s "$run/device.log" ] && grep -q 'panicked' "$run/device.log"; then
	echo "# the device server panicked:"; sed 's/^/#   /' "$run/device.log" | tail -20
	fail=1
fi
exit $fail
