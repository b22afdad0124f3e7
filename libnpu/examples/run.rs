//! Compile a kernel written in the text form, run it on the NPU device
//! model (in-process, through the same rings, MMU and engines QEMU's guest
//! uses) with seeded random inputs, and check every output against the CPU
//! reference.
//!
//!   cargo run --release -p libnpu --example run -- KERNEL.npu [SRAM_KIB] [SEED]

#[path = "../tests/common/mod.rs"]
mod common;

use npu::reference::TensorData;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: run KERNEL.npu [SRAM_KIB] [SEED]");
        return ExitCode::from(2);
    };
    let num = |i: usize, default: u64, what: &str| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| format!("{what} `{s}` is not a number"))
        })
    };
    let (sram_kib, seed) = match (num(1, 1024, "SRAM size"), num(2, 1, "seed")) {
        (Ok(s), Ok(d)) => (s as u32, d),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("run: {e}");
            return ExitCode::from(2);
        }
    };
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("run: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let graph = match npu::text::parse(&src) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("run: {path}:{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("kernel {path}, compiled for {sram_kib} KiB of SRAM, inputs from seed {seed}");
    // Panics with the mismatching element if the device disagrees with the
    // reference (int8 exactly, f32 within 1e-4).
    let run = common::check(&graph, seed, sram_kib * 1024, 1e-4);
    println!(
        "{} instructions, {} modelled cycles; every output matches the CPU reference",
        run.insns, run.cycles
    );
    for (name, data) in &run.outputs {
        let head: Vec<String> = match data {
            TensorData::F32(v) => v.iter().take(10).map(|x| format!("{x:.4}")).collect(),
            TensorData::I8(v) => v.iter().take(10).map(|x| x.to_string()).collect(),
            TensorData::I32(v) => v.iter().take(10).map(|x| x.to_string()).collect(),
            TensorData::U8(v) => v.iter().take(10).map(|x| x.to_string()).collect(),
            TensorData::F16(v) => v
                .iter()
                .take(10)
                .map(|&x| format!("{:.4}", npu::isa::f16_to_f32(x)))
                .collect(),
            TensorData::Bf16(v) => v
                .iter()
                .take(10)
                .map(|&x| format!("{:.4}", npu::isa::bf16_to_f32(x)))
                .collect(),
        };
        println!(
            "{name} ({} values): [{}{}]",
            data.len(),
            head.join(", "),
            if data.len() > 10 { ", ..." } else { "" }
        );
    }
    ExitCode::SUCCESS
}
