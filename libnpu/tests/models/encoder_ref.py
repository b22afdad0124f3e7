#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only OR MIT
"""An independent reference for libnpu's transformer encoder block test
(tests/models.rs): the block written the textbook way in numpy, float64,
from the weights in their standard layout, not from libnpu's graph (which
computes the heads without a transpose; see nets.rs). Definitions: ONNX
Gather, LayerNormalization (biased variance, epsilon inside the root),
MatMul, Softmax, Gelu (approximate="none", the erf form); multi-head attention as in
Vaswani et al. (softmax(Q K^T / sqrt(dh)) V per head, heads concatenated).

DIR/case.json: {"cfg": {seq, d_model, heads, d_ff, vocab, epsilon},
"ids": [...], "weights": [{"name", "shape", "offset"}]} with the values in
DIR/data.bin (little-endian f32, offsets in elements). Writes DIR/y.bin.

NPU_REFERENCE_BREAK=softmax_axis|gelu_tanh|no_scale computes a deliberately
wrong block (the test checks that each one fails the comparison).

usage: encoder_ref.py DIR
"""
import json
import math
import os
import sys

import numpy as np


def main():
    d = sys.argv[1]
    case = json.load(open(f"{d}/case.json"))
    data = np.fromfile(f"{d}/data.bin", dtype="<f4").astype(np.float64)
    w = {}
    for t in case["weights"]:
        n = int(np.prod(t["shape"]))
        w[t["name"]] = data[t["offset"]:t["offset"] + n].reshape(t["shape"])
    cfg = case["cfg"]
    s, dm, h, eps = cfg["seq"], cfg["d_model"], cfg["heads"], cfg["epsilon"]
    dh = dm // h
    broken = os.environ.get("NPU_REFERENCE_BREAK", "")

    def layer_norm(x, g, b):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g + b

    def softmax(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def gelu(x):
        if broken == "gelu_tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))

    ids = np.array(case["ids"], dtype=np.int64)
    x = w["emb"][ids] + w["pos"]
    a = layer_norm(x, w["ln1_g"], w["ln1_b"])
    split = lambda m: m.reshape(s, h, dh).transpose(1, 0, 2)  # [h, s, dh]
    q, k, v = split(a @ w["wq"]), split(a @ w["wk"]), split(a @ w["wv"])
    scores = q @ k.transpose(0, 2, 1)
    if broken != "no_scale":
        scores = scores / math.sqrt(dh)
    p = softmax(scores, axis=-2 if broken == "softmax_axis" else -1)
    o = (p @ v).transpose(1, 0, 2).reshape(s, dm)  # heads concatenated
    x2 = x + o @ w["wo"] + w["bo"]
    m = gelu(layer_norm(x2, w["ln2_g"], w["ln2_b"]) @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]
    (x2 + m).astype("<f4").tofile(f"{d}/y.bin")


if __name__ == "__main__":
    main()
