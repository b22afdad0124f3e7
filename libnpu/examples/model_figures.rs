//! Figures for real networks: ResNet-18 and MobileNetV2 (f32, 224x224,
//! batch 1, He-initialised) and a transformer encoder block, compiled for
//! 256 KiB and 1 MiB of SRAM: instructions, command bytes, jobs, compile
//! time, and with `--run` the
//! modelled cycles on the device model beside the compute bound
//! (MACs / F32_MACS_PER_CYCLE) and the DMA bound (bytes / DMA_BYTES_PER_CYCLE,
//! counting the weights, the image, the result and every conv, pool and add
//! result written once and read once).
//!
//! `encoder` is a transformer encoder block (nets::ENCODER: seq 32, d_model
//! 128, 4 heads, d_ff 512, embedding gather, layer norms, batched-matmul
//! attention, gelu MLP); its DMA bound counts the weights, the gathered
//! embedding rows (not the whole table), the ids and every intermediate
//! written once and read once.
//!
//! The int8 networks (`-i8`) use per-channel weights and per-tensor
//! activations with zero point `--zp` (default 0); `--int8` shows only them.
//!
//! `--rows` adds, per program, the DMA cycles charged for rows beyond
//! their bytes (the device's row rule, npu-hw.rst "Cost model").
//!
//! cargo run --release -p libnpu --example model_figures [-- --run] [--hw N] [--inputs] [--int8] [--zp Z] [--only NAME] [--rows]

#[path = "../tests/models/nets.rs"]
mod nets;

use nets::{
    encoder, mobilenet_v2, mobilenet_v2_int8, resnet18, resnet18_int8, Net, Weights, ENCODER,
};
use npu::ir::Op;
use npu::{compile, CompileOptions, DeviceParams, Session};
use std::time::{Duration, Instant};

type Builder = Box<dyn Fn() -> Net>;

const F32_MACS_PER_CYCLE: u64 = 256;
/// The device model's int8 MATMUL rate (qemu-device cost model).
const I8_MACS_PER_CYCLE: u64 = 1024;
const DMA_BYTES_PER_CYCLE: u64 = 64;

fn dma_bytes(net: &Net) -> u64 {
    let g = &net.g;
    let mut bytes = 0u64;
    for n in g.nodes() {
        bytes += match n.op {
            Op::Input | Op::Constant { .. } => n.ty.bytes() as u64,
            Op::Conv2d { .. } | Op::Pool { .. } => 2 * n.ty.bytes() as u64,
            // Residual sums (not the batch-norm shifts, which fold away).
            Op::Binary {
                op: npu::ir::BinaryOp::Add,
                a,
                b,
            } if g.ty(a).shape == g.ty(b).shape => 2 * n.ty.bytes() as u64,
            _ => 0,
        };
    }
    // Batch-norm vectors are folded away; the result is written once.
    bytes
        + g.outputs()
            .iter()
            .map(|o| g.ty(*o).bytes() as u64)
            .sum::<u64>()
}

