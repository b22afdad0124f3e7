#!/usr/bin/env python3
"""Write the references examples/c/onnx_runtime.c checks against: two
different inputs of a model's one float input (uniform in [-1, 1), seeds 1
and 2) and onnxruntime's outputs for them (CPU, one thread).

usage: ort_refs.py MODEL.onnx SHAPES OUTDIR

SHAPES: the input's shape where the file leaves it symbolic, "x=1,3,48,192"
(as onnx_runtime.c's), or "".

Writes OUTDIR/input{0,1}.bin and OUTDIR/output{0,1}.bin (raw little-endian
float32). Exit status 3 when onnxruntime is missing (a failure for the
caller, never a skip).
"""
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print(f"ort_refs: {e}: install onnxruntime and numpy (scripts/host-deps.sh)")
    sys.exit(3)

model, spec, out = sys.argv[1], sys.argv[2], sys.argv[3]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
(inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
given = {n: [int(d) for d in dims.split(",")] for n, dims in
         (s.split("=", 1) for s in spec.split(";") if s)}
# A symbolic leading (batch) dimension not given is 1, as npu_model_load_onnx takes it.
shape = given.get(inp.name) or [d if isinstance(d, int) else 1 for d in inp.shape]
results = []
for i, seed in enumerate([1, 2]):
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype("<f4")
    (y,) = sess.run([outp.name], {inp.name: x})
    x.tofile(f"{out}/input{i}.bin")
    y.astype("<f4").tofile(f"{out}/output{i}.bin")
    results.append(y)
# Different inputs must give visibly different outputs, or a run that
# swapped them would pass.
print(f"max |output0 - output1| = {float(np.abs(results[0] - results[1]).max()):.3g}")
