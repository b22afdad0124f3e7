//! The runtime API on the in-process device model: every example kernel
//! (one per op kind, f32 and int8) compiled for small and large SRAM,
//! run, and checked against the CPU reference; bad inputs are errors with
//! the input's name.

use npu::runtime::{self, Error, Session};
use npu::TensorData;

fn kernels() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kernels");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("examples/kernels")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "npu"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).expect("read kernel")))
        .collect();
    v.sort();
    assert!(v.len() >= 9, "expected a kernel per op kind, found {}", v.len());
    v
}

#[test]
fn every_example_kernel_matches_the_reference_on_the_model() {
    for sram in [16 * 1024, 1 << 20] {
        let mut s = Session::model(sram);
        for (name, src) in kernels() {
            let k = s.compile_text(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
            let inputs = runtime::random_inputs(&k.graph, 7);
            let run = s.run(&k, &inputs).unwrap_or_else(|e| panic!("{name} at {sram} B of SRAM: {e}"));
            runtime::check(&k.graph, &inputs, &run.outputs, 1e-4).unwrap_or_else(|e| panic!("{name} at {sram} B of SRAM: {e}"));
            assert!(run.cycles > 0, "{name}: no cycles");
        }
    }
}

#[test]
fn a_wrong_result_is_reported_with_its_place() {
    let mut s = Session::model(1 << 20);
    let k = s.compile_text("input x: f32[4,4]\ny = relu(x)\noutput y\n").expect("compile");
    let inputs = runtime::random_inputs(&k.graph, 3);
    let mut run = s.run(&k, &inputs).expect("run");
    if let Some(TensorData::F32(v)) = run.outputs.get_mut("y") {
        v[5] += 1.0;
    }
    match runtime::check(&k.graph, &inputs, &run.outputs, 1e-4) {
        Err(Error::Mismatch { output, index, .. }) => assert_eq!((output.as_str(), index), ("y", 5)),
        other => panic!("want a mismatch at y[5], got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_input() {
    let mut s = Session::model(1 << 20);
    let k = s.compile_text("input x: f32[4,4]\ny = relu(x)\noutput y\n").expect("compile");
    let mut inputs = std::collections::HashMap::new();
    let e = s.run(&k, &inputs).expect_err("missing input");
    assert!(e.to_string().contains("input `x`: not given"), "{e}");
    inputs.insert("x".to_string(), TensorData::F32(vec![0.0; 3]));
    let e = s.run(&k, &inputs).expect_err("short input");
    assert!(e.to_string().contains("want 16 f32 values, got 3 f32"), "{e}");
    let e = s.compile_text("input x: f32[4]\ny = nope(x)\noutput y\n").err().expect("unknown op");
    assert!(e.to_string().starts_with("parse error at 2:"), "{e}");
}
