#!/bin/sh
# kselftest: libnpu through the onpu driver. npu-submit compiles every kernel
# in /kernels (one per op kind, f32 and int8), runs it on the NPU and checks
# it against the CPU reference; the C example runs; a faulting raw command
# buffer and a bad kernel make npu-submit fail with a clear message.
n=0 fail=0
kernels=$(ls /kernels/*.npu)
plan=$(( $(echo "$kernels" | grep -c .) + 3 ))
echo "TAP version 13"
echo "1..$plan"
[ -n "$kernels" ] || { echo "# no kernels in /kernels"; fail=1; }
ok() { n=$((n + 1)); echo "ok $n $1"; }
not_ok() { n=$((n + 1)); fail=1; echo "not ok $n $1"; }
for k in $kernels; do
	if out=$(npu-submit --repeat 3 "$k" 2>&1); then
		echo "$out" | sed 's/^/# /'
		ok "npu-submit $(basename "$k")"
	else
		echo "$out" | sed 's/^/# /'
		not_ok "npu-submit $(basename "$k")"
	fi
done
# libnpu/examples/c/runtime_api.c on /dev/accel: two threads, a fence and
# its sync_file, save/load, a fault's kind and address.
name="the C runtime API example: threads, fence, sync_file, fault"
if out=$(npu-c-example 2>&1) && echo "$out" | grep -q "sync_file: signalled" &&
	echo "$out" | grep -q "runtime_api: all checks passed"; then ok "$name"; else not_ok "$name"; fi
echo "$out" | sed 's/^/# /'
# One instruction with an undefined opcode: the job faults, npu-submit says
# where and exits 1.
printf '\356' >/tmp/bad.bin; head -c 63 /dev/zero >>/tmp/bad.bin
out=$(npu-submit --raw /tmp/bad.bin 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
if [ $rc = 1 ] && echo "$out" | grep -q "BadOpcode at 0x0"; then ok "a faulting raw job: exit 1, fault and offset shown"
else not_ok "a faulting raw job: exit 1, fault and offset shown (rc=$rc)"; fi
printf 'input x: f32[4]\ny = gemm(x, x)\noutput y\n' >/tmp/bad.npu
out=$(npu-submit /tmp/bad.npu 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
if [ $rc = 2 ] && echo "$out" | grep -q "bad.npu"; then ok "a bad kernel: exit 2 with the file and reason"
else not_ok "a bad kernel: exit 2 with the file and reason (rc=$rc)"; fi
# Every planned test point printed, no more.
if [ "$n" != "$plan" ]; then
	echo "# planned $plan test points, printed $n"
	fail=1
fi
exit $fail
