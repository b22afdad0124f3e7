#!/usr/bin/env python3
"""Run an ONNX model with onnxruntime on the inputs npu-onnx's test wrote and
compare its outputs with the NPU's (the device model's).

usage: ort_compare.py MODEL.onnx MANIFEST ATOL RTOL

MANIFEST lines: `input|output NAME FILE D0,D1,... DTYPE` (raw little-endian
f32, f16, i8, u8 or i32; integer and float16 outputs compare as float32). An element passes when |npu - ort| <= ATOL + RTOL * |ort|
(numpy.isclose). Prints `max_abs=... max_rel=...` per output; exit status 0
when every output passes, 1 on a mismatch, 3 when onnxruntime is missing
(a failure for the caller, never a skip), 4 when onnxruntime cannot run the
model.
"""
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print(f"ort_compare: {e}: install onnxruntime and numpy (scripts/host-deps.sh)")
    sys.exit(3)


def main():
    model, manifest, atol, rtol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    feeds, npu = {}, {}
    for line in open(manifest):
        kind, name, path, dims, dtype = line.rstrip("\n").split("\t")
        shape = [int(d) for d in dims.split(",")]
        np_dtype = {"f32": "<f4", "i8": "i1", "u8": "u1", "i32": "<i4", "f16": "<f2"}[dtype]
        arr = np.fromfile(path, dtype=np_dtype).reshape(shape)
        if kind == "output":
            arr = arr.astype(np.float32)
        (feeds if kind == "input" else npu)[name] = arr
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        want = dict(zip(names, sess.run(names, feeds)))
    except Exception as e:  # onnxruntime's own errors have no common base
        print(f"onnxruntime cannot run {model}: {e}")
        sys.exit(4)
    ok = True
    for name, got in npu.items():
        ref = want[name].astype(np.float32)
        if ref.shape != got.shape:
            print(f"{name}: onnxruntime shape {ref.shape}, NPU {got.shape}")
            ok = False
            continue
        err = np.abs(got - ref)
        rel = err / np.maximum(np.abs(ref), 1e-6)
        bad = ~np.isclose(got, ref, atol=atol, rtol=rtol)
        print(f"{name[:40]}: max_abs={err.max():.3g} max_rel={rel.max():.3g} "
              f"max|ort|={np.abs(ref).max():.3g} mismatches={int(bad.sum())}/{bad.size}")
        if bad.any():
            i = np.unravel_index(np.argmax(bad), bad.shape)
            print(f"  first mismatch at {tuple(int(x) for x in i)}: NPU {got[i]!r}, onnxruntime {ref[i]!r}")
            ok = False
    sys.exit(0 if ok else 1)


main()
