#!/bin/busybox sh
# /init of the test guest: mount, run the harness's script, power off.
#
# Two channels: the kernel and the programs' stderr write to the console
# (ttyS0, the host's serial.log); the TAP stream goes alone to ttyS1 (the
# host's tap.log), so no kernel message can splice into a result line.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo "NPU-HARNESS: booted $(uname -r)"
rc=0
# (A failed redirection of `exec` would end the shell, and with it /init:
# try it in a subshell first.)
if (exec 3>/dev/ttyS1) 2>/dev/null; then
	exec 3>/dev/ttyS1
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
else
	# No TAP channel: the host sees an empty stream and fails the run.
	echo "NPU-HARNESS: no /dev/ttyS1 for the TAP stream"
	exec 3>/dev/null
fi
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
[ -f /harness-hang-after-tap ] && { echo "NPU-HARNESS: hanging (harness self-test)"; while :; do sleep 60; done; }
sync
# The host requires this line last on the TAP channel: the guest got here.
echo "# NPU-HARNESS: done rc=$rc" >&3
echo "NPU-HARNESS: done rc=$rc"
# The last close of the tty waits until its output has left the UART.
exec 3>&-
poweroff -f
