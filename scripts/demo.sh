#!/usr/bin/env bash
# The main job (see README.md): the most complete path that runs today.
# In the guest: load onpu.ko (whose probe runs a self-test job through the
# rings and MSI-X), show the NPU through /dev/accel (npu-info), exercise
# buffer objects. On the host: libnpu compiles a small CNN written in its
# text form and runs it on the same device model, in-process, checked
# against the CPU reference. Becomes "libnpu compiles, submits through the
# driver in the guest, checks" when job submission lands.
. "$(dirname "$0")/common.sh"
ko=$("$NPU_TOP/scripts/module.sh" base | tail -n1)
"$NPU_TOP/scripts/vm.sh" --name demo --timeout 300 --module "$ko" -- /usr/bin/npu-info /usr/bin/onpu-test-bo
stage "compiling a small CNN with libnpu and running it on the NPU device model (host)"
(cd "$NPU_TOP" && cargo run -q --release -p libnpu --example run -- libnpu/examples/small_cnn.npu 256)
stage_done
