#!/usr/bin/env python3
"""Quantize occular-deskew's OriNet (fp32, published) to int8 with
onnxruntime's static quantization, for the tests' int8 real model (no
published int8 ONNX model the importer takes was found: they use uint8
or QLinear ops with non-zero zero points). scripts/models.sh runs it with
pinned onnxruntime and onnx versions and checks the result's sha256.

usage: quantize-model.py ORINET_FP32.onnx PAGE.png OUT.onnx

QDQ format, int8 activations and weights, both symmetric (zero point 0:
the IR's int8 MACs are symmetric), per-tensor, MinMax calibration on real
inputs: scikit-image's scanned page in the four orientations and two
crops of it, preprocessed as occular-deskew 0.5.0's orient_onnx.py does
(letterbox to 320x320 on white, bilinear, /255, ImageNet mean and std).
"""
import sys

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from PIL import Image

SIZE = 320
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def prep(im):
    """occular_deskew/orient_onnx.py's _letterbox and _prep."""
    w, h = im.size
    if w >= h:
        nw, nh = SIZE, max(1, round(h * SIZE / w))
    else:
        nw, nh = max(1, round(w * SIZE / h)), SIZE
    canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    canvas.paste(im.convert("RGB").resize((nw, nh), Image.BILINEAR), ((SIZE - nw) // 2, (SIZE - nh) // 2))
    x = np.asarray(canvas).astype(np.float32).transpose(2, 0, 1) / 255.0
    return ((x - MEAN) / STD)[None].astype(np.float32)


def samples(page_png):
    page = Image.open(page_png)
    w, h = page.size
    images = [page.rotate(-d, expand=True) for d in (0, 90, 180, 270)]
    images += [page.crop((0, 0, w // 2, h)), page.crop((w // 4, h // 4, w, h))]
    return [prep(im) for im in images]


class Reader(CalibrationDataReader):
    def __init__(self, name, data):
        self.it = iter([{name: x} for x in data])

    def get_next(self):
        return next(self.it, None)


def main():
    src, page_png, out = sys.argv[1:4]
    quantize_static(src, out, Reader("x", samples(page_png)),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=False,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


if __name__ == "__main__":
    main()
