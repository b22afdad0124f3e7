#!/usr/bin/env bash
# Boot the test guest with the emulated NPU attached and run guest tests.
#
#   scripts/vm.sh [--kernel base|debug] [--device-args "ARGS"] [--no-device]
#                 [--module PATH.ko] [--name NAME] [--timeout SECS]
#                 [--shell] -- TEST [TEST...]
#
# Each TEST is a guest command line (e.g. /tests/pci-probe.sh); it must print
# kselftest TAP or nothing, and exit 0 (pass), 4 (skip) or anything else
# (fail). The run passes when every test passes or skips, the guest reached
# its end, and the kernel log holds no Oops, BUG, WARNING, KASAN, kmemleak or
# lockdep report. Logs stay in build/runs/NAME/.
. "$(dirname "$0")/common.sh"

flavour=base device=1 device_args="" module="" name="" timeout=600 shell=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) flavour=$2; shift 2;;
	--device-args) device_args=$2; shift 2;;
	--no-device) device=0; shift;;
	--module) module=$2; shift 2;;
	--name) name=$2; shift 2;;
	--timeout) timeout=$2; shift 2;;
	--shell) shell=1; shift;;
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

# The guest-side script: one TAP test point per command.
{
	if [ -n "$module" ]; then
		echo 'echo "NPU-HARNESS: insmod $(basename '"$module"')"'
		echo "insmod /lib/modules/$(basename "$module") || echo 'NPU-HARNESS: insmod failed'"
	fi
	if [ "$shell" = 1 ]; then
		echo 'echo "NPU-HARNESS: shell (exit to power off)"; setsid cttyhack sh'
	else
		echo 'echo "TAP version 13"'
		echo "echo 1..$#"
		n=0
		for t in "$@"; do
			n=$((n + 1))
			# Indent the test's own output, kselftest-runner style.
			cat <<EOS
out=\$( { $t ; echo "rc=\$?" ; } 2>&1 )
trc=\${out##*rc=}
printf '%s\n' "\${out%rc=*}" | sed -e '/^\$/d' -e 's/^/# /'
case \$trc in
0) echo "ok $n $t" ;;
4) echo "ok $n $t # SKIP" ;;
*) echo "not ok $n $t # exit=\$trc"; rc=1 ;;
esac
EOS
		done
	fi
	if [ -n "$module" ]; then
		echo "rmmod $(basename "$module" .ko) || { echo 'NPU-HARNESS: rmmod failed'; rc=1; }"
	fi
} >"$run/run.sh"

"$NPU_TOP/scripts/guest.sh" "$run/initrd.gz" "$run/run.sh" "$module"

qemu_dev=()
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then
		# The server exits by itself when QEMU disconnects; give it a moment
		# to print its summary before insisting.
		for _ in $(seq 40); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	true
}
trap cleanup EXIT
if [ "$device" = 1 ]; then
	server=$NPU_TOP/target/release/npu-device-server
	(cd "$NPU_TOP" && cargo build -q --release -p npu-device --bin npu-device-server) \
		|| die "cannot build the device server"
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
qemu=(qemu-system-x86_64 -M q35 -accel "$accel" -cpu max -smp 2 -m 1G
	-object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem
	-kernel "$kbuild/arch/x86/boot/bzImage" -initrd "$run/initrd.gz"
	-append "console=ttyS0 panic=-1 oops=panic loglevel=7"
	-no-reboot -display none -serial stdio -monitor none "${qemu_dev[@]}")
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
cleanup; server_pid=

"$NPU_TOP/scripts/check-log.sh" "$run" "$qemu_rc"
