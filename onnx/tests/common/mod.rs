//! Shared by the npu-onnx tests: where the fetched models are, and the
//! comparison of a model run on the device model with onnxruntime
//! (tests/ort_compare.py).
#![allow(dead_code)]

use npu::runtime::{self, Session};
use npu::TensorData;
use npu_onnx::{import, Options};
use std::path::Path;
use std::process::Command;

#[allow(unused_imports)]
pub use npu_test_support::model_path;

/// One model and how close the NPU must come to onnxruntime
/// (numpy.isclose: |npu - ort| <= atol + rtol * |ort|).
pub struct Case {
    pub file: &'static str,
    pub shapes: &'static [(&'static str, &'static [usize])],
    pub atol: f32,
    pub rtol: f32,
}

/// Import `bytes`, run them on the device model with seeded random inputs,
/// and compare with onnxruntime running `reference` (a path). Returns the
/// comparison's exit status and its report.
pub fn run_against_ort(
    case: &Case,
    bytes: &[u8],
    base: &Path,
    reference: &Path,
    tag: &str,
) -> (i32, String) {
    run_against_ort_with(case, bytes, base, reference, tag, false)
}

/// [`run_against_ort`], with the CPU fallback on or off.
pub fn run_against_ort_with(
    case: &Case,
    bytes: &[u8],
    base: &Path,
    reference: &Path,
    tag: &str,
    cpu_fallback: bool,
) -> (i32, String) {
    run_against_ort_fed(case, bytes, base, reference, tag, cpu_fallback, None)
}

/// [`run_against_ort_with`] on the given inputs (by ONNX name), or seeded
/// random ones.
pub fn run_against_ort_fed(
    case: &Case,
    bytes: &[u8],
    base: &Path,
    reference: &Path,
    tag: &str,
    cpu_fallback: bool,
    fed: Option<std::collections::HashMap<String, TensorData>>,
) -> (i32, String) {
    let opts = Options {
        input_shapes: case
            .shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect(),
        cpu_fallback,
    };
    let model = import(bytes, Some(base), &opts).unwrap_or_else(|e| panic!("{}: {e}", case.file));
    let mut session = Session::model(1 << 20);
    let mut in_graph = npu::Graph::new();
    for io in &model.inputs {
        in_graph.input(&io.ir_name, io.ty.clone()).unwrap();
    }
    let inputs = fed.unwrap_or_else(|| runtime::random_inputs(&in_graph, 7));
    let (outputs, summary) = if model.segments.is_empty() {
        let kernel = session
            .compile(model.graph.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let run = session
            .run(&kernel, &inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let summary = format!(
            "{} instructions, compiled in {:.2} ms, {} modelled cycles",
            kernel.program.insns().len(),
            kernel.compile_time.as_secs_f64() * 1e3,
            run.cycles
        );
        (run.outputs, summary)
    } else {
        let cpu: Vec<String> = model
            .segments
            .iter()
            .filter_map(|s| match s {
                npu_onnx::Segment::Cpu(c) => Some(format!("{} ({})", c.node, c.op)),
                _ => None,
            })
            .collect();
        let out = npu_onnx::run_segments(
            &mut session,
            &model.segments,
            &model.inputs,
            &inputs,
            &model.outputs,
            Some(1e-4),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        (
            out,
            format!(
                "{} segments; on the CPU: {}",
                model.segments.len(),
                cpu.join(", ")
            ),
        )
    };
    let dir = std::env::temp_dir().join(format!(
        "npu-onnx-{}-{}-{tag}",
        std::process::id(),
        case.file.replace('/', "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = String::new();
    let mut put = |kind: &str, name: &str, shape: &[usize], d: &TensorData, i: usize| {
        let f = dir.join(format!("{kind}{i}.bin"));
        std::fs::write(&f, d.to_bytes()).unwrap();
        let dims: Vec<String> = shape.iter().map(|x| x.to_string()).collect();
        manifest += &format!(
            "{kind}\t{name}\t{}\t{}\t{}\n",
            f.display(),
            dims.join(","),
            d.dtype().name()
        );
    };
    for (i, io) in model.inputs.iter().enumerate() {
        put("input", &io.name, &io.ty.shape, &inputs[&io.ir_name], i);
    }
    for (i, io) in model.outputs.iter().enumerate() {
        put("output", &io.name, &io.ty.shape, &outputs[&io.ir_name], i);
    }
    let mf = dir.join("manifest.tsv");
    std::fs::write(&mf, manifest).unwrap();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ort_compare.py"))
        .arg(reference)
        .arg(&mf)
        .arg(case.atol.to_string())
        .arg(case.rtol.to_string())
        .output()
        .expect("run python3");
    let _ = std::fs::remove_dir_all(&dir);
    let report = format!(
        "{}: {summary}\n{}{}",
        case.file,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code, 3,
        "onnxruntime is missing (scripts/host-deps.sh installs it): {report}"
    );
    (code, report)
}
