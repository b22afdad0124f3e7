#!/usr/bin/env bash
# Boot the test guest with the emulated NPU attached and run guest tests.
#
#   scripts/vm.sh [--kernel base|debug] [--device-args "ARGS"] [--no-device]
#                 [--module PATH.ko] [--name NAME] [--timeout SECS]
#                 [--allow-skip] [--shell] -- TEST [TEST...]
#
# Each TEST is a guest command line (e.g. /tests/pci-probe.sh); it must print
# kselftest TAP (a plan and its test points) on stdout and exit 0 (pass), 4
# (skip) or anything else (fail). The guest carries the TAP stream on its own
# serial port (tap.log), each test's points nested under its own test point;
# the kernel's console goes to serial.log. scripts/check-log.sh judges the run:
# it fails on a failed, missing or (without --allow-skip) skipped test point,
# a plan that does not match, a guest that did not reach its end or did not
# power off, a kernel report (Oops, BUG, WARNING, KASAN, kmemleak, lockdep),
# and a device server that did not exit cleanly. Logs stay in build/runs/NAME/.
. "$(dirname "$0")/common.sh"

flavour=base device=1 device_args="" module="" name="" timeout=600 shell=0 allow_skip=0 hang_after_tap=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) flavour=$2; shift 2;;
	--device-args) device_args=$2; shift 2;;
	--no-device) device=0; shift;;
	--module) module=$2; shift 2;;
	--name) name=$2; shift 2;;
	--timeout) timeout=$2; shift 2;;
	--shell) shell=1; shift;;
	--allow-skip) allow_skip=1; shift;;
	# Harness self-test only: the guest hangs after its TAP stream.
	--hang-after-tap) hang_after_tap=1; shift;;
	--) shift; break;;
	*) die "unknown option $1";;
	esac
done
[ $# -gt 0 ] || [ "$shell" = 1 ] || die "no guest test given"
name=${name:-run-$$}
run=$NPU_TOP/build/runs/$name
rm -rf "$run"
mkdir -p "$run"

kbuild=$("$NPU_TOP/scripts/kernel.sh" "$flavour" | tail -n1)
[ -f "$kbuild/arch/x86/boot/bzImage" ] || die "no bzImage in $kbuild"

# The guest-side script, sourced by /init with the TAP channel on fd 3: one
# test point per command (and for loading/unloading the module), each
# command's own TAP nested under it (TAP 14 subtests, four spaces deeper).
{
	echo 'tap() { printf "%s\n" "$*" >&3; }'
	if [ "$shell" = 1 ]; then
		[ -n "$module" ] && echo "insmod /lib/modules/$(basename "$module")"
		echo 'echo "NPU-HARNESS: shell (exit to power off)"; setsid cttyhack sh'
	else
		plan=$#
		[ -n "$module" ] && plan=$((plan + 2))
		echo 'tap "TAP version 13"'
		echo "tap 1..$plan"
		echo 'n=0 rc=0'
		if [ -n "$module" ]; then
			ko=$(basename "$module")
			cat <<EOS
n=\$((n + 1))
if insmod /lib/modules/$ko; then tap "ok \$n insmod $ko"
else tap "not ok \$n insmod $ko"; tap "Bail out! the module $ko failed to load"; return 1; fi
EOS
		fi
		for t in "$@"; do
			cat <<EOS
n=\$((n + 1))
echo "NPU-HARNESS: test \$n: $t"
tap "    # Subtest: $t"
( $t 2>/tmp/stderr.\$n; echo \$? >/tmp/rc.\$n ) | sed 's/^/    /' >&3
trc=\$(cat /tmp/rc.\$n 2>/dev/null || echo lost)
sed 's/^/    # stderr: /' /tmp/stderr.\$n >&3
case \$trc in
0) tap "ok \$n $t" ;;
4) tap "ok \$n $t # SKIP exit status 4" ;;
*) tap "not ok \$n $t # exit status \$trc"; rc=1 ;;
esac
EOS
		done
		if [ -n "$module" ]; then
			cat <<EOS
