#!/usr/bin/env bash
# The main job (see README.md): the most complete path that runs today.
# In the guest: load onpu.ko, show the NPU through /dev/accel (npu-info),
# exercise buffer objects; on the host: a matmul job through the same device
# model, checked against a CPU reference. Becomes "libnpu compiles a kernel,
# submits it through the driver, checks the result" when job submission lands.
. "$(dirname "$0")/common.sh"
ko=$("$NPU_TOP/scripts/module.sh" base | tail -n1)
"$NPU_TOP/scripts/vm.sh" --name demo --timeout 300 --module "$ko" -- /usr/bin/npu-info /usr/bin/onpu-test-bo
stage "running a matmul + bias + relu job on the NPU device model (host, in-process)"
(cd "$NPU_TOP" && cargo run -q --release -p npu-device --example matmul)
stage_done
