#!/usr/bin/env bash
# Boot a kernel flavour N times with a trivial passing test and count the
# boots the harness fails (e.g. an early-boot kernel report):
#   scripts/boot-soak.sh [N] [base|debug]
# NPU_GUEST_CPU picks the guest CPU model (default: vm.sh's).
. "$(dirname "$0")/common.sh"
n=${1:-30} flavour=${2:-debug}
bad=0
for i in $(seq "$n"); do
	if "$NPU_TOP/scripts/vm.sh" --name "soak-$flavour" --kernel "$flavour" --no-device --timeout 300 \
		-- /tests/harness/pass.sh >/dev/null 2>&1; then
		echo "boot $i: ok"
	else
		bad=$((bad + 1))
		mkdir -p "$NPU_TOP/build/runs/soak-failures"
		cp "$NPU_TOP/build/runs/soak-$flavour/serial.log" "$NPU_TOP/build/runs/soak-failures/boot-$i.log"
		echo "boot $i: FAILED: $(grep -m1 -E 'BUG:|WARNING:|panic' "$NPU_TOP/build/runs/soak-$flavour/serial.log" | cut -c1-120)"
	fi
done
echo "soak ($flavour, cpu ${NPU_GUEST_CPU:-default}): $((n - bad)) passed, $bad failed"
[ $bad = 0 ]
