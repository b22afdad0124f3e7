#!/usr/bin/env python3
"""Turn the outputs of scripts/bench.sh into build/bench/report.{md,json}
and throughput.svg: every figure beside its baseline and its goal."""
import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
guest = out.joinpath("guest.txt").read_text()
rows = [json.loads(l.split("BENCH ", 1)[1]) for l in guest.splitlines() if "BENCH {" in l]
by = {(r["section"], r["name"]): r for r in rows}
machine = dict(l.split(": ", 1) for l in out.joinpath("machine.txt").read_text().splitlines() if ": " in l)

host_gemm = []
for l in out.joinpath("host-gemm.txt").read_text().splitlines():
    m = re.match(r"\s*(\d+)\s.*?(\d+)%\s+([\d.]+)x", l)
    if m:
        host_gemm.append({"n": int(m.group(1)), "f32_vs_host": f"{m.group(2)}%", "i8_vs_f32": f"{m.group(3)}x", "raw": l.strip()})
compile_txt = out.joinpath("host-compile.txt").read_text()
db_txt = out.joinpath("host-double-buffer.txt").read_text()
models_path = out.joinpath("host-models.txt")
models_txt = models_path.read_text() if models_path.exists() else ""
real_path = out.joinpath("host-real-models.txt")
real_txt = real_path.read_text() if real_path.exists() else ""
def model_lines(name):
    """npu-bench-models' `MODEL name import compile first median p90 runs/s` lines, by model."""
    p = out.joinpath(name)
    rows = {}
    for l in (p.read_text().splitlines() if p.exists() else []):
        f = l.split()
        if len(f) == 8 and f[0] == "MODEL":
            rows[f[1].replace("-", "_")] = [float(x) for x in f[2:]]
    return rows
guest_models = model_lines("guest-models.txt")
host_stack = model_lines("host-models-stack.txt")
# model_bench rows by model: npu ms, ort-1t ms, ort-all ms.
real_rows = {}
for l in real_txt.splitlines():
    m = re.match(r"(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x", l)
    if m:
        real_rows[m.group(1)] = [float(m.group(i)) for i in (3, 4, 5)]
# model_bench's CPU-time line under each row (on a loaded host the clock
# also counts other processes' time; CPU time does not):
# `NAME cpu time: npu X ms, onnxruntime 1 thread Y ms: Rx` (Rust's f64
# Display: NaN or inf when onnxruntime gave no CPU time).
FLOAT = r"([\d.]+|NaN|inf)"
real_cpu = {}
for l in real_txt.splitlines():
    m = re.match(r"(\S+)\s+cpu time: npu " + FLOAT + r" ms, onnxruntime 1 thread " + FLOAT + r" ms: " + FLOAT + r"x\s*$", l)
    if m:
        real_cpu[m.group(1)] = {"npu_cpu_ms": float(m.group(2)), "ort_1t_cpu_ms": float(m.group(3)), "cpu_ratio": float(m.group(4))}
device_summary = next((l for l in out.joinpath("device.log").read_text().splitlines() if "summary:" in l), "")

goals = []
def goal(name, value, target, ok, note=""):
    goals.append({"goal": name, "measured": value, "target": target, "met": bool(ok), "note": note})

lat = by.get(("latency", "null_job_round_trip"))
if lat:
    goal("null-job round trip <= 2x (no-op ioctl + MMIO write), p50", f"{lat['ratio_p50']:.2f}x", "<= 2x", lat["ratio_p50"] <= 2.0)
tp = [r for r in rows if r["section"] == "throughput"]
best = max((r["jobs_per_s"] for r in tp), default=0)
goal("jobs per second at depth", f"{best:.0f} jobs/s (best)", ">= 100000 jobs/s", best >= 100000)
for g in host_gemm:
    if g["n"] >= 256:
        v = float(g["f32_vs_host"].rstrip("%")) / 100 if g["f32_vs_host"].endswith("%") else float(g["f32_vs_host"])
        goal(f"device f32 gemm >= 50% of the host GEMM crate (n={g['n']})", g["f32_vs_host"], ">= 50%", v >= 0.5)
# model_figures rows: model, SRAM KiB, insns, cmd bytes, jobs, compile ms, cycles, bounds, ratio.
for l in models_txt.splitlines():
    m = re.match(r"(\S+)\s+(\d+) KiB\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\S+)", l)
    if not m:
        continue
    name, kib, cmd, ms, ratio = m.group(1), int(m.group(2)), int(m.group(4)), float(m.group(6)), m.group(10)
    if name == "resnet18" and kib == 256:
        goal("ResNet-18 f32 at 256 KiB: command bytes", f"{cmd} B", "<= 1 MiB", cmd <= 1 << 20)
        if ratio != "-":
            goal("ResNet-18 f32 at 256 KiB: cycles / max(compute, DMA bound)", f"{ratio}x", "<= 1.5x", float(ratio) <= 1.5)
    if name == "mobilenetv2":
        goal(f"MobileNetV2 f32 at {kib} KiB: command bytes", f"{cmd} B", "< 512 KiB", cmd < 512 << 10)
    goal(f"{name} at {kib} KiB: compile time", f"{ms:.1f} ms", "< 100 ms", ms < 100)
