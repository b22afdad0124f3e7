//! Run a small f32 matmul + bias + relu on the device model, the way the
//! driver would submit it, and print the result beside a CPU reference.

use npu_device::testbench::Bench;
use npu_device::DeviceConfig;
use npu_isa::{assemble, BinaryOp, Broadcast, DType, Insn, Strided, Tile, UnaryOp};

fn main() {
    let (m, n, k) = (4u32, 4u32, 8u32);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 3) % 5) as f32 * 0.5 - 1.0)
        .collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut input = bytes(&a);
    input.extend(bytes(&b));
    input.extend(bytes(&bias));
    let (sa, sb, sbias, sc) = (0, m * k * 4, (m * k + k * n) * 4, 4096);
    let prog = [
        Insn::DmaLoad {
            va: 0x20_0000,
            sram: 0,
            mem: Strided::contiguous(input.len() as u32),
            sram_layout: Strided::contiguous(input.len() as u32),
        },
        Insn::Matmul {
            dtype: DType::F32,
            accumulate: false,
            transpose_b: false,
            m,
            n,
            k,
            a: Tile { addr: sa, ld: k },
            b: Tile { addr: sb, ld: n },
            c: Tile { addr: sc, ld: n },
        },
        Insn::Binary {
            op: BinaryOp::Add,
            dtype: DType::F32,
            bcast: Broadcast::PerCol,
            rows: m,
            cols: n,
            a: Tile { addr: sc, ld: n },
            b: Tile { addr: sbias, ld: n },
            out: Tile { addr: sc, ld: n },
            scalar: 0,
        },
        Insn::Unary {
            op: UnaryOp::Relu,
            dtype: DType::F32,
            rows: m,
            cols: n,
            src: Tile { addr: sc, ld: n },
            dst: Tile { addr: sc, ld: n },
            lo: 0,
            hi: 0,
        },
        Insn::DmaStore {
            va: 0x30_0000,
            sram: sc,
            mem: Strided::contiguous(m * n * 4),
            sram_layout: Strided::contiguous(m * n * 4),
        },
        Insn::End,
    ];
    println!("command buffer ({} instructions):", prog.len());
    for (i, insn) in prog.iter().enumerate() {
        println!("  {:04x}: {insn}", i * 64);
    }
    let mut bench = Bench::new(DeviceConfig::default(), 16);
    bench.map(0, 0x20_0000, input.len() as u64, false);
    bench.write(0, 0x20_0000, &input);
    bench.map(0, 0x30_0000, (m * n * 4) as u64, true);
    let c = bench.run(0, 0x10_0000, &assemble(&prog));
    let out: Vec<f32> = bench
        .read(0, 0x30_0000, (m * n * 4) as usize)
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    println!(
        "job {} status {} in {} modelled cycles",
        c.seqno, c.status, c.cycles
    );
    let mut ok = c.status == 0;
    for i in 0..m as usize {
        let row: Vec<String> = (0..n as usize)
            .map(|j| format!("{:7.2}", out[i * n as usize + j]))
            .collect();
        println!("  relu(a*b + bias)[{i}] = [{}]", row.join(","));
        for j in 0..n as usize {
            let want = ((0..k as usize)
                .map(|p| a[i * k as usize + p] * b[p * n as usize + j])
                .sum::<f32>()
                + bias[j])
                .max(0.0);
            ok &= (want - out[i * n as usize + j]).abs() < 1e-4;
        }
    }
    println!(
        "{}",
        if ok {
            "result matches the CPU reference"
        } else {
            "MISMATCH against the CPU reference"
        }
    );
    std::process::exit(if ok { 0 } else { 1 });
}
