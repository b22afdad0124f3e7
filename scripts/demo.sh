#!/usr/bin/env bash
# The main job (see README.md): boot the emulated machine with the NPU
# attached, load onpu.ko (its probe runs a self-test job through the rings
# and MSI-X), show the NPU (npu-info), compile and run a small CNN written
# in libnpu's text form (checked against the CPU reference), then what the
# stack is for: a real published model, RapidAI's document orientation
# classifier (ONNX, from PyPI), on a real scanned page turned four ways,
# through /dev/accel/accel0, its class scores and time printed beside
# onnxruntime's on the host for the same inputs
# (tools/selftests/demo-orientation.sh).
. "$(dirname "$0")/common.sh"
ko=$("$NPU_TOP/scripts/module.sh" base | tail -n1)
models=$("$NPU_TOP/scripts/models.sh" | tail -n1)
staged=$("$NPU_TOP/scripts/guest-models.sh" | tail -n1)
# onnxruntime timed now, on this host, next to the guest run.
python3 "$NPU_TOP/scripts/guest-models.py" --demo-only "$models" \
	"$models/scikit-image-0.26.0/page.png" "$staged"
"$NPU_TOP/scripts/vm.sh" --name demo --timeout 300 --module "$ko" -- \
	/usr/bin/npu-info "/usr/bin/npu-submit /kernels/small_cnn.npu" "/tests/demo-orientation.sh /models"
