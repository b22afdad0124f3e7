#!/usr/bin/env bash
# The main job (see README.md): the most complete path that runs today.
. "$(dirname "$0")/common.sh"
"$NPU_TOP/scripts/vm.sh" --name demo --timeout 300 -- /tests/pci-probe.sh
stage "running a matmul job on the NPU device model (host, in-process)"
(cd "$NPU_TOP" && cargo run -q --release -p npu-device --example matmul)
stage_done
