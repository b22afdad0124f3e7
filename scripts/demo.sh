#!/usr/bin/env bash
# The main job (see README.md): boot the emulated machine with the NPU
# attached, load onpu.ko (its probe runs a self-test job through the rings
# and MSI-X), show the NPU (npu-info), then let libnpu compile a small CNN
# written in its text form for the NPU's SRAM, submit it through
# /dev/accel/accel0, wait, print the result and check it against the CPU
# reference, and run the C example the same way.
. "$(dirname "$0")/common.sh"
ko=$("$NPU_TOP/scripts/module.sh" base | tail -n1)
"$NPU_TOP/scripts/vm.sh" --name demo --timeout 300 --module "$ko" -- \
	/usr/bin/npu-info "/usr/bin/npu-submit /kernels/small_cnn.npu" /usr/bin/npu-c-example
