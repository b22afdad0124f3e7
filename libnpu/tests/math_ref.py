#!/usr/bin/env python3
# onnxruntime as the reference for libnpu's f32 math ops (tests/math_ref.rs).
# Reads a JSON case (or a list of them) on stdin: an ONNX operator, its inputs (f32 as IEEE bit
# patterns, int64 for axes), attributes, opset, and `got`, the device's
# result. Builds a single-node model with the `onnx` helpers (or, with
# `qdq`, DequantizeLinear -> op -> QuantizeLinear for the int8 form), runs
# it on onnxruntime's CPU provider with no graph rewrites, and compares.
#
# f32: an element passes when |got - want| <= atol + rtol * |want| + xtol *
# |x| (x: the first input, same shape; xtol is 0 when the case gives none).
# int8 (`qdq`): |got - want| <= 1 (a result an f32 ulp from a rounding
# boundary may round either way), and at most `max_off` elements off by one.
# `out_bool`: the operator's result is bool (inputs may be "bool" too), compared
# as 1.0 / 0.0 with the device's mask.
# NaN matches NaN, and equal values (infinities) match. `post_reciprocal`:
# the reference is 1 / the operator's result (Sqrt then Reciprocal).
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def tensor(spec):
    if spec["dtype"] == "f32":
        return np.array(spec["data"], dtype=np.uint32).view(np.float32).reshape(spec["shape"])
    if spec["dtype"] == "i8":
        return np.array(spec["data"], dtype=np.int8).reshape(spec["shape"])
    if spec["dtype"] == "bool":
        return np.array(spec["data"], dtype=np.bool_).reshape(spec["shape"])
    return np.array(spec["data"], dtype=np.int64).reshape(spec["shape"])


ELEM = {"f32": TensorProto.FLOAT, "i8": TensorProto.INT8, "i64": TensorProto.INT64,
        "bool": TensorProto.BOOL}


class Mismatch(Exception):
    pass


def check(case):
    """Elements compared; raises Mismatch with a report."""
    names, inits, feeds, graph_inputs = [], [], {}, []
    arrays = []
    for i, spec in enumerate(case["inputs"]):
        name = f"in{i}"
        names.append(name)
        arr = tensor(spec)
        arrays.append(arr)
        if spec.get("feed"):
            feeds[name] = arr
            graph_inputs.append(helper.make_tensor_value_info(name, ELEM[spec["dtype"]], list(arr.shape)))
        else:
            inits.append(numpy_helper.from_array(arr, name))
    qdq = case.get("qdq")
    nodes = []
    out_elem = TensorProto.FLOAT
    if qdq:
        # Every int8 input dequantized with its (scale, zero point).
        for i, (s, z) in enumerate(qdq["inputs"]):
            inits.append(numpy_helper.from_array(np.array(s, dtype=np.float32), f"s{i}"))
            inits.append(numpy_helper.from_array(np.array(z, dtype=np.int8), f"z{i}"))
            nodes.append(helper.make_node("DequantizeLinear", [names[i], f"s{i}", f"z{i}"], [f"r{i}"]))
            names[i] = f"r{i}"
        s, z = qdq["output"]
        inits.append(numpy_helper.from_array(np.array(s, dtype=np.float32), "sy"))
        inits.append(numpy_helper.from_array(np.array(z, dtype=np.int8), "zy"))
        nodes.append(helper.make_node(case["op"], names, ["yf"], **case.get("attrs", {})))
        nodes.append(helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["y"]))
        out_elem = TensorProto.INT8
    else:
        nodes.append(helper.make_node(case["op"], names, ["y"], **case.get("attrs", {})))
        if case.get("out_bool"):
            # A bool result (comparisons, logic): the device's mask is 1.0 / +0.0.
            out_elem = TensorProto.BOOL
    graph = helper.make_graph(nodes, "case", graph_inputs,
                              [helper.make_tensor_value_info("y", out_elem, list(case["out_shape"]))],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.get("opset", 20))])
    model.ir_version = 9
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)[0].reshape(-1)
    if want.dtype == np.bool_:
        want = want.astype(np.float32)
    if case.get("post_reciprocal"):
        # A second node, Reciprocal, as numpy's correctly rounded f32 1 / x.
        with np.errstate(divide="ignore"):
            want = np.float32(1.0) / want
    if qdq:
        got = np.array(case["got"], dtype=np.int8).reshape(-1)
        if got.shape != want.shape:
            raise Mismatch(f"{got.size} elements, onnxruntime gives {want.size}")
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        off = int((diff == 1).sum())
        if diff.max() > 1 or off > case.get("max_off", 0):
            i = int(np.argmax(diff))
            raise Mismatch(f"{int((diff > 0).sum())} of {want.size} differ (max {diff.max()}); first worst at {i}: "
                           f"device {got[i]}, onnxruntime {want[i]}")
        return want.size
    got = np.array(case["got"], dtype=np.uint32).view(np.float32).reshape(-1)
    if got.shape != want.shape:
        raise Mismatch(f"{got.size} elements, onnxruntime gives {want.size}")
    w = want.astype(np.float64)
    g = got.astype(np.float64)
    bound = case["atol"] + case["rtol"] * np.abs(w)
    if case.get("xtol"):
        bound = bound + case["xtol"] * np.abs(arrays[0].astype(np.float64).reshape(-1))
    same = (np.isnan(w) & np.isnan(g)) | (g == w)
    with np.errstate(invalid="ignore"):
        bad = np.nonzero(~same & ~(np.abs(g - w) <= bound))[0]
    if bad.size:
        i = bad[0]
        raise Mismatch(f"{bad.size} of {want.size} elements differ; first at {i}: "
                       f"device {got[i]!r}, onnxruntime {want[i]!r}, bound {bound[i]:.3g}")
    return want.size


def main():
    # One case, or a list of them (one python start for many): a line per
    # case, `ok N` or `mismatch: REPORT`; the exit status is 1 when any
    # case mismatched.
    cases = json.load(sys.stdin)
    single = not isinstance(cases, list)
    failed = False
    for case in [cases] if single else cases:
        try:
            print(f"ok {check(case)}")
        except Mismatch as e:
            print(f"mismatch: {e}")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
