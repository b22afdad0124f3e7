#!/usr/bin/env python3
"""Run an ONNX model on the NPU with the `npu` package and compare it with
onnxruntime: the same code, one line different.

    python3 examples/python/run_model.py MODEL.onnx [--backend model|accel] [--shape NAME=D0,D1,...]

Build and install the package first (Documentation/userspace/python.rst):

    python3 -m maturin build --release -m python/Cargo.toml --out build/python/wheel
    python3 -m pip install --target build/python/site build/python/wheel/npu-*.whl
    PYTHONPATH=build/python/site python3 examples/python/run_model.py model.onnx --backend model
"""
import argparse
import time

import numpy as np
import onnxruntime as ort

import npu

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("model")
p.add_argument("--backend", choices=["accel", "model"], default=None,
               help="accel: /dev/accel (the default when a device exists); model: the in-process device model")
p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
               help="the shape of an input whose dimensions the file leaves symbolic")
args = p.parse_args()
shapes = {n: [int(d) for d in dims.split(",")] for n, dims in (s.split("=", 1) for s in args.shape)}

# The one line that differs from onnxruntime
# (ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])):
sess = npu.InferenceSession(args.model, backend=args.backend, input_shapes=shapes or None)
ref = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
print(f"{args.model} on the {sess.backend} backend")

for i in sess.get_inputs():
    print(f"  input  {i.name} {i.type} {i.shape}")
for o in sess.get_outputs():
    print(f"  output {o.name} {o.type} {o.shape}")

rng = np.random.default_rng(0)
feed = {i.name: rng.uniform(-1, 1, i.shape).astype(np.float32) for i in sess.get_inputs()}

t = time.perf_counter()
outputs = sess.run(None, feed)
t_npu = time.perf_counter() - t
t = time.perf_counter()
expected = ref.run(None, feed)
t_ort = time.perf_counter() - t

ok = True
for o, got, want in zip(sess.get_outputs(), outputs, expected):
    diff = float(np.abs(got - want).max())
    close = np.allclose(got, want, atol=1e-5, rtol=1e-4)
    ok &= close
    print(f"  {o.name}: max |npu - onnxruntime| = {diff:.3g} {'ok' if close else 'MISMATCH'}")
print(f"npu {t_npu * 1e3:.1f} ms, onnxruntime {t_ort * 1e3:.1f} ms")

try:
    sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 2), np.float64)})
except npu.NpuError as e:
    print(f"a wrong input raises npu.NpuError: status {e.status}, message: {e.message}")
raise SystemExit(0 if ok else 1)
