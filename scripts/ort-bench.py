#!/usr/bin/env python3
"""onnxruntime's latency on a model, for onnx/examples/model_bench.rs.

usage: ort-bench.py MODEL.onnx MANIFEST RUNS

MANIFEST lines: `NAME FILE D0,D1,...` (tab-separated; raw little-endian
float32). Prints `ORT <ms single thread> <ms all threads>`: the median of
RUNS runs after one warm-up, each setting its own session; then `CPU <ms>`:
the median CPU time of the calling thread per single-thread run (on a
shared, loaded machine it moves far less than the time on the clock).
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def median_ms(sess, feeds, runs):
    """Median wall and calling-thread CPU time of a run, in ms."""
    sess.run(None, feeds)
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.thread_time()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    times.sort()
    cpu.sort()
    return times[len(times) // 2] * 1e3, cpu[len(cpu) // 2] * 1e3


def main():
    model, manifest, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    feeds = {}
    for line in open(manifest):
        name, path, dims = line.rstrip("\n").split("\t")
        feeds[name] = np.fromfile(path, dtype="<f4").reshape([int(d) for d in dims.split(",")])
    figures = []
    for threads in (1, 0):  # 0: onnxruntime's default, every core
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        figures.append(median_ms(sess, feeds, runs))
    print(f"ORT {figures[0][0]:.4f} {figures[1][0]:.4f}")
    print(f"CPU {figures[0][1]:.4f}")


if __name__ == "__main__":
    main()