# model_bench rows: model, compile ms, npu ms, ort-1t ms, ort-all ms, npu/1t, npu/all.
for l in real_txt.splitlines():
    m = re.match(r"(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x", l)
    if m:
        r = float(m.group(6))
        c = real_cpu.get(m.group(1))
        cpu = f"; cpu time {c['cpu_ratio']:.1f}x ({c['npu_cpu_ms']:.3f} vs {c['ort_1t_cpu_ms']:.3f} ms)" if c else ""
        goal(f"{m.group(1)}: model backend latency / onnxruntime 1 thread", f"{r:.1f}x ({m.group(3)} vs {m.group(4)} ms{cpu})", "<= 2x", r <= 2.0)
cnn = by.get(("compute", "small_cnn"))
if cnn:
    goal("small CNN whole-stack offload >= 10x the guest CPU", f"{cnn['speedup']:.1f}x", ">= 10x", cnn["speedup"] >= 10)
cp = by.get(("copies", "mapped_buffer_to_device"))
if cp:
    goal("a mapped buffer reaches the device with zero copies", f"libnpu copies {cp['libnpu_copies']:.0f}, bounce slots {cp['swiotlb_slots']:.0f}", "0", cp["libnpu_copies"] == 0 and cp["swiotlb_slots"] == 0)

real_models = [{"model": k, "npu_ms": v[0], "ort_1t_ms": v[1], "ort_all_ms": v[2], **real_cpu.get(k, {})} for k, v in sorted(real_rows.items())]
json.dump({"machine": machine, "guest": rows, "host_gemm": host_gemm, "real_models": real_models, "goals": goals, "device_summary": device_summary},
          out.joinpath("report.json").open("w"), indent=1)

