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
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).expect("read kernel"),
            )
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 9,
        "expected a kernel per op kind, found {}",
        v.len()
    );
    v
}

#[test]
fn every_example_kernel_matches_the_reference_on_the_model() {
    for sram in [16 * 1024, 1 << 20] {
        let mut s = Session::model(sram);
        for (name, src) in kernels() {
            let k = s
                .compile_text(&src)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let inputs = runtime::random_inputs(&k.graph, 7);
            let run = s
                .run(&k, &inputs)
                .unwrap_or_else(|e| panic!("{name} at {sram} B of SRAM: {e}"));
            runtime::check(&k.graph, &inputs, &run.outputs, 1e-4)
                .unwrap_or_else(|e| panic!("{name} at {sram} B of SRAM: {e}"));
            assert!(run.cycles > 0, "{name}: no cycles");
        }
    }
}

#[test]
fn a_wrong_result_is_reported_with_its_place() {
    let mut s = Session::model(1 << 20);
    let k = s
        .compile_text("input x: f32[4,4]\ny = relu(x)\noutput y\n")
        .expect("compile");
    let inputs = runtime::random_inputs(&k.graph, 3);
    let mut run = s.run(&k, &inputs).expect("run");
    if let Some(TensorData::F32(v)) = run.outputs.get_mut("y") {
        v[5] += 1.0;
    }
    match runtime::check(&k.graph, &inputs, &run.outputs, 1e-4) {
        Err(Error::Mismatch { output, index, .. }) => {
            assert_eq!((output.as_str(), index), ("y", 5))
        }
        other => panic!("want a mismatch at y[5], got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_input() {
    let mut s = Session::model(1 << 20);
    let k = s
        .compile_text("input x: f32[4,4]\ny = relu(x)\noutput y\n")
        .expect("compile");
    let mut inputs = std::collections::HashMap::new();
    let e = s.run(&k, &inputs).expect_err("missing input");
    assert!(e.to_string().contains("input `x`: not given"), "{e}");
    inputs.insert("x".to_string(), TensorData::F32(vec![0.0; 3]));
    let e = s.run(&k, &inputs).expect_err("short input");
    assert!(
        e.to_string().contains("want 16 f32 values, got 3 f32"),
        "{e}"
    );
    let e = s
        .compile_text("input x: f32[4]\ny = nope(x)\noutput y\n")
        .err()
        .expect("unknown op");
    assert!(e.to_string().starts_with("parse error at 2:"), "{e}");
}

#[test]
fn faults_on_the_model_name_the_fault_and_its_address() {
    let mut s = Session::model(1 << 20);
    // An undefined opcode (0xee) in the first instruction.
    let mut cmd = vec![0u8; 64];
    cmd[0] = 0xee;
    let e = s.run_raw(&cmd, &[]).expect_err("bad opcode");
    assert_eq!(e.fault(), Some(npu::isa::Fault::BadOpcode), "{e}");
    assert!(
        e.to_string()
            .contains("BadOpcode at 0x0 (command buffer offset"),
        "{e}"
    );
    // A real program bound where nothing is mapped: an MMU fault at the
    // address of the first load.
    let k = s
        .compile_text("input x: f32[64]\ny = relu(x)\noutput y\n")
        .expect("compile");
    let cmd = k.program.bind(&[0x4000_0000, 0x5000_0000]).expect("bind");
    let e = s.run_raw(&cmd, &[]).expect_err("unmapped");
    assert_eq!(e.fault(), Some(npu::isa::Fault::MmuUnmapped), "{e}");
    assert!(
        e.to_string()
            .contains("MmuUnmapped at NPU address 0x40000000"),
        "{e}"
    );
}

#[test]
fn raw_jobs_replay_a_compiled_program_at_the_same_addresses() {
    let mut s = Session::model(64 * 1024);
    let k = s
        .compile_text("input a: f32[16,32]\ninput b: f32[32,8]\ny = gemm(a, b)\noutput y\n")
        .expect("compile");
    let inputs = runtime::random_inputs(&k.graph, 11);
    let run = s.run(&k, &inputs).expect("run");
    // The same placement rule on both runs: same addresses, same bytes.
    let a = inputs["a"].to_bytes();
    let b = inputs["b"].to_bytes();
    let sizes: Vec<u64> = k.program.buffers().iter().map(|b| b.size.max(1)).collect();
    let mut bufs: Vec<(u64, &[u8])> = sizes.iter().map(|&n| (n, &[][..])).collect();
    bufs[k.program.buffer_of("a").expect("a")].1 = &a;
    bufs[k.program.buffer_of("b").expect("b")].1 = &b;
    let e = s.run_raw(&run.cmdbuf, &bufs).expect("raw run");
    assert_eq!(e.addrs, run.addrs);
    assert_eq!(
        e.outputs[k.program.buffer_of("y").expect("y")],
        run.outputs["y"].to_bytes()
    );
    // Data that does not fit its buffer is refused before anything runs.
    let big = vec![0u8; 4096];
    let e = s
        .run_raw(&run.cmdbuf, &[(16, &big[..])])
        .expect_err("too big");
    assert!(
        e.to_string()
            .contains("4096 bytes do not fit buffer 0 of 16 bytes"),
        "{e}"
    );
    let e = s
        .run_raw(&run.cmdbuf[..10], &[])
        .expect_err("partial instruction");
    assert!(
        e.to_string()
            .contains("not a whole number of 64-byte instructions"),
        "{e}"
    );
}

/// A backend that corrupts one output byte: the check must notice, which
/// shows run_checked goes through whatever backend the session has.
struct Corrupting(runtime::Model);

impl runtime::Backend for Corrupting {
    fn name(&self) -> &'static str {
        "corrupting"
    }
    fn sram_size(&self) -> u32 {
        self.0.sram_size()
    }
    fn execute(
        &mut self,
        req: &runtime::Request<'_>,
        bind: &dyn Fn(&[u64]) -> runtime::Result<Vec<u8>>,
    ) -> runtime::Result<runtime::Execution> {
        let mut e = self.0.execute(req, bind)?;
        if let Some(b) = e.outputs.first_mut().and_then(|o| o.get_mut(2)) {
            *b ^= 0x40;
        }
        Ok(e)
    }
}

#[test]
fn sessions_run_on_any_backend_and_check_against_the_reference() {
    let src =
        "input x: i8[1,2,8,8] q(scale=0.1, zp=0)\ny = maxpool(x, kernel=2, stride=2)\noutput y\n";
    let mut good = Session::with_backend(Box::new(runtime::Model::new(1 << 16)));
    let k = good.compile_text(src).expect("compile");
    let inputs = runtime::random_inputs(&k.graph, 5);
    good.run_checked(&k, &inputs, 0.0)
        .expect("the model agrees with the reference");
    let mut bad = Session::with_backend(Box::new(Corrupting(runtime::Model::new(1 << 16))));
    assert_eq!(
        (bad.backend_name(), bad.sram_size()),
        ("corrupting", 1 << 16)
    );
    match bad.run_checked(&k, &inputs, 0.0) {
        Err(Error::Mismatch { output, index, .. }) => {
            assert_eq!((output.as_str(), index), ("y", 2))
        }
        other => panic!("want a mismatch at y[2], got {other:?}"),
    }
    let mut unknown = inputs.clone();
    unknown.insert("z".into(), TensorData::I8(vec![0; 4]));
    let e = good.run(&k, &unknown).expect_err("unknown input");
    assert!(
        e.to_string()
            .contains("input `z`: the kernel has no such input"),
        "{e}"
    );
}
