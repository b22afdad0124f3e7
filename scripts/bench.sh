#!/usr/bin/env bash
# make bench: every performance figure beside its baseline, measured in the
# same run, written to build/bench/ (report.md, report.json, throughput.svg).
#   host:  device-model GEMM vs. the same GEMM crate called directly
#          (qemu-device/examples/gemm-bench), compile times
#          (libnpu/examples/compile_bench), double buffering on/off,
#          ResNet-18 / MobileNetV2 figures (libnpu/examples/model_figures),
#          real models' latency vs. onnxruntime 1 thread / all threads
#          (onnx/examples/model_bench, scripts/ort-bench.py)
#   guest: npu-bench through the driver (latency vs. no-op ioctl + MMIO
#          write, throughput by depth and processes, buffer churn, compute
#          vs. the guest CPU, zero-copy check); each real model through
#          the whole stack (npu-bench-models: import, compile, first run,
#          latency, throughput), also run on the host's model backend
. "$(dirname "$0")/common.sh"
out=$NPU_TOP/build/bench
mkdir -p "$out"
quick=${NPU_BENCH_QUICK:-}

stage "host benchmarks"
(cd "$NPU_TOP" &&
	cargo run -q --release -p npu-device --example gemm-bench >"$out/host-gemm.txt" &&
	cargo run -q --release -p npu-device --example scoreboard-bench >"$out/host-scoreboard.txt" &&
	cargo run -q --release -p libnpu --example compile_bench >"$out/host-compile.txt" &&
	cargo run -q --release -p libnpu --example double_buffer >"$out/host-double-buffer.txt" &&
	cargo run -q --release -p libnpu --example model_figures -- --run >"$out/host-models.txt" &&
	cargo run -q --release -p npu-onnx --example model_bench -- "$("$NPU_TOP/scripts/models.sh" | tail -n1)" \
		| tee "$out/host-real-models.txt")
stage_done

ko=$("$NPU_TOP/scripts/module.sh" base | tail -n1)
"$NPU_TOP/scripts/vm.sh" --name bench --timeout 900 --module "$ko" -- "/usr/bin/npu-bench${quick:+ --quick}" \
	| tee "$out/guest.txt"
cp "$NPU_TOP/build/runs/bench/device.log" "$out/device.log"

# Real models through the whole stack: the guest's libnpu on /dev/accel
# (its own boot, with /models staged), and the same program and inputs on
# the host's model backend.
staged=$("$NPU_TOP/scripts/guest-models.sh" | tail -n1)
(cd "$NPU_TOP" && cargo run -q --release -p npu-tools --bin npu-bench-models -- --backend model "$staged") \
	| tee "$out/host-models-stack.txt"
"$NPU_TOP/scripts/vm.sh" --name bench-models --timeout 900 --module "$ko" -- "/usr/bin/npu-bench-models /models" \
	| tee "$out/guest-models.txt"

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git -C "$NPU_TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "host cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
	echo "host cores: $(nproc)"
	echo "host memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "host kernel: $(uname -r)"
	echo "guest kernel: $(sed -n 's/.*NPU-HARNESS: booted //p' "$NPU_TOP/build/runs/bench/serial.log" | head -n1)"
	echo "qemu: $(in_root qemu-system-x86_64 --version | head -n1)"
	echo "qemu accel: ${NPU_ACCEL:-tcg}"
} >"$out/machine.txt"

in_root python3 "$NPU_TOP/scripts/bench-report.py" "$out"
echo "report: $out/report.md ($out/report.json, $out/throughput.svg)"
