//! npu-submit on the model backend: each example kernel passes; bad input
//! gives exit status 2 and a message naming the problem.

use std::process::Command;

fn npu_submit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_npu-submit")).args(args).output().expect("run npu-submit");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn kernel(name: &str) -> String {
    format!("{}/../libnpu/examples/kernels/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn runs_and_checks_example_kernels() {
    for k in ["gemm_bias_relu.npu", "gemm_int8.npu", "conv2d.npu", "softmax.npu"] {
        let (rc, out) = npu_submit(&["--backend", "model", "--repeat", "2", &kernel(k)]);
        assert_eq!(rc, 0, "{k}:\n{out}");
        assert!(out.contains("every output matches the CPU reference"), "{k}:\n{out}");
        assert!(out.contains("over 2 runs"), "{k}:\n{out}");
    }
}

#[test]
fn disasm_and_dump() {
    let dir = std::env::temp_dir().join(format!("npu-submit-dump-{}", std::process::id()));
    let (rc, out) = npu_submit(&["--backend", "model", "--disasm", "--dump", dir.to_str().unwrap_or("/tmp/x"), &kernel("softmax.npu")]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("dma.load"), "no disassembly:\n{out}");
    let y = std::fs::read(dir.join("y.bin")).expect("dumped output");
    assert_eq!(y.len(), 8 * 100 * 4);
    assert!(dir.join("x.bin").exists() && dir.join("buffers.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_exits_2_with_a_reason() {
    let bad = std::env::temp_dir().join(format!("npu-submit-bad-{}.npu", std::process::id()));
    std::fs::write(&bad, "input x: f32[4]\ny = relu(z)\noutput y\n").expect("write");
    let bad = bad.to_str().unwrap_or("/nonexistent").to_string();
    let softmax = kernel("softmax.npu");
    let bad_input = format!("x={bad}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--backend", "model", "/nonexistent/k.npu"], "No such file"),
        (vec!["--backend", "model", &bad], "`z` is not defined"),
        (vec!["--backend", "gpu", &bad], "neither accel nor model"),
        (vec!["--repeat", "x", &bad], "not a valid number"),
        (vec!["--frobnicate"], "unknown option"),
        (vec![], "no kernel given"),
        (vec!["--backend", "model", "--input", "x=/nonexistent", "--no-check", &softmax], "/nonexistent"),
        (vec!["--backend", "model", "--input", "q=/dev/null", &softmax], "no input `q`"),
        (vec!["--backend", "model", "--input", &bad_input, &softmax], "takes 3200"),
    ];
    for (args, want) in cases {
        let (rc, out) = npu_submit(&args);
        assert_eq!(rc, 2, "{args:?}:\n{out}");
        assert!(out.contains(want), "{args:?}: want {want:?} in:\n{out}");
    }
    let _ = std::fs::remove_file(&bad);
}
