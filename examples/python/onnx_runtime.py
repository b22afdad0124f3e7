#!/usr/bin/env python3
"""An ONNX model on the NPU from Python, with the `npu` package: the same
four things as examples/c/onnx_runtime.c, checked against onnxruntime.

    python3 examples/python/onnx_runtime.py MODEL.onnx [--backend model|accel]
        [--shape NAME=D0,D1,...] [--atol A] [--rtol R]

1. load the model (imported and compiled once) and list its inputs/outputs;
2. run it from two threads at once, each with its own input, each output
   compared with onnxruntime's for that input;
3. two asynchronous runs, the second waiting on the first one's fence;
4. a raw job that deliberately loads from an unmapped NPU address: the
   fault's kind and address, from the error, must be that address.

Exit status 0 when every check passed. Build and install the package
first (Documentation/userspace/python.rst).
"""
import argparse
import struct
import sys
import threading

import numpy as np
import onnxruntime as ort

import npu

# Where the faulting raw job loads from: no buffer is mapped there.
UNMAPPED_ADDRESS = 0x40000000
FAULT_MMU_UNMAPPED = 1  # the hardware's fault code (npu.h: NPU_FAULT_MMU_UNMAPPED)

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("model")
p.add_argument("--backend", choices=["accel", "model"], default=None)
p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...")
p.add_argument("--atol", type=float, default=1e-5)
p.add_argument("--rtol", type=float, default=1e-4)
args = p.parse_args()
shapes = {n: [int(d) for d in dims.split(",")] for n, dims in (s.split("=", 1) for s in args.shape)}

failures = []


def check(what, got, want):
    """Every output of a run against onnxruntime's."""
    for o, g, w in zip(sess.get_outputs(), got, want):
        diff = float(np.abs(g - w).max())
        if g.shape != w.shape or not np.allclose(g, w, atol=args.atol, rtol=args.rtol):
            failures.append(f"{what}: {o.name} differs from onnxruntime's by {diff:.3g}")
            print(f"{what}: {o.name} MISMATCH (max |diff| {diff:.3g})")
        else:
            print(f"{what}: {o.name} matches onnxruntime (max |diff| {diff:.3g})")


# 1. Load.
sess = npu.InferenceSession(args.model, backend=args.backend, input_shapes=shapes or None)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
ref = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
print(f"{args.model} on the {sess.backend} backend")
for i in sess.get_inputs():
    print(f"  input  {i.name} {i.type} {i.shape}")
for o in sess.get_outputs():
    print(f"  output {o.name} {o.type} {o.shape}")

feeds = [{i.name: np.random.default_rng(seed).uniform(-1, 1, i.shape).astype(np.float32)
          for i in sess.get_inputs()} for seed in (1, 2)]
want = [ref.run(None, f) for f in feeds]
# The two inputs' results must differ by more than the tolerance, or a run
# given the other thread's input would pass.
apart = max(float(np.abs(a - b).max()) for a, b in zip(want[0], want[1]))
print(f"onnxruntime: the two inputs' outputs differ by up to {apart:.3g}")
if not apart > args.atol + args.rtol * max(float(np.abs(w).max()) for w in want[0]):
    failures.append("the two inputs give outputs too close to tell apart")


# 2. Two threads, one session, different inputs.
def worker(t):
    for run in range(3):
        check(f"thread {t} run {run}", sess.run(None, feeds[t]), want[t])


threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()

# 3. Asynchronous runs: the second starts after the first one's fence.
first = sess.run_async(None, feeds[0])
second = sess.run_async(None, feeds[1], wait_for=[first])
out_second = second.wait()
if not first.done:
    failures.append("the run after a fence ended before that fence")
check("async run 1", first.wait(timeout=0), want[0])
check("async run 2 (after 1's fence)", out_second, want[1])

# 4. A raw job that faults: NOP; DMA_LOAD 64 bytes from UNMAPPED_ADDRESS
#    to SRAM 0 (shape 64x1x1, strides 64); END. 64-byte instructions.
def insn(*words):
    return struct.pack("<16I", *words, *[0] * (16 - len(words)))


job = insn(0x00) + insn(0x10, UNMAPPED_ADDRESS, 0, 0, 64, 1, 1, 64, 64, 64, 64) + insn(0x01)
device = npu.Device(args.backend)
try:
    device.run_raw(job)
    failures.append("the raw job did not fault")
except npu.NpuError as e:
    print(f"fault: {e.status}, kind {e.fault_code} at {hex(e.fault_address or 0)}: {e.message}")
    if (e.status, e.fault_code, e.fault_address) != (
            "NPU_ERROR_JOB_FAULT", FAULT_MMU_UNMAPPED, UNMAPPED_ADDRESS):
        failures.append(f"fault {e.status} kind {e.fault_code} at {e.fault_address}, "
                        f"want MMU_UNMAPPED at {UNMAPPED_ADDRESS:#x}")

for f in failures:
    print(f"onnx_runtime.py: FAILED: {f}", file=sys.stderr)
if not failures:
    print("onnx_runtime.py: all checks passed")
sys.exit(1 if failures else 0)