n=\$((n + 1))
if rmmod ${ko%.ko}; then tap "ok \$n rmmod ${ko%.ko}"; else tap "not ok \$n rmmod ${ko%.ko}"; rc=1; fi
EOS
		fi
		echo 'return $rc'
	fi
} >"$run/run.sh"
git -C "$NPU_TOP" rev-parse HEAD >"$run/commit" 2>/dev/null || echo unknown >"$run/commit"
[ -z "$(git -C "$NPU_TOP" status --porcelain --untracked-files=no 2>/dev/null)" ] || echo dirty >>"$run/commit"

NPU_HANG_AFTER_TAP=$hang_after_tap "$NPU_TOP/scripts/guest.sh" "$run/initrd.gz" "$run/run.sh" "$module"

qemu_dev=()
server_pid=
# The device server's exit status, judged by check-log.sh: it must exit by
# itself, with status 0, once QEMU has disconnected.
stop_server() {
	[ -n "$server_pid" ] || return 0
	local waited=0 rc
	while kill -0 "$server_pid" 2>/dev/null && [ $waited -lt 100 ]; do sleep 0.1; waited=$((waited + 1)); done
	if kill -0 "$server_pid" 2>/dev/null; then
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null
		echo "hung" >"$run/device.rc"
	else
		wait "$server_pid" 2>/dev/null
		rc=$?
		echo "$rc" >"$run/device.rc"
	fi
	server_pid=
}
cleanup() { stop_server; true; }
trap cleanup EXIT
if [ "$device" = 1 ]; then
	server=$NPU_TOP/target/release/npu-device-server
	(cd "$NPU_TOP" && cargo build -q --release -p npu-device --bin npu-device-server) \
		|| die "cannot build the device server"
	# Harness self-test only: a wrapper that runs the server its own way.
	server=${NPU_DEVICE_SERVER:-$server}
	sock=$run/npu.sock
	# shellcheck disable=SC2086
	"$server" --socket "$sock" $device_args 2>"$run/device.log" &
	server_pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || { cat "$run/device.log"; die "device server did not start"; }
	qemu_dev=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$sock\",\"type\":\"unix\"}}")
fi

# Under TCG: KVM does not get past the firmware on these machines.
accel=${NPU_ACCEL:-tcg}
stage "booting the $flavour kernel (${name})"
# la57=off: with 5-level paging, Linux 7.2's identify_cpu() clears the boot
# CPU's capabilities (LA57 among them) with interrupts on; an interrupt in that
# window sees pgtable_l5_enabled() false, and inline KASAN reports a
# wild-memory-access in do_raw_spin_lock (upstream: "kasan: Fix false-positive
# wild-memory-access on x86 under 5-level paging", LKML, June 2026, not in
# 7.2). A 1 GiB guest gains nothing from 5-level paging: the guest CPU does not
# offer it. Documentation/dev/harness.rst has the details. (NPU_GUEST_CPU
# overrides the model, to reproduce such a report.)
qemu=(qemu-system-x86_64 -M q35 -accel "$accel" -cpu "${NPU_GUEST_CPU:-max,la57=off}" -smp 2 -m 1G
	-object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem
	-kernel "$kbuild/arch/x86/boot/bzImage" -initrd "$run/initrd.gz"
	-append "console=ttyS0 panic=-1 oops=panic loglevel=7"
	-no-reboot -display none -monitor none "${qemu_dev[@]}")
if [ "$shell" = 1 ]; then
	qemu+=(-serial stdio)
else
	: >"$run/tap.log"
	qemu+=(-serial stdio -serial "file:$run/tap.log")
fi
if [ "$shell" = 1 ]; then
	NPU_EXTRA_BINDS=$run in_root "${qemu[@]}"
	exit 0
fi
set +e
timeout --kill-after=10 "$timeout" env NPU_EXTRA_BINDS="$run" bash -c \
	'. "$0/scripts/common.sh"; in_root "$@"' "$NPU_TOP" "${qemu[@]}" </dev/null >"$run/serial.log" 2>&1
qemu_rc=$?
set -e
stage_done
stop_server

args=(--qemu-rc "$qemu_rc" --timeout "$timeout")
[ "$device" = 1 ] && args+=(--device)
[ "$allow_skip" = 1 ] && args+=(--allow-skip)
"$NPU_TOP/scripts/check-log.sh" "${args[@]}" "$run"
