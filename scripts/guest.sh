#!/usr/bin/env bash
# Build the guest userspace and pack an initramfs for one run:
#   scripts/guest.sh OUT.cpio.gz RUN_SCRIPT [MODULE.ko]
# RUN_SCRIPT is a shell fragment the guest's /init sources after mounting
# the usual file systems; it prints TAP. Everything static: no libraries.
. "$(dirname "$0")/common.sh"

out=${1:?output path}
run_script=${2:?run script}
module=${3:-}

stage "building guest tools (static)"
bins=$("$NPU_TOP/scripts/guest-tools.sh")
stage_done

# Staged next to the output, which the build root can see; packed with the
# root's cpio so the host needs none.
staging=$(dirname "$out")/initrd.staging
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,lib/modules,tests,kernels}
cp "$BUILDROOT/bin/busybox" "$staging/bin/busybox"
for b in $bins; do cp "$b" "$staging/usr/bin/"; done
cp "$NPU_TOP"/tools/selftests/*.sh "$staging/tests/"
# The harness self-test's deliberately failing guest programs.
mkdir -p "$staging/tests/harness"
cp "$NPU_TOP"/tests/harness/guest/*.sh "$staging/tests/harness/"
[ "${NPU_HANG_AFTER_TAP:-0}" = 1 ] && touch "$staging/harness-hang-after-tap"
cp "$NPU_TOP"/libnpu/examples/kernels/*.npu "$NPU_TOP"/libnpu/examples/small_cnn.npu "$staging/kernels/"
# The real published models with onnxruntime's outputs (~20 MB), only for
# the runs whose tests name /models (scripts/guest-models.sh).
if grep -q '/models' "$run_script"; then
	cp -r "$("$NPU_TOP/scripts/guest-models.sh" | tail -n1)" "$staging/models"
fi
[ -n "$module" ] && cp "$module" "$staging/lib/modules/"
cp "$run_script" "$staging/run.sh"
cp "$NPU_TOP/scripts/guest-init.sh" "$staging/init"
chmod +x "$staging/init" "$staging"/tests/*.sh "$staging"/tests/harness/*.sh
in_root sh -c 'cd "$1" && find . | cpio -o -H newc --quiet | gzip -1' pack "$staging" >"$out"
