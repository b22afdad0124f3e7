#!/bin/busybox sh
# /init of the test guest: mount, run the harness's script, power off.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo "NPU-HARNESS: booted $(uname -r)"
rc=0
echo "NPU-HARNESS: TAP-BEGIN"
. /run.sh || rc=$?
echo "NPU-HARNESS: TAP-END"
if [ -w /sys/kernel/debug/kmemleak ]; then
	# Two scans: kmemleak reports an object only after it looked lost twice.
	echo scan > /sys/kernel/debug/kmemleak; sleep 1
	echo scan > /sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak
	echo "NPU-HARNESS: kmemleak scanned"
fi
echo "NPU-HARNESS: done rc=$rc"
sync
poweroff -f
