//! Compile-time benchmark: a 1024x1024x1024 gemm and a small CNN, compiled
//! for the device model's SRAM size (read from its SRAM_SIZE register), next
//! to a baseline from the same run: encoding as many NOPs as the gemm's
//! command buffer has instructions (the floor for any emitter).
//!
//! cargo run --release -p libnpu --example compile_bench

use npu::ir::{Graph, Op};
use npu::{compile, CompileOptions, DType, DeviceParams, TensorType};
use npu_device::testbench::Bench;
use npu_device::DeviceConfig;
use std::time::{Duration, Instant};

/// Median of `runs` timings of `f`.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut ts = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(std::hint::black_box(f()));
        ts.push(t.elapsed());
    }
    ts.sort();
    (ts[runs / 2], last.expect("runs > 0"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bench = Bench::new(DeviceConfig::default(), 4);
    let params = DeviceParams {
        sram_size: bench.device.mmio_read(npu_device::regs::SRAM_SIZE),
    };
    let opts = CompileOptions::default();

    let mut gemm = Graph::new();
    let a = gemm.input("a", TensorType::new(DType::F32, &[1024, 1024]))?;
    let b = gemm.input("b", TensorType::new(DType::F32, &[1024, 1024]))?;
    let c = gemm.add(
        "c",
        Op::Gemm {
            a,
            b,
            bias: None,
            trans_a: false,
            trans_b: false,
        },
        None,
    )?;
    gemm.output(c)?;
    let cnn = npu::text::parse(include_str!("small_cnn.npu"))?;

    let (t_gemm, p_gemm) = time(51, || compile(&gemm, params, opts));
    let p_gemm = p_gemm?;
    let vas: Vec<u64> = (0..p_gemm.buffers().len() as u64)
        .map(|i| (i + 1) << 30)
        .collect();
    let (t_gemm_bind, _) = time(51, || p_gemm.bind(&vas));
    let (t_cnn, p_cnn) = time(51, || compile(&cnn, params, opts));
    let p_cnn = p_cnn?;
    let nops = vec![npu_isa::Insn::Nop; p_gemm.insns().len()];
    let (t_nop, _) = time(51, || npu_isa::assemble(&nops));

    println!("device SRAM: {} KiB", params.sram_size / 1024);
    println!(
        "gemm 1024x1024x1024 f32: compile {:>8.3} ms  ({} instructions); bind+encode {:.3} ms",
        t_gemm.as_secs_f64() * 1e3,
        p_gemm.insns().len(),
        t_gemm_bind.as_secs_f64() * 1e3
    );
    println!(
        "small CNN (examples/small_cnn.npu): compile {:>8.3} ms  ({} instructions)",
        t_cnn.as_secs_f64() * 1e3,
        p_cnn.insns().len()
    );
    println!(
        "baseline: encode {} NOPs: {:.3} ms",
        nops.len(),
        t_nop.as_secs_f64() * 1e3
    );
    Ok(())
}
