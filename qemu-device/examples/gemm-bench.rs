//! Device GEMM throughput (a MATMUL instruction on SRAM tiles, executed by
//! the compute engine) beside a host baseline measured in the same run:
//! the same GEMM crate called directly on the same data.
//!
//!   cargo run --release -p npu-device --example gemm-bench
//!
//! NPU_INT8_KERNEL=avx2 (or f32) makes the device use that int8 kernel on a
//! host that has a faster one; building with MMTEST_FEATURE=avx,avx2,fma
//! keeps the f32 GEMM crate (matrixmultiply) off AVX-512 too, so an
//! AVX-512 host measures what an AVX2-only host gets.

use npu_device::testbench::Bench;
use npu_device::DeviceConfig;
use npu_isa::{assemble, DType, Insn, Tile};
use std::time::Instant;

/// The fastest of at least `reps` runs, and of as many as fit in a quarter
/// of a second: on a shared host other processes only ever add time, so the
/// minimum is the figure that repeats, once some runs were not preempted.
fn time_it(mut f: impl FnMut(), reps: u32) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < reps.max(3) || start.elapsed().as_secs_f64() < 0.25 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

fn main() {
    // The int8 engine picks its kernel from the CPU at run time.
    println!(
        "int8 kernel: {} (this CPU's fastest: {})",
        npu_device::gemm::int8_kernel().name(),
        npu_device::gemm::cpu_int8_kernel().name()
    );
    // Every device figure includes one job's round trip (submit, the
    // command processor's wake-up, completion, interrupt): the "empty job"
    // column times a job of only END, the floor under small MATMULs.
    println!(
        "{:>5} {:>12} {:>12} {:>12} {:>8} {:>10} {:>10}",
        "n", "host f32", "device f32", "device i8", "f32/host", "i8/f32", "empty job"
    );
    for n in [64u32, 128, 256, 512, 1024] {
        let es = (n * n * 4) as u64;
        let sram = (3 * es + 4096).next_power_of_two().max(1 << 20) as u32;
        let mut bench = Bench::new(
            DeviceConfig {
                sram_size: sram,
                ..Default::default()
            },
            16,
        );
        let flops = 2.0 * (n as f64).powi(3);
        let mm = |dtype| {
            assemble(&[
                Insn::Matmul {
                    dtype,
                    accumulate: false,
                    transpose_b: false,
                    m: n,
                    n,
                    k: n,
                    a: Tile { addr: 0, ld: n },
                    b: Tile {
                        addr: es as u32,
                        ld: n,
                    },
                    c: Tile {
                        addr: 2 * es as u32,
                        ld: n,
                    },
                },
                Insn::End,
            ])
        };
        let (f32_cmd, i8_cmd) = (mm(DType::F32), mm(DType::I8));
        bench.map(0, 0x10_0000, 64 * 2, false);
        bench.map(0, 0x20_0000, 64 * 2, false);
        bench.map(0, 0x30_0000, 64 * 2, false);
        bench.write(0, 0x10_0000, &f32_cmd);
        bench.write(0, 0x20_0000, &i8_cmd);
        bench.write(0, 0x30_0000, &assemble(&[Insn::End]));
        let reps = (2e8 / flops).clamp(3.0, 200.0) as u32;
        let mut run = |va| {
            bench.submit_raw(0, va, 128, 0);
            let c = bench
                .wait_completion(std::time::Duration::from_secs(60))
                .expect("job");
            assert_eq!(c.status, 0);
            // Acknowledge as a driver does, so the next job interrupts too.
            bench
                .device
                .mmio_write(npu_device::regs::IRQ_ACK, npu_device::regs::IRQ_ALL);
        };
        // Two rounds, so that a busy spell of the host does not fall on
        // one kind of job only.
        let (mut dev_f32, mut dev_i8, mut empty) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        for _ in 0..2 {
            dev_f32 = dev_f32.min(time_it(|| run(0x10_0000), reps));
            dev_i8 = dev_i8.min(time_it(|| run(0x20_0000), reps));
            empty = empty.min(time_it(|| run(0x30_0000), reps));
        }
        let a = vec![0.5f32; (n * n) as usize];
        let b = vec![0.25f32; (n * n) as usize];
        let mut c = vec![0f32; (n * n) as usize];
        let host = time_it(
            || npu_device::gemm::sgemm(n as usize, n as usize, n as usize, &a, &b, false, &mut c),
            reps,
        );
        let g = |t: f64| flops / t / 1e9;
        println!(
            "{n:>5} {:>8.2} GF/s {:>7.2} GF/s {:>7.2} GO/s {:>7.0}% {:>9.2}x {:>7.1} us",
            g(host),
            g(dev_f32),
            g(dev_i8),
            100.0 * host / dev_f32,
            dev_f32 / dev_i8,
            empty * 1e6
        );
    }
    // The int8 kernels side by side on the host (no device): every kernel
    // this CPU has, so an AVX-512 host also shows what AVX2 hosts get.
    use npu_device::gemm::{cpu_int8_kernel, igemm_with, sgemm, Int8Kernel};
    let kernels: Vec<Int8Kernel> = [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::F32]
        .into_iter()
        .filter(|&k| match (k, cpu_int8_kernel()) {
            (Int8Kernel::Avx512Vnni, have) => have == Int8Kernel::Avx512Vnni,
            (Int8Kernel::Avx2, have) => have != Int8Kernel::F32,
            _ => true,
        })
        .collect();
    print!("\n{:>5} {:>12}", "n", "host f32");
    for k in &kernels {
        print!(" {:>16}", format!("i8 {}", k.name()));
    }
    println!();
    for n in [64usize, 128, 256, 512, 1024] {
        let flops = 2.0 * (n as f64).powi(3);
        let reps = (2e8 / flops).clamp(3.0, 200.0) as u32;
        let (af, bf) = (vec![0.5f32; n * n], vec![0.25f32; n * n]);
        let mut cf = vec![0f32; n * n];
        let f32_time = time_it(|| sgemm(n, n, n, &af, &bf, false, &mut cf), reps);
        print!("{n:>5} {:>7.2} GF/s", flops / f32_time / 1e9);
        let (a, b) = (vec![3i8; n * n], vec![-5i8; n * n]);
        let mut c = vec![0i32; n * n];
        for &k in &kernels {
            let t = time_it(
                || {
                    igemm_with(k, n, n, n, &a, &b, false, &mut c, usize::MAX, &mut || true);
                },
                reps,
            );
            print!(" {:>7.2} GO/s {:>4.1}x", flops / t / 1e9, f32_time / t);
        }
        println!();
    }
}
