#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""An independent reference for libnpu's model tests: evaluates a graph
dumped by tests/models.rs (graph.txt + data.bin, little-endian f32) with
numpy in float64 and writes each output as little-endian f32 to
OUT_DIR/NAME.bin. Written from the op definitions (ONNX semantics: NCHW
conv with groups/dilation, pooling with padding excluded from averages),
not from libnpu's code.

usage: reference.py DIR
"""
import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv2d(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    span = ((r - 1) * dil[0] + 1, (s - 1) * dil[1] + 1)
    win = sliding_window_view(xp, span, axis=(2, 3))[:, :, :: stride[0], :: stride[1], :: dil[0], :: dil[1]]
    kg = k // groups
    outs = []
    for g in range(groups):
        xs = win[:, g * cg:(g + 1) * cg]
        outs.append(np.einsum("nchwrs,kcrs->nkhw", xs, w[g * kg:(g + 1) * kg], optimize=True))
    y = np.concatenate(outs, axis=1)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def pool(kind, x, kernel, stride, pad):
    if kind == "max":
        xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=-np.inf)
        win = sliding_window_view(xp, tuple(kernel), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
        return win.max(axis=(4, 5))
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ones = np.pad(np.ones_like(x), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    win = sliding_window_view(xp, tuple(kernel), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    cnt = sliding_window_view(ones, tuple(kernel), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    return win.sum(axis=(4, 5)) / cnt.sum(axis=(4, 5))


BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "max": np.maximum, "min": np.minimum}


def main():
    d = sys.argv[1]
    data = np.fromfile(f"{d}/data.bin", dtype="<f4").astype(np.float64)
    vals = {}
    outputs = []
    ints = lambda xs: [int(v) for v in xs]
    for line in open(f"{d}/graph.txt"):
        f = line.split()
        if not f:
            continue
        op, name = f[0], f[1]
        if op in ("input", "const"):
            off, shape = int(f[2]), ints(f[3:])
            vals[name] = data[off:off + int(np.prod(shape))].reshape(shape)
        elif op == "conv":
            x, w, b = vals[f[2]], vals[f[3]], (None if f[4] == "-" else vals[f[4]])
            p = ints(f[5:12])
            vals[name] = conv2d(x, w, b, p[0:2], p[2:4], p[4:6], p[6])
        elif op == "binary":
            vals[name] = BINARY[f[2]](vals[f[3]], vals[f[4]])
        elif op == "relu":
            vals[name] = np.maximum(vals[f[2]], 0)
        elif op == "clamp":
            vals[name] = np.clip(vals[f[2]], float(f[3]), float(f[4]))
        elif op == "pool":
            p = ints(f[4:10])
            vals[name] = pool(f[2], vals[f[3]], p[0:2], p[2:4], p[4:6])
        elif op == "gemm":
            a, b = vals[f[2]], vals[f[3]]
            a = a.T if f[5] == "1" else a
            b = b.T if f[6] == "1" else b
            y = a @ b
            vals[name] = y if f[4] == "-" else y + vals[f[4]]
        elif op == "reshape":
            vals[name] = vals[f[2]].reshape(ints(f[3:]))
        elif op == "output":
            outputs.append(name)
        else:
            sys.exit(f"reference.py: unknown op {op!r}")
    for name in outputs:
        vals[name].astype("<f4").tofile(f"{d}/{name}.bin")


if __name__ == "__main__":
    main()
