//! Helpers: run a graph on the in-process device model through the
//! library's own session and model backend, compare with the library's CPU
//! reference (`runtime::check`), and compare int8 gemm/conv2d results with
//! an independent reference written here from the definitions.
#![allow(dead_code)]

mod int8_ref;

use npu::ir::Graph;
use npu::reference::TensorData;
use npu::runtime::{self, Session};
use npu::CompileOptions;
use std::collections::HashMap;

pub use npu::runtime::random_inputs;

pub struct DeviceRun {
    pub outputs: HashMap<String, TensorData>,
    pub cycles: u64,
    pub insns: usize,
}

/// Compile for the model backend with `sram` bytes of SRAM and run there.
pub fn run_device(
    g: &Graph,
    inputs: &HashMap<String, TensorData>,
    sram: u32,
    opts: CompileOptions,
) -> DeviceRun {
    let mut s = Session::model(sram);
    s.options = opts;
    let k = s
        .compile(g.clone())
        .unwrap_or_else(|e| panic!("compile: {e}"));
    let run = s.run(&k, inputs).unwrap_or_else(|e| panic!("run: {e}"));
    DeviceRun {
        outputs: run.outputs,
        cycles: run.cycles,
        insns: k.program.insns().len(),
    }
}

/// Run on the device model with inputs from `seed` and compare: with the
/// library's reference (int8 exactly, f32 within `tol` relative to
/// max(1, |want|)), and int8 gemm/conv2d results with [`int8_ref`].
pub fn check(g: &Graph, seed: u64, sram: u32, tol: f32) -> DeviceRun {
    let inputs = random_inputs(g, seed);
    let got = run_device(g, &inputs, sram, CompileOptions::default());
    runtime::check(g, &inputs, &got.outputs, tol).unwrap_or_else(|e| panic!("{e} (seed {seed})"));
    int8_ref::check(g, &inputs, &got.outputs).unwrap_or_else(|e| panic!("{e} (seed {seed})"));
    got
}

/// How many outputs of `g` the independent int8 reference covers.
pub fn int8_checked_outputs(g: &Graph, inputs: &HashMap<String, TensorData>) -> usize {
    int8_ref::covered_outputs(g, inputs)
}

/// Runs a reference script (tests/*.py) under python3 with `input` (a JSON
/// case) on its stdin; the exit status and the output are the caller's to
/// judge.
pub fn python_with_stdin(script: &str, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the case to python3");
    child.wait_with_output().expect("python3")
}

/// Runs one single-node case (JSON) through tests/onnx_ref.py, which builds
/// the ONNX model, runs it on onnxruntime and compares with the case's
/// `got`; fails the test with `what` and the script's report if they
/// disagree. Returns the number of elements compared.
pub fn onnx_ref_check(what: &str, json: &str) -> usize {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx_ref.py");
    let res = python_with_stdin(script, json);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{what}: onnxruntime disagrees: {stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    stdout.trim().parse().expect("element count")
}

/// Runs labelled single-node cases (JSON) in one tests/math_ref.py
/// process (onnxruntime): for each, Ok(elements compared) or
/// Err(onnxruntime's report).
pub fn math_ref_batch(cases: &[(String, String)]) -> Vec<(String, Result<usize, String>)> {
    let json = format!(
        "[{}]",
        cases
            .iter()
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/math_ref.py");
    let res = python_with_stdin(script, &json);
    let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        cases.len(),
        "math_ref.py: {stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    cases
        .iter()
        .zip(lines)
        .map(|((label, _), line)| {
            let r = match line.strip_prefix("ok ") {
                Some(n) => Ok(n.trim().parse().expect("element count")),
                None => Err(line.to_string()),
            };
            (label.clone(), r)
        })
        .collect()
}

/// Every case of a [`math_ref_batch`] passes; returns the elements
/// compared.
pub fn math_ref_all_pass(cases: &[(String, String)]) -> usize {
    let mut total = 0;
    for (label, r) in math_ref_batch(cases) {
        total += r.unwrap_or_else(|e| panic!("{label}: {e}"));
    }
    total
}

/// `[a,b,c]`: a list in the JSON the Python references read.
pub fn list<T: std::fmt::Display>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// A tensor spec for onnx_ref.py (`feed`: a graph input, else an
/// initializer); f32 values travel as their bit patterns.
pub fn onnx_spec(d: &TensorData, shape: &[usize], feed: bool) -> String {
    let (dtype, data) = match d {
        TensorData::I8(v) => ("i8", list(v)),
        TensorData::I32(v) => ("i32", list(v)),
        TensorData::U8(v) => ("u8", list(v)),
        // As bit patterns (onnx_ref.py views them as float16).
        TensorData::F16(v) => ("f16", list(v)),
        TensorData::Bf16(v) => ("bf16", list(v)),
        TensorData::F32(v) => (
            "f32",
            list(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        ),
    };
    format!(
        "{{\"dtype\":\"{dtype}\",\"shape\":{},\"data\":{data},\"bits\":{},\"feed\":{feed}}}",
        list(shape),
        dtype == "f32"
    )
}
