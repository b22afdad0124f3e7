//! Benchmark: a DMA-only job's cost grows linearly with its instructions
//! (the old scoreboard compared each instruction with every earlier one:
//! 64k FILLs took 6.7 s). Whole jobs through the command processor; the
//! figure is the process's CPU time for 64k FILLs beside its baseline, 16k
//! FILLs in the same run: about 4x when linear, 16x when quadratic. The
//! test suite checks linearity by counting the scoreboard's work
//! (hostile_guest.rs), never by time.
//!
//!   cargo run --release -p npu-device --example scoreboard-bench

use npu_device::testbench::Bench;
use npu_device::DeviceConfig;
use npu_isa::{assemble, Fault, Insn};
use std::time::Duration;

/// CPU time of the whole process (the CP thread does the work; the test
/// thread sleeps on a condition variable).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let sram = 256 << 10;
    let mut b = Bench::new(
        DeviceConfig {
            sram_size: sram,
            contexts: 4,
            ..Default::default()
        },
        32,
    );
    let mut time = |n: u32, va: u64| {
        let mut p: Vec<Insn> = (0..n)
            .map(|i| Insn::Fill {
                dst: (i * 4) % sram,
                len: 4,
                pattern: i,
            })
            .collect();
        p.push(Insn::End);
        let code = assemble(&p);
        b.map(0, va, code.len() as u64, false);
        b.write(0, va, &code);
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = cpu_time();
            b.submit_raw(0, va, code.len() as u32, 0);
            let c = b
                .wait_completion(Duration::from_secs(120))
                .expect("the job did not complete");
            best = best.min(cpu_time() - t);
            assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
            // Each FILL: INSN_OVERHEAD 2 + DMA_LATENCY 64 + 1 cycle, serial.
            assert_eq!(
                c.cycles as u64,
                n as u64 * 67,
                "modelled cycles of {n} FILLs"
            );
            b.device
                .mmio_write(npu_device::regs::IRQ_ACK, npu_device::regs::IRQ_ALL);
        }
        best
    };
    let t16 = time(16 << 10, 0x100_0000);
    let t64 = time(64 << 10, 0x200_0000);
    println!(
        "scoreboard: 64k FILLs {:.1} ms CPU, baseline 16k FILLs {:.1} ms: ratio {:.2} (linear 4, quadratic 16)",
        t64.as_secs_f64() * 1e3,
        t16.as_secs_f64() * 1e3,
        t64.as_secs_f64() / t16.as_secs_f64().max(1e-6)
    );
}
