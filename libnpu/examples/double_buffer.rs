//! Modelled cycles of a gemm with double buffering on and off, run on the
//! in-process device model (cycles from the job's completion record).
//!
//! cargo run --release -p libnpu --example double_buffer [M N K [SRAM_KIB]]

use npu::ir::{Graph, Op};
use npu::lower::BufferKind;
use npu::{compile, CompileOptions, DType, DeviceParams, TensorType};
use npu_device::testbench::Bench;
use npu_device::DeviceConfig;

fn run(
    m: usize,
    n: usize,
    k: usize,
    sram: u32,
    double_buffer: bool,
) -> Result<(u32, usize), Box<dyn std::error::Error>> {
    let mut g = Graph::new();
    let a = g.input("a", TensorType::new(DType::F32, &[m, k]))?;
    let b = g.input("b", TensorType::new(DType::F32, &[k, n]))?;
    let c = g.add(
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
    g.output(c)?;
    let mem_mib = (((m * k + k * n + m * n) * 4) >> 20) as u64 + 16;
    let mut bench = Bench::new(
        DeviceConfig {
            sram_size: sram,
            ..Default::default()
        },
        mem_mib,
    );
    let params = DeviceParams {
        sram_size: bench.device.mmio_read(npu_device::regs::SRAM_SIZE),
    };
    let prog = compile(
        &g,
        params,
        CompileOptions {
            double_buffer,
            ..Default::default()
        },
    )?;
    let mut va = 1u64 << 30;
    let mut vas = vec![];
    for buf in prog.buffers() {
        bench.map(0, va, buf.size, buf.kind != BufferKind::Input);
        vas.push(va);
        va += buf.size.next_multiple_of(1 << 21);
    }
    let cmd = prog.bind(&vas)?;
    let done = bench.run(0, va, &cmd);
    if done.status != 0 {
        return Err(format!(
            "job faulted: status {} at {:#x}",
            done.status, done.fault_addr
        )
        .into());
    }
    Ok((done.cycles, prog.insns().len()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (m, n, k) = match args.as_slice() {
        [m, n, k, ..] => (*m, *n, *k),
        _ => (1024, 1024, 1024),
    };
    let sram = args.get(3).map_or(256 * 1024, |s| *s as u32 * 1024);
    let (on, insns) = run(m, n, k, sram, true)?;
    let (off, _) = run(m, n, k, sram, false)?;
    println!(
        "gemm {m}x{n}x{k} f32, SRAM {} KiB, {insns} instructions",
        sram / 1024
    );
    println!("  double buffering on : {on:>10} cycles");
    println!("  double buffering off: {off:>10} cycles");
    println!(
        "  saving: {:.1}%",
        100.0 * (off as f64 - on as f64) / off as f64
    );
    Ok(())
}