md = ["# npu-bench report", ""]
md += ["Reproduce: `make bench` (quick: `NPU_BENCH_QUICK=1 make bench`). Each figure", "is printed beside its baseline, measured in the same run.", ""]
md += ["## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()] + [""]
md += ["## Goals", "", "| goal | measured | target | met |", "|---|---|---|---|"]
md += [f"| {g['goal']} | {g['measured']} | {g['target']} | {'yes' if g['met'] else '**no**'} |" for g in goals] + [""]
if lat:
    md += ["## Submission latency (guest, through the driver)", "",
           "| | p50 (us) | p99 (us) |", "|---|---|---|",
           f"| null job: submit -> interrupt -> fence -> wait | {lat['p50_us']:.1f} | {lat['p99_us']:.1f} |",
           f"| of which: the SUBMIT ioctl | {lat.get('submit_p50_us', float('nan')):.1f} | |",
           f"| of which: the WAIT ioctl (doorbell -> device -> interrupt -> fence -> wake-up) | {lat.get('wait_p50_us', float('nan')):.1f} | |",
           f"| baseline: no-op ioctl (GET_PARAM) | {lat['ioctl_p50_us']:.1f} | {lat['ioctl_p99_us']:.1f} |",
           f"| baseline: one MMIO write (BAR0, read-only register) | {lat['mmio_p50_us']:.1f} | {lat['mmio_p99_us']:.1f} |", ""]
if tp:
    md += ["## Throughput: null jobs per second", "", "| processes | " + " | ".join(f"depth {d}" for d in sorted({int(r['depth']) for r in tp})) + " |",
           "|---|" + "---|" * len({r['depth'] for r in tp})]
    for p in sorted({int(r["procs"]) for r in tp}):
        md.append(f"| {p} | " + " | ".join(f"{r['jobs_per_s']:.0f}" for r in sorted((r for r in tp if r['procs'] == p), key=lambda r: r['depth'])) + " |")
    md.append("")
bufs = [r for r in rows if r["section"] == "buffers"]
if bufs:
    md += ["## Buffers: create + map + first touch + close", "", "| size | per second | MiB/s |", "|---|---|---|"]
    md += [f"| {r['name']} | {r['per_s']:.1f} | {r['mib_per_s']:.1f} |" for r in bufs] + [""]
comp = [r for r in rows if r["section"] == "compute"]
if comp:
    md += ["## Compute through the whole stack vs. the guest CPU (project's CPU reference)", "",
           "| kernel | compile (ms) | NPU, whole stack (ms) | guest CPU (ms) | speed-up | modelled cycles |", "|---|---|---|---|---|---|"]
    md += [f"| {r['name']} | {r['compile_ms']:.3f} | {r['npu_ms']:.3f} | {r['cpu_ms']:.3f} | {r['speedup']:.1f}x | {r['cycles']:.0f} |" for r in comp] + [""]
md += ["## Host: device-model GEMM vs. the host GEMM crate (same run)", "", "```", out.joinpath("host-gemm.txt").read_text().rstrip(), "```", ""]
if out.joinpath("host-scoreboard.txt").exists():
    md += ["## Host: cost-model scoreboard, 64k vs. 16k DMA-only instructions (same run)", "", "```",
           out.joinpath("host-scoreboard.txt").read_text().rstrip(), "```", ""]
md += ["## Host: compiler", "", "```", compile_txt.rstrip(), "```", "", "## Host: double buffering", "", "```", db_txt.rstrip(), "```", ""]
if real_txt:
    md += ["## Host: real published models, model backend vs onnxruntime (onnx/examples/model_bench)", "", "```", real_txt.rstrip(), "```", ""]
if real_cpu:
    md += ["CPU time of one run (median; the model backend's threads vs onnxruntime's, 1 thread), which a loaded host does not inflate as it does the clock:", "",
           "| model | npu cpu ms | onnxruntime 1 thread cpu ms | npu / onnxruntime |", "|---|---|---|---|"]
    md += [f"| {k} | {v['npu_cpu_ms']:.3f} | {v['ort_1t_cpu_ms']:.3f} | {v['cpu_ratio']:.1f}x |" for k, v in sorted(real_cpu.items())] + [""]
if guest_models or host_stack:
    md += ["## Real published models through the whole stack (npu-bench-models; onnxruntime from model_bench, same run)", "",
           "Latency: median ms of one request (inputs set, run, outputs read); throughput: runs/s with two requests in flight; "
           "load: import (npu-onnx) + compile (libnpu) ms; onnxruntime on the host CPU, 1 thread and all cores (its throughput is 1000 / its latency).", "",
           "| model | guest /dev/accel ms | guest runs/s | guest load ms | host model backend ms | host runs/s | host load ms | ort 1 thread ms | ort all cores ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    def cell(rows, name, i, fmt="{:.2f}"):
        return fmt.format(rows[name][i]) if name in rows else "-"
    def load(rows, name):
        return f"{rows[name][0]:.1f} + {rows[name][1]:.1f}" if name in rows else "-"
    for name in sorted(set(guest_models) | set(host_stack)):
        md.append(f"| {name} | {cell(guest_models, name, 3)} | {cell(guest_models, name, 5, '{:.1f}')} | {load(guest_models, name)} "
                  f"| {cell(host_stack, name, 3)} | {cell(host_stack, name, 5, '{:.1f}')} | {load(host_stack, name)} "
                  f"| {cell(real_rows, name, 1, '{:.3f}')} | {cell(real_rows, name, 2, '{:.3f}')} |")
    md += [""]
if models_txt:
    md += ["## Host: real networks on the device model (libnpu/examples/model_figures)", "", "```", models_txt.rstrip(), "```", ""]
if cp:
    md += ["## Copies", "", f"A 16 MiB buffer written through its CPU mapping was copied by the device into another buffer and compared: libnpu made {cp['libnpu_copies']:.0f} CPU copies (the user writes the mapping), the kernel's bounce buffers (swiotlb high water) grew by {cp['swiotlb_slots']:.0f} slots, and the device server reads guest RAM through the regions QEMU shares with DMA_MAP (it has no message-based DMA path): `{device_summary}`.", ""]
out.joinpath("report.md").write_text("\n".join(md))

# A plot: jobs/s against queue depth, one line per process count.
if tp:
    W, H, L, B = 640, 400, 70, 50
    depths = sorted({int(r["depth"]) for r in tp})
    ymax = max(r["jobs_per_s"] for r in tp) * 1.1 or 1
    def x(d): return L + (W - L - 20) * depths.index(d) / max(1, len(depths) - 1)
    def y(v): return H - B - (H - B - 20) * v / ymax
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W/2}" y="15" text-anchor="middle">null jobs per second vs. queue depth</text>',
           f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="black"/><line x1="{L}" y1="20" x2="{L}" y2="{H-B}" stroke="black"/>']
    for d in depths:
        svg.append(f'<text x="{x(d)}" y="{H-B+18}" text-anchor="middle">{d}</text>')
    for i in range(5):
        v = ymax * i / 4
        svg.append(f'<text x="{L-6}" y="{y(v)+4}" text-anchor="end">{v:.0f}</text>')
    for p, color in zip(sorted({int(r["procs"]) for r in tp}), ["#1f77b4", "#d62728", "#2ca02c"]):
        pts = sorted(((int(r["depth"]), r["jobs_per_s"]) for r in tp if int(r["procs"]) == p))
        svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="' + " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts) + '"/>')
        svg.append(f'<text x="{W-25}" y="{y(pts[-1][1])-6:.1f}" text-anchor="end" fill="{color}">{p} process(es)</text>')
    svg.append(f'<text x="{W/2}" y="{H-12}" text-anchor="middle">queue depth (jobs in flight per process)</text></svg>')
    out.joinpath("throughput.svg").write_text("\n".join(svg))
for g in goals:
    print(f"{'met' if g['met'] else 'NOT met'}: {g['goal']}: {g['measured']} (target {g['target']})")
for k, v in sorted(real_cpu.items()):
    print(f"cpu time: {k}: npu {v['npu_cpu_ms']:.3f} ms, onnxruntime 1 thread {v['ort_1t_cpu_ms']:.3f} ms: {v['cpu_ratio']:.1f}x")
