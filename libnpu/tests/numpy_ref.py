#!/usr/bin/env python3
# An int8 gemm/conv2d reference in numpy, for libnpu/tests/numpy_ref.rs:
# written from Documentation/userspace/kernel-language.rst, sharing no code
# with libnpu. Reads one JSON case on stdin, prints the number of elements
# checked, exits 1 on a mismatch.
#
#   y = (acc + bias[c]) * s_in * s_w[c] / s_out   (acc exact, in int64)
#   q = clip(round_half_even(y) + zp_out, -128, 127), then max(q, zp) for relu
#
# (ONNX QLinearConv/QLinearMatMul.) The device evaluates the factor and the
# product in f32, as onnxruntime does (tests/onnx_ref.rs checks that bit for
# bit), so within 2^-21 of y, relative, either neighbour of a tie is accepted.
import json
import sys

import numpy as np


def conv_acc(x, w, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    oh = (h + 2 * pad[0] - dil[0] * (r - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (s - 1) - 1) // stride[1] + 1
    xp = np.zeros((n, c, h + 2 * pad[0], wd + 2 * pad[1]), dtype=np.int64)
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + wd] = x
    acc = np.zeros((n, k, oh, ow), dtype=np.int64)
    kg = k // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * kg:(g + 1) * kg]
        for ry in range(r):
            for sx in range(s):
                y0, x0 = ry * dil[0], sx * dil[1]
                patch = xs[:, :, y0:y0 + stride[0] * (oh - 1) + 1:stride[0],
                           x0:x0 + stride[1] * (ow - 1) + 1:stride[1]]
                acc[:, g * kg:(g + 1) * kg] += np.einsum("nchw,kc->nkhw", patch, ws[:, :, ry, sx])
    return acc


def main():
    case = json.load(sys.stdin)
    s_w = np.array(case["s_w"], dtype=np.float64)
    if case["kind"] == "gemm":
        a = np.array(case["a"], dtype=np.int64).reshape(case["a_shape"])
        w = np.array(case["w"], dtype=np.int64).reshape(case["w_shape"])
        if case["trans_b"]:
            w = w.T
        acc = a @ w
        chan_axis = 1
    else:
        x = np.array(case["a"], dtype=np.int64).reshape(case["a_shape"])
        w = np.array(case["w"], dtype=np.int64).reshape(case["w_shape"])
        acc = conv_acc(x, w, case["stride"], case["pad"], case["dilation"], case["groups"])
        chan_axis = 1
    shape = [1] * acc.ndim
    shape[chan_axis] = -1
    if case["bias"] is not None:
        acc = acc + np.array(case["bias"], dtype=np.int64).reshape(shape)
    m = case["s_in"] * s_w / case["s_out"]
    y = acc.astype(np.float64) * m.reshape(shape)
    tol = np.abs(y) * 2.0 ** -21
    zp = case["zp_out"]
    lo = np.clip(np.round(y - tol) + zp, -128, 127)
    hi = np.clip(np.round(y + tol) + zp, -128, 127)
    if case["relu"]:
        lo, hi = np.maximum(lo, zp), np.maximum(hi, zp)
    got = np.array(case["got"], dtype=np.float64).reshape(y.shape)
    bad = np.argwhere((got < lo) | (got > hi))
    if len(bad):
        i = tuple(int(v) for v in bad[0])
        print(f"{len(bad)} mismatches; first at {list(i)}: device {int(got[i])}, numpy {int(lo[i])}..={int(hi[i])}")
        sys.exit(1)
    print(got.size)


main()
