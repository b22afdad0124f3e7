//! npu-bench-models: `make bench`'s real models through the whole stack
//! (libnpu's runtime API on /dev/accel in the guest, or the device model).
//!
//! usage: npu-bench-models [--backend accel|model] [--runs N] DIR
//!
//! DIR/manifest.txt is scripts/guest-models.py's (the guest's /models):
//! each model's file and the shapes of its symbolic inputs. Per model it
//! times the import (npu-onnx), the compile (libnpu) and the first run
//! (which uploads the weights), then N runs of one request after a warm-up
//! (latency: median and 90th percentile, inputs set, run, outputs read),
//! then N runs with two requests in flight (throughput). One line a model:
//!
//!   MODEL name import_ms compile_ms first_ms median_ms p90_ms runs_per_s
//!
//! scripts/bench.sh collects the lines beside the host's figures.

use npu::api::{CompiledModel, InferRequest, Npu};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: npu-bench-models [--backend accel|model] [--runs N] DIR";

fn fail(msg: String) -> ! {
    eprintln!("npu-bench-models: {msg}");
    std::process::exit(1);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One model of the manifest: its name, file and symbolic input shapes.
struct Case {
    name: String,
    path: PathBuf,
    shapes: Vec<(String, Vec<usize>)>,
}

fn parse_manifest(dir: &Path, text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = |why: &str| format!("manifest line {}: {why}", i + 1);
        if f.len() != 6 {
            return Err(bad("want 6 tab-separated fields"));
        }
        let mut shapes = Vec::new();
        let args: Vec<&str> = f[4].split(' ').collect();
        for w in args.windows(2).filter(|w| w[0] == "--shape") {
            let (n, dims) = w[1]
                .split_once('=')
                .ok_or_else(|| bad("--shape wants NAME=D0,D1,..."))?;
            let dims = dims
                .split(',')
                .map(|d| {
                    d.parse::<usize>()
                        .map_err(|_| bad("a dimension is not a number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            shapes.push((n.to_string(), dims));
        }
        cases.push(Case {
            name: f[0].to_string(),
            path: dir.join(f[1]),
            shapes,
        });
    }
    if cases.is_empty() {
        return Err("no models in the manifest".into());
    }
    Ok(cases)
}

/// A request with seeded inputs in [-1, 1) (latency does not depend on the
/// values; the tests check the outputs).
fn request(model: &CompiledModel) -> Result<InferRequest, String> {
    let r = model.request();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for t in model.inputs() {
        let n = t.ty.bytes() / t.ty.dtype.size();
        let mut bytes = Vec::with_capacity(t.ty.bytes());
        for _ in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let x = (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            match t.ty.dtype {
                npu::DType::F32 => bytes.extend_from_slice(&x.to_le_bytes()),
                npu::DType::F16 => bytes.extend_from_slice(&npu_isa::f32_to_f16(x).to_le_bytes()),
                npu::DType::Bf16 => bytes.extend_from_slice(&npu_isa::f32_to_bf16(x).to_le_bytes()),
                npu::DType::I8 | npu::DType::U8 => bytes.push(seed as u8),
                npu::DType::I32 => bytes.extend_from_slice(&((seed as i32) >> 16).to_le_bytes()),
            }
        }
        r.set_input(&t.name, &bytes)
            .map_err(|e| format!("input {}: {e}", t.name))?;
    }
    Ok(r)
}

fn read_outputs(model: &CompiledModel, r: &InferRequest) -> Result<(), String> {
    for t in model.outputs() {
        r.output(&t.name)
            .map_err(|e| format!("output {}: {e}", t.name))?;
    }
    Ok(())
}

fn bench(npu: &Npu, case: &Case, runs: usize) -> Result<String, String> {
    let opts = npu_onnx::Options {
        input_shapes: case.shapes.iter().cloned().collect(),
        cpu_fallback: false,
    };
    let t = Instant::now();
    let imported = npu_onnx::load(&case.path, &opts).map_err(|e| e.to_string())?;
    let import = t.elapsed();
    let t = Instant::now();
    let model = npu.load_graph(imported.graph).map_err(|e| e.to_string())?;
    let compile = t.elapsed();
    let r = request(&model)?;
    let t = Instant::now();
    r.run().map_err(|e| format!("first run: {e}"))?;
    read_outputs(&model, &r)?;
    let first = t.elapsed();
    // Latency: one request, each run waited for and its outputs read.
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        r.run().map_err(|e| format!("run: {e}"))?;
        read_outputs(&model, &r)?;
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
    // Throughput: two requests, the next run started before the last one
    // is waited for, so the device never waits for the program.
    let pair = [r, request(&model)?];
    let t = Instant::now();
    let mut pending = Some(pair[0].start(&[]).map_err(|e| format!("start: {e}"))?);
    for i in 1..=runs {
        let next = if i < runs {
            Some(pair[i % 2].start(&[]).map_err(|e| format!("start: {e}"))?)
        } else {
            None
        };
        if let Some(f) = pending.take() {
            f.wait(None).map_err(|e| format!("wait: {e}"))?;
            read_outputs(&model, &pair[(i - 1) % 2])?;
        }
        pending = next;
    }
    let per_s = runs as f64 / t.elapsed().as_secs_f64();
    Ok(format!(
        "MODEL {} {:.2} {:.2} {:.2} {:.3} {:.3} {:.2}",
        case.name,
        ms(import),
        ms(compile),
        ms(first),
        ms(median),
        ms(p90),
        per_s
    ))
}

fn main() {
    let mut backend = None;
    let mut runs = 10usize;
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--backend" => backend = Some(args.next().unwrap_or_else(|| fail(USAGE.into()))),
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| fail(format!("--runs wants a number > 0\n{USAGE}")))
            }
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(PathBuf::from(a)),
            _ => fail(format!("unexpected `{a}`\n{USAGE}")),
        }
    }
    let dir = dir.unwrap_or_else(|| fail(USAGE.into()));
    let npu = match backend.as_deref() {
        None | Some("accel") => Npu::open(),
        Some("model") => Npu::model(1 << 20),
        Some(b) => fail(format!("unknown backend `{b}`\n{USAGE}")),
    }
    .unwrap_or_else(|e| fail(format!("open: {e}")));
    let manifest = dir.join("manifest.txt");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| fail(format!("{}: {e}", manifest.display())));
    let cases = parse_manifest(&dir, &text).unwrap_or_else(|e| fail(e));
    println!(
        "real models through the whole stack on the {} backend: {runs} runs each after a warm-up",
        match npu.info().backend {
            npu::api::BackendKind::Accel => "accel",
            npu::api::BackendKind::Model => "model",
        }
    );
    println!("# MODEL name import_ms compile_ms first_ms median_ms p90_ms runs_per_s");
    let mut failed = false;
    for case in &cases {
        match bench(&npu, case, runs) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("npu-bench-models: {}: {e}", case.name);
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
