//! scripts/bench-report.py (what `make bench` turns its outputs into a
//! report with) on a hand-written run: model_bench's lines, as its format
//! strings print them, give the wall-clock goal and the CPU-time ratio to
//! onnxruntime, printed, in report.json and in report.md.

use npu_test_support::{checked, repo_top, TempDir};
use std::process::Command;

/// A row and the CPU-time line of onnx/examples/model_bench.rs, printed
/// with its format strings.
fn model_bench_lines(name: &str, wall: [f64; 3], cpu_npu: f64, cpu_ort: f64) -> String {
    let [npu, ort1, ort_all] = wall;
    format!(
        "{:<18} {:>10.2} {:>11.3} {:>10.3} {:>10.3} {:>8.1}x {:>8.1}x   (first run {:.1} ms; outputs fnv1a {:016x})\n\
         {:<18} cpu time: npu {cpu_npu:.3} ms, onnxruntime 1 thread {cpu_ort:.3} ms: {:.1}x\n",
        name,
        1.25,
        npu,
        ort1,
        ort_all,
        npu / ort1,
        npu / ort_all,
        2.0,
        0x0123_4567_89ab_cdefu64,
        name,
        cpu_npu / cpu_ort
    )
}

#[test]
fn report_prints_model_bench_cpu_time_ratio() {
    let dir = TempDir::new("bench-report");
    let d = dir.path();
    let write = |f: &str, text: &str| std::fs::write(d.join(f), text).unwrap();
    write("guest.txt", "");
    write("machine.txt", "host cores: 2\n");
    write("host-gemm.txt", "");
    write("host-compile.txt", "");
    write("host-double-buffer.txt", "");
    write("device.log", "");
    // 3.0x on the clock but 2.5x in CPU time; onnxruntime without a CPU
    // figure (NaN) for the second model.
    write(
        "host-real-models.txt",
        &format!(
            "real models: npu model backend (median of 5 runs after a warm-up) vs onnxruntime on the same input, same run\n\
             {:<18} {:>10} {:>11} {:>10} {:>10} {:>9} {:>9}\n{}{}",
            "model",
            "compile ms",
            "npu ms",
            "ort-1t ms",
            "ort-all ms",
            "npu/1t",
            "npu/all",
            model_bench_lines("oww-timer", [0.6, 0.2, 0.1], 0.3, 0.12),
            model_bench_lines("ppocr-cls", [4.0, 1.0, 0.5], 0.5, f64::NAN),
        ),
    );
    let out = checked(
        "bench-report.py",
        Command::new("python3")
            .arg(repo_top().join("scripts/bench-report.py"))
            .arg(d),
    )
    .stdout;
    for want in [
        "cpu time: oww-timer: npu 0.300 ms, onnxruntime 1 thread 0.120 ms: 2.5x",
        "cpu time: ppocr-cls: npu 0.500 ms, onnxruntime 1 thread nan ms: nanx",
        "NOT met: oww-timer: model backend latency / onnxruntime 1 thread: 3.0x (0.600 vs 0.200 ms; \
         cpu time 2.5x (0.300 vs 0.120 ms)) (target <= 2x)",
    ] {
        assert!(out.contains(want), "no `{want}` in:\n{out}");
    }
    let json = std::fs::read_to_string(d.join("report.json")).unwrap();
    let compact: String = json.split_whitespace().collect();
    assert!(
        compact.contains(r#""model":"oww-timer","npu_ms":0.6,"ort_1t_ms":0.2,"ort_all_ms":0.1,"npu_cpu_ms":0.3,"ort_1t_cpu_ms":0.12,"cpu_ratio":2.5"#),
        "{json}"
    );
    let md = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(md.contains("| oww-timer | 0.300 | 0.120 | 2.5x |"), "{md}");
}
