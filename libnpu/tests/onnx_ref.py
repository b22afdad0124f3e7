#!/usr/bin/env python3
# onnxruntime as the reference for libnpu's int8 ops (libnpu/tests/onnx_ref.rs).
# Reads one JSON case on stdin: an ONNX operator (QLinearConv, QLinearMatMul,
# QuantizeLinear, DequantizeLinear; the data-movement ops of movement_ref.rs), its inputs and attributes, and `got`, the
# device's result. Builds a single-node model with the `onnx` helpers, runs it
# on onnxruntime's CPU provider, and compares element by element: exactly,
# or for f32 results within `tol` (relative to max(1, |want|)) when the case
# gives one. Prints the number of elements compared; exits 1 on a mismatch.
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

DTYPES = {"i8": (np.int8, TensorProto.INT8), "u8": (np.uint8, TensorProto.UINT8),
          "i32": (np.int32, TensorProto.INT32), "f32": (np.float32, TensorProto.FLOAT),
          "i64": (np.int64, TensorProto.INT64), "f16": (np.float16, TensorProto.FLOAT16)}


def tensor(spec):
    if spec.get("bits"):
        # f32 values as their IEEE bit patterns (exact, no decimal rounding).
        return np.array(spec["data"], dtype=np.uint32).view(np.float32).reshape(spec["shape"])
    if spec["dtype"] == "f16":
        # f16 values as their bit patterns, as f32 ones.
        return np.array(spec["data"], dtype=np.uint16).view(np.float16).reshape(spec["shape"])
    dt = DTYPES[spec["dtype"]][0]
    return np.array(spec["data"], dtype=dt).reshape(spec["shape"])


def main():
    case = json.load(sys.stdin)
    op = case["op"]
    # Inputs in the operator's order: each a tensor spec, or null (omitted).
    names, inits, feeds, graph_inputs = [], [], {}, []
    for i, spec in enumerate(case["inputs"]):
        if spec is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        arr = tensor(spec)
        if spec.get("feed"):
            feeds[name] = arr
            graph_inputs.append(helper.make_tensor_value_info(
                name, DTYPES[spec["dtype"]][1], list(arr.shape)))
        else:
            inits.append(numpy_helper.from_array(arr, name))
    while names and names[-1] == "":
        names.pop()
    out_dtype = DTYPES[case["out_dtype"]]
    node = helper.make_node(op, names, ["y"], **case.get("attrs", {}))
    graph = helper.make_graph([node], "case", graph_inputs,
                              [helper.make_tensor_value_info("y", out_dtype[1], list(case["out_shape"]))],
                              initializer=inits)
    # Opset 13 unless the case names another (LayerNormalization is 17,
    # Upsample 9).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.get("opset", 13))])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    # The operator as its CPU kernel runs it: no graph rewrites.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)[0].reshape(-1)
    if out_dtype[0] == np.float32:
        got = np.array(case["got"], dtype=np.uint32).view(np.float32).reshape(-1)
    elif out_dtype[0] == np.float16:
        got = np.array(case["got"], dtype=np.uint16).view(np.float16).reshape(-1)
    else:
        got = np.array(case["got"], dtype=out_dtype[0]).reshape(-1)
    if got.shape != want.shape:
        print(f"{got.size} elements, onnxruntime gives {want.size}")
        sys.exit(1)
    tol = case.get("tol")
    if tol is None and out_dtype[0] == np.float16:
        # Bit for bit: the sign of a zero counts (NaN-free cases).
        bad = np.nonzero(got.view(np.uint16) != want.view(np.uint16))[0]
    elif tol is None:
        bad = np.nonzero(got != want)[0]
    else:
        w = want.astype(np.float64)
        bad = np.nonzero(np.abs(got.astype(np.float64) - w) > tol * np.maximum(1.0, np.abs(w)))[0]
    if bad.size:
        i = bad[0]
        print(f"{bad.size} of {want.size} elements differ; first at {i}: "
              f"device {got[i]}, onnxruntime {want[i]}")
        sys.exit(1)
    print(want.size)


if __name__ == "__main__":
    main()
