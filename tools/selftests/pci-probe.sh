#!/bin/sh
# The emulated NPU is visible on the PCI bus with its IDs and class, and has
# an MSI-X capability. TAP output, kselftest exit codes.
echo "TAP version 13"
echo "1..3"
dev=
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x4e50 ]; then
		dev=$d
	fi
done
if [ -n "$dev" ]; then echo "ok 1 npu found at ${dev##*/}"; else echo "not ok 1 no 1234:4e50 device"; exit 1; fi
class=$(cat "$dev/class")
if [ "$class" = 0x120000 ]; then echo "ok 2 class $class"; else echo "not ok 2 class $class"; exit 1; fi
# BAR0 is 64 KiB, BAR2 4 KiB: resource lines are "start end flags".
bar0=$(sed -n 1p "$dev/resource")
set -- $bar0
size=$(( $2 - $1 + 1 ))
if [ "$size" = 65536 ]; then echo "ok 3 BAR0 is 64 KiB"; else echo "not ok 3 BAR0 size $size"; exit 1; fi
