#!/usr/bin/env python3
# A whole int8 network from libnpu's IR as an ONNX model, run on onnxruntime,
# for libnpu/tests/onnx_ref.rs. Reads the graph on stdin (JSON: nodes in
# order, constants and inputs as raw little-endian files in `dir`), maps each
# op to its ONNX definition:
#   conv2d/gemm (int8)        QLinearConv / QLinearMatMul
#   relu, clamp (int8)        DequantizeLinear -> Relu/Clip -> QuantizeLinear
#   add, maxpool              DequantizeLinear -> Add/MaxPool -> QuantizeLinear
#                             (libnpu's definition of these int8 ops)
#   avgpool (int8)            QLinearAveragePool (com.microsoft), which
#                             onnxruntime also runs for the QDQ form
#   reshape                   Reshape
# runs it on the CPU provider and compares the outputs with the device's
# (files `got_<name>.bin`) element by element. Prints the number of elements
# compared and the fewest distinct values of an output; exits 1 on a
# mismatch.
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

NP = {"i8": np.int8, "i32": np.int32, "f32": np.float32}
PROTO = {"i8": TensorProto.INT8, "i32": TensorProto.INT32, "f32": TensorProto.FLOAT}


def main():
    g = json.load(sys.stdin)
    d = g["dir"]
    nodes, inits, inputs, feeds = [], [], [], {}
    ty = {}
    counter = [0]

    def fresh(what):
        counter[0] += 1
        return f"{what}_{counter[0]}"

    def const(arr):
        name = fresh("c")
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qparams(t):
        """(scale name, zero point name) of a per-tensor quantized type."""
        q = t["quant"]
        return const(np.float32(q["scale"])), const(np.int8(q["zp"]))

    def dequant(v):
        s, z = qparams(ty[v])
        out = fresh("deq")
        nodes.append(helper.make_node("DequantizeLinear", [v, s, z], [out]))
        return out

    def quant(real, name, t):
        s, z = qparams(t)
        nodes.append(helper.make_node("QuantizeLinear", [real, s, z], [name]))

    for n in g["nodes"]:
        name, op, t = n["name"], n["op"], n["type"]
        ty[name] = t
        if op == "input":
            arr = np.fromfile(os.path.join(d, n["file"]), dtype=NP[t["dtype"]]).reshape(t["shape"])
            feeds[name] = arr
            inputs.append(helper.make_tensor_value_info(name, PROTO[t["dtype"]], t["shape"]))
        elif op == "constant":
            arr = np.fromfile(os.path.join(d, n["file"]), dtype=NP[t["dtype"]]).reshape(t["shape"])
            inits.append(numpy_helper.from_array(arr, name))
        elif op in ("conv2d", "gemm"):
            x, w = n["inputs"][0], n["inputs"][1]
            tx, tw = ty[x], ty[w]
            xs, xz = qparams(tx)
            wq = tw["quant"]
            if "scales" in wq:
                ws = const(np.array(wq["scales"], dtype=np.float32))
                wz = const(np.zeros(len(wq["scales"]), dtype=np.int8))
            else:
                ws, wz = const(np.float32(wq["scale"])), const(np.int8(wq["zp"]))
            ys, yz = qparams(t)
            if op == "conv2d":
                ins = [x, xs, xz, w, ws, wz, ys, yz] + n["inputs"][2:]
                p = n["padding"]
                nodes.append(helper.make_node(
                    "QLinearConv", ins, [name], strides=n["stride"], pads=[p[0], p[1], p[0], p[1]],
                    dilations=n["dilation"], group=n["groups"]))
            else:
                assert len(n["inputs"]) == 2, "QLinearMatMul has no bias"
                nodes.append(helper.make_node("QLinearMatMul", [x, xs, xz, w, ws, wz, ys, yz], [name]))
        elif op in ("relu", "clamp"):
            r = dequant(n["inputs"][0])
            out = fresh("act")
            if op == "relu":
                nodes.append(helper.make_node("Relu", [r], [out]))
            else:
                lo, hi = const(np.float32(n["lo"])), const(np.float32(n["hi"]))
                nodes.append(helper.make_node("Clip", [r, lo, hi], [out]))
            quant(out, name, t)
        elif op == "add":
            a, b = (dequant(v) for v in n["inputs"])
            out = fresh("sum")
            nodes.append(helper.make_node("Add", [a, b], [out]))
            quant(out, name, t)
        elif op == "avgpool" and t["dtype"] == "i8":
            # libnpu's int8 average is onnxruntime's QLinearAveragePool.
            x = n["inputs"][0]
            xs, xz = qparams(ty[x])
            ys, yz = qparams(t)
            p = n["padding"]
            nodes.append(helper.make_node(
                "QLinearAveragePool", [x, xs, xz, ys, yz], [name], domain="com.microsoft",
                kernel_shape=n["kernel"], strides=n["stride"], pads=[p[0], p[1], p[0], p[1]],
                count_include_pad=0))
        elif op in ("maxpool", "avgpool"):
            r = dequant(n["inputs"][0])
            out = fresh("pool")
            p = n["padding"]
            kind = "MaxPool" if op == "maxpool" else "AveragePool"
            extra = {} if op == "maxpool" else {"count_include_pad": 0}
            nodes.append(helper.make_node(
                kind, [r], [out], kernel_shape=n["kernel"], strides=n["stride"],
                pads=[p[0], p[1], p[0], p[1]], **extra))
            quant(out, name, t)
        elif op == "reshape":
            shape = const(np.array(t["shape"], dtype=np.int64))
            nodes.append(helper.make_node("Reshape", [n["inputs"][0], shape], [name]))
        else:
            raise SystemExit(f"op {op} is not mapped")
    outputs = [helper.make_tensor_value_info(o, PROTO[ty[o]["dtype"]], ty[o]["shape"])
               for o in g["outputs"]]
    graph = helper.make_graph(nodes, "net", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    # Each operator as its CPU kernel runs it: no fusions or rewrites.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    wants = sess.run(g["outputs"], feeds)
    total, distinct = 0, None
    for o, want in zip(g["outputs"], wants):
        got = np.fromfile(os.path.join(d, f"got_{o}.bin"), dtype=NP[ty[o]["dtype"]])
        want = want.reshape(-1)
        bad = np.nonzero(got != want)[0]
        if got.size != want.size or bad.size:
            first = f"; first at {bad[0]}: device {got[bad[0]]}, onnxruntime {want[bad[0]]}" if bad.size else ""
            print(f"`{o}`: {bad.size} of {want.size} elements differ{first}")
            sys.exit(1)
        total += want.size
        d = np.unique(want).size
        distinct = d if distinct is None else min(distinct, d)
    # Elements compared, and the fewest distinct values in an output (a
    # saturated network would compare equal and prove nothing).
    print(total, distinct)


if __name__ == "__main__":
    main()
