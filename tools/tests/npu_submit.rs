//! npu-submit on the model backend: each example kernel passes; bad input
//! gives exit status 2 and a message naming the problem.

use std::process::Command;

fn npu_submit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_npu-submit"))
        .args(args)
        .output()
        .expect("run npu-submit");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn kernel(name: &str) -> String {
    format!(
        "{}/../libnpu/examples/kernels/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn runs_and_checks_every_example_kernel() {
    let dir = format!("{}/../libnpu/examples/kernels", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("examples/kernels")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".npu"))
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for k in &names {
        // A small SRAM too, so that every op is tiled.
        for sram in ["1048576", "16384"] {
            let (rc, out) = npu_submit(&[
                "--backend",
                "model",
                "--sram",
                sram,
                "--repeat",
                "2",
                &kernel(k),
            ]);
            assert_eq!(rc, 0, "{k} at {sram} B:\n{out}");
            assert!(
                out.contains("every output matches the CPU reference"),
                "{k}:\n{out}"
            );
            assert!(
                out.contains("over 2 runs") && out.contains("modelled cycles"),
                "{k}:\n{out}"
            );
        }
    }
}

#[test]
fn a_dump_replays_with_raw_and_gives_the_same_output() {
    let dir = std::env::temp_dir().join(format!("npu-submit-replay-{}", std::process::id()));
    let d = dir.to_str().unwrap_or("/tmp/npu-submit-replay");
    let (rc, out) = npu_submit(&[
        "--backend",
        "model",
        "--seed",
        "9",
        "--dump",
        d,
        &kernel("gemm_int8.npu"),
    ]);
    assert_eq!(rc, 0, "{out}");
    let list = std::fs::read_to_string(dir.join("buffers.txt")).expect("buffers.txt");
    // name size address; outputs start empty in the replay.
    let mut args = vec![
        "--backend".to_string(),
        "model".into(),
        "--raw".into(),
        format!("{d}/cmdbuf.bin"),
    ];
    let mut y_index = None;
    for (i, line) in list.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{line}");
        args.push("--buffer".into());
        if f[0] == "y" {
            y_index = Some(i);
            args.push(f[1].to_string());
        } else {
            args.push(format!("{}={d}/{}.bin", f[1], f[0]));
        }
        assert!(f[2].starts_with("0x"), "no NPU address: {line}");
    }
    let y_index = y_index.expect("y in buffers.txt");
    let replay = dir.join("replay");
    args.extend(["--dump".into(), replay.to_string_lossy().into_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (rc, out) = npu_submit(&refs);
    assert_eq!(rc, 0, "{out}");
    let want = std::fs::read(dir.join("y.bin")).expect("y.bin");
    let got = std::fs::read(replay.join(format!("buffer{y_index}.bin"))).expect("replayed y");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        &got[..want.len()],
        &want[..],
        "the replay computed another y"
    );
}

#[test]
fn a_faulting_raw_job_exits_1_naming_fault_and_offset() {
    let bad = std::env::temp_dir().join(format!("npu-submit-badop-{}.bin", std::process::id()));
    let mut cmd = vec![0u8; 128];
    cmd[64] = 0xee;
    std::fs::write(&bad, &cmd).expect("write");
    let (rc, out) = npu_submit(&[
        "--backend",
        "model",
        "--raw",
        bad.to_str().unwrap_or("/nonexistent"),
    ]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("BadOpcode at 0x40 (command buffer offset, instruction 1)"),
        "{out}"
    );
}

#[test]
fn disasm_and_dump() {
    let dir = std::env::temp_dir().join(format!("npu-submit-dump-{}", std::process::id()));
    let (rc, out) = npu_submit(&[
        "--backend",
        "model",
        "--disasm",
        "--dump",
        dir.to_str().unwrap_or("/tmp/x"),
        &kernel("softmax.npu"),
    ]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("dma.load"), "no disassembly:\n{out}");
    let y = std::fs::read(dir.join("y.bin")).expect("dumped output");
    assert_eq!(y.len(), 8 * 100 * 4);
    assert!(dir.join("x.bin").exists() && dir.join("buffers.txt").exists());
    // The command buffer as submitted: whole instructions, as --disasm listed.
    let cmd = std::fs::read(dir.join("cmdbuf.bin")).expect("dumped command buffer");
    assert!(
        !cmd.is_empty() && cmd.len() % 64 == 0,
        "{} bytes",
        cmd.len()
    );
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
        (
            vec!["--backend", "model", "/nonexistent/k.npu"],
            "No such file",
        ),
        (vec!["--backend", "model", &bad], "parse error at 2:"),
        (vec!["--backend", "model", &bad], "`z` is not defined"),
        (vec!["--buffer", "64", &softmax], "--buffer goes with --raw"),
        (
            vec!["--backend", "model", "--raw", "/dev/null"],
            "not a whole number of 64-byte instructions",
        ),
        (
            vec!["--backend", "model", "--sram", "64", &softmax],
            "does not fit in 64 bytes of SRAM",
        ),
        (vec!["--backend", "gpu", &bad], "neither accel nor model"),
        (vec!["--repeat", "x", &bad], "not a valid number"),
        (vec!["--frobnicate"], "unknown option"),
        (vec![], "no kernel given"),
        (
            vec![
                "--backend",
                "model",
                "--input",
                "x=/nonexistent",
                "--no-check",
                &softmax,
            ],
            "/nonexistent",
        ),
        (
            vec!["--backend", "model", "--input", "q=/dev/null", &softmax],
            "no input `q`",
        ),
        (
            vec!["--backend", "model", "--input", &bad_input, &softmax],
            "takes 3200",
        ),
    ];
    for (args, want) in cases {
        let (rc, out) = npu_submit(&args);
        assert_eq!(rc, 2, "{args:?}:\n{out}");
        assert!(out.contains(want), "{args:?}: want {want:?} in:\n{out}");
    }
    let _ = std::fs::remove_file(&bad);
}
