#!/usr/bin/env bash
# The harness must catch a kernel warning: boot with a module that WARNs on
# load and require the run to fail with the warning shown. Prints TAP.
. "$(dirname "$0")/common.sh"
ko=$("$NPU_TOP/scripts/module.sh" base "$NPU_TOP/tests/harness/warn_on_load" | tail -n1)
echo "TAP version 13"
echo "1..1"
set +e
out=$("$NPU_TOP/scripts/vm.sh" --name harness-selftest --no-device --module "$ko" -- true 2>&1)
rc=$?
set -e
if [ $rc -ne 0 ] && grep -q 'WARNING:.*warn_on_load\|deliberate warning' <<<"$out"; then
	echo "ok 1 a module that WARNs on load fails the run, with the warning shown"
	echo "harness: 1 passed, 0 failed"
else
	echo "# vm.sh exit $rc, output:"
	sed 's/^/#   /' <<<"$out" | tail -40
	echo "not ok 1 a module that WARNs on load fails the run, with the warning shown"
	echo "harness: 0 passed, 1 failed"
	exit 1
fi
