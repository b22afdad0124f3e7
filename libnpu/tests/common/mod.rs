//! Helpers: run a graph on the in-process device model and on the CPU
//! reference, and compare.
#![allow(dead_code)]

use npu::ir::Graph;
use npu::lower::BufferKind;
use npu::reference::{self, TensorData};
use npu::{compile, CompileOptions, DeviceParams};
use npu_device::testbench::Bench;
use npu_device::DeviceConfig;
use std::collections::HashMap;

pub use npu_device::testbench::Rng;

/// Random data for every input of `g`.
pub fn random_inputs(g: &Graph, rng: &mut Rng) -> HashMap<String, TensorData> {
    g.inputs()
        .map(|v| {
            let ty = g.ty(v);
            let n = ty.elems();
            let d = match ty.dtype {
                npu::DType::F32 => TensorData::F32((0..n).map(|_| rng.f32()).collect()),
                npu::DType::I8 => TensorData::I8((0..n).map(|_| rng.next() as i8).collect()),
                npu::DType::I32 => TensorData::I32(
                    (0..n)
                        .map(|_| (rng.next() % 20001) as i32 - 10000)
                        .collect(),
                ),
            };
            (g.node(v).name.clone(), d)
        })
        .collect()
}

pub struct DeviceRun {
    pub outputs: HashMap<String, TensorData>,
    pub cycles: u32,
    pub insns: usize,
}

/// Compile for a device with `sram` bytes of SRAM (read back from its
/// SRAM_SIZE register, as a driver would report it) and run on the bench.
pub fn run_device(
    g: &Graph,
    inputs: &HashMap<String, TensorData>,
    sram: u32,
    opts: CompileOptions,
) -> DeviceRun {
    let mut bench = Bench::new(
        DeviceConfig {
            sram_size: sram,
            contexts: 2,
            ..Default::default()
        },
        64,
    );
    let params = DeviceParams {
        sram_size: bench.device.mmio_read(npu_device::regs::SRAM_SIZE),
    };
    let prog = compile(g, params, opts).unwrap_or_else(|e| panic!("compile: {e}"));
    let mut va = 0x100_0000u64;
    let mut vas = Vec::new();
    for b in prog.buffers() {
        vas.push(va);
        bench.map(0, va, b.size.max(1), b.kind != BufferKind::Input);
        va += b.size.next_multiple_of(0x1000) + 0x1000;
    }
    for (name, data) in inputs {
        let i = prog
            .buffer_of(name)
            .unwrap_or_else(|| panic!("no buffer for input {name}"));
        bench.write(0, vas[i], &data.to_bytes());
    }
    let cmd = prog.bind(&vas).unwrap_or_else(|e| panic!("bind: {e}"));
    let c = bench.run(0, va, &cmd);
    assert_eq!(
        c.status,
        0,
        "job faulted: {:?} at {:#x}\n{}",
        c.fault(),
        c.fault_addr,
        listing_near(&prog.disassemble(), c.fault_addr)
    );
    let mut outputs = HashMap::new();
    for &o in g.outputs() {
        let n = &g.node(o).name;
        let i = prog
            .buffer_of(n)
            .unwrap_or_else(|| panic!("no buffer for output {n}"));
        let bytes = bench.read(0, vas[i], g.ty(o).bytes());
        outputs.insert(n.clone(), TensorData::from_bytes(g.ty(o).dtype, &bytes));
    }
    DeviceRun {
        outputs,
        cycles: c.cycles,
        insns: prog.insns().len(),
    }
}

fn listing_near(listing: &str, off: u64) -> String {
    listing
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("{off}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run on both and compare: int8 exactly, f32 within `tol` (relative to max(1, |want|)).
pub fn check(g: &Graph, seed: u64, sram: u32, tol: f32) -> DeviceRun {
    let mut rng = Rng(seed | 1);
    let inputs = random_inputs(g, &mut rng);
    let want = reference::run(g, &inputs).unwrap_or_else(|e| panic!("reference: {e}"));
    let got = run_device(g, &inputs, sram, CompileOptions::default());
    for (name, w) in &want {
        let d = &got.outputs[name];
        match (&w.data, d) {
            (TensorData::F32(w), TensorData::F32(d)) => {
                for (i, (a, b)) in w.iter().zip(d).enumerate() {
                    assert!(
                        a == b
                            || (a.is_nan() && b.is_nan())
                            || (a - b).abs() <= tol * a.abs().max(1.0),
                        "{name}[{i}]: reference {a}, device {b} (seed {seed})"
                    );
                }
            }
            (w, d) => assert_eq!(w, d, "{name}: int8 mismatch (seed {seed})"),
        }
    }
    got
}