/// The encoder block's DMA bound: every weight once (of the embedding
/// table only the gathered rows), the inputs, and every computed value
/// (reshapes alias) written once and, unless it is the output, read once.
fn encoder_dma_bytes(net: &Net) -> u64 {
    let g = &net.g;
    let tables: Vec<_> = g
        .nodes()
        .iter()
        .filter_map(|n| match n.op {
            Op::Gather { table, .. } => Some(table),
            _ => None,
        })
        .collect();
    let mut bytes = 0u64;
    for (i, n) in g.nodes().iter().enumerate() {
        let v = npu::ValueId(i);
        let b = n.ty.bytes() as u64;
        bytes += match n.op {
            Op::Constant { .. } if tables.contains(&v) => 0,
            Op::Input | Op::Constant { .. } => b,
            Op::Reshape { .. } => 0,
            // The rows read, written and read again.
            Op::Gather { .. } => 3 * b,
            _ if g.outputs().contains(&v) => b,
            _ => 2 * b,
        };
    }
    bytes
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let run = args.iter().any(|a| a == "--run");
    let mode = if args.iter().any(|a| a == "--inputs") {
        Weights::Inputs
    } else {
        Weights::Constants
    };
    let hw = args
        .iter()
        .position(|a| a == "--hw")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(224usize);
    println!("model        sram      insns    cmd bytes  jobs  compile ms  cycles      compute bound  DMA bound  cycles/bound");
    let int8_only = args.iter().any(|a| a == "--int8");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let zp: i8 = args
        .iter()
        .position(|a| a == "--zp")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let nets: Vec<(&str, Builder, u64)> = vec![
        (
            "encoder",
            Box::new(move || encoder(ENCODER, mode).net),
            F32_MACS_PER_CYCLE,
        ),
        (
            "resnet18",
            Box::new(move || resnet18(hw, mode)),
            F32_MACS_PER_CYCLE,
        ),
        (
            "mobilenetv2",
            Box::new(move || mobilenet_v2(hw, mode)),
            F32_MACS_PER_CYCLE,
        ),
        (
            "resnet18-i8",
            Box::new(move || resnet18_int8(hw, zp)),
            I8_MACS_PER_CYCLE,
        ),
        (
            "mbnetv2-i8",
            Box::new(move || mobilenet_v2_int8(hw, zp)),
            I8_MACS_PER_CYCLE,
        ),
    ];
    for (name, build, macs_per_cycle) in nets {
        if int8_only && !name.ends_with("-i8") || only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        let net = build();
        let compute = net.macs.div_ceil(macs_per_cycle);
        let dma = if name == "encoder" {
            encoder_dma_bytes(&net)
        } else {
            dma_bytes(&net)
        }
        .div_ceil(DMA_BYTES_PER_CYCLE);
        for sram in [256u32 << 10, 1 << 20] {
            let params = DeviceParams { sram_size: sram };
            let mut times = Vec::new();
            let mut prog = None;
            for _ in 0..5 {
                let t = Instant::now();
                prog = Some(compile(&net.g, params, CompileOptions::default()));
                times.push(t.elapsed());
            }
            times.sort();
            let ms = times[2].as_secs_f64() * 1e3;
            let prog = match prog.expect("compiled") {
                Ok(p) => p,
                Err(e) => {
                    println!("{name:<12} {:>4} KiB  does not compile: {e}", sram >> 10);
                    continue;
                }
            };
            let (insns, bytes, jobs) = (prog.insns().len(), prog.cmdbuf_size(), prog.jobs().len());
            if args.iter().any(|a| a == "--histogram") {
                let mut h = std::collections::BTreeMap::new();
                for i in prog.insns() {
                    let op = format!("{i}")
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    *h.entry(op).or_insert(0usize) += 1;
                }
                println!("{name} {} KiB: {h:?}", sram >> 10);
            }
            if args.iter().any(|a| a == "--rows") {
                // The DMA cycles the row rule adds (npu-hw.rst, "Cost
                // model": a DMA costs max(bytes / 64, rows)).
                let mut excess = (0u64, 0u64);
                for i in prog.insns() {
                    let l = match i {
                        npu::isa::Insn::DmaLoad { mem: l, .. }
                        | npu::isa::Insn::DmaStore { mem: l, .. }
                        | npu::isa::Insn::Copy { src_layout: l, .. } => l,
                        _ => continue,
                    };
                    let [row, rows, planes] = l.shape.map(u64::from);
                    let rows = rows * planes;
                    let over = rows.saturating_sub((row * rows).div_ceil(DMA_BYTES_PER_CYCLE));
                    if over > 0 {
                        excess = (excess.0 + 1, excess.1 + over);
                    }
                }
                println!(
                    "{name} {} KiB: {} DMAs whose rows cost more than their bytes, {} cycles more",
                    sram >> 10,
                    excess.0,
                    excess.1
                );
            }
            let cycles = if run {
                let mut s = Session::model(sram);
                s.wait_timeout = Duration::from_secs(3600);
                let k = s.compile(net.g.clone())?;
                match s.run(&k, &net.feeds) {
                    Ok(r) => Some(r.cycles),
                    Err(e) => {
                        println!("{name:<12} {:>4} KiB  does not run: {e}", sram >> 10);
                        None
                    }
                }
            } else {
                None
            };
            let bound = compute.max(dma);
            let (c, ratio) = match cycles {
                Some(c) => (c.to_string(), format!("{:.2}", c as f64 / bound as f64)),
                None => ("-".into(), "-".into()),
            };
            println!("{name:<12} {:>4} KiB  {insns:>9}  {bytes:>11}  {jobs:>4}  {ms:>10.1}  {c:<10}  {compute:>13}  {dma:>9}  {ratio}", sram >> 10);
        }
    }
    Ok(())
}
