//! Device 1.1 per-job profile records (Documentation/hw/npu-hw.rst, "Job
//! profile records"). The expected words are computed by hand from the
//! spec's cost table with the default parameters: DMA instructions cost
//! INSN_OVERHEAD 2 + DMA_LATENCY 64 + max(bytes / 64, rows), plus
//! WALK_CYCLES 3 per page-table walk; an f32 MATMUL 2 + m*n*k / 256; int8
//! 2 + m*n*k / 1024 (each rounded up). Every instruction fetch reads 64
//! bytes through the MMU.

mod common;

use common::*;
use npu_device::regs::*;
use npu_device::testbench::{Bench, Completion, EVENT_BOUND};
use npu_isa::{assemble, DType, Fault, Insn};

const PROFILE: u16 = 1;

/// The profile record at `addr`: its eight words.
fn record(b: &Bench, addr: u64) -> [u64; 8] {
    let raw = b.mem_read(addr, 64);
    let mut w = [0u64; 8];
    for (i, c) in raw.chunks_exact(8).enumerate() {
        w[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    w
}

#[derive(Debug, PartialEq, Eq)]
struct Profile {
    cycles: u64,
    instructions: u64,
    macs: u64,
    dma_bytes_read: u64,
    dma_bytes_written: u64,
    dma_engine_cycles: u64,
    compute_engine_cycles: u64,
}

fn profile(w: [u64; 8]) -> Profile {
    assert_eq!(w[7], 0, "the reserved word");
    Profile {
        cycles: w[0],
        instructions: w[1],
        macs: w[2],
        dma_bytes_read: w[3],
        dma_bytes_written: w[4],
        dma_engine_cycles: w[5],
        compute_engine_cycles: w[6],
    }
}

/// A 64-byte profile buffer pre-filled with 0xee (so a record of zeros is
/// seen as written); its bus address.
fn buffer(b: &mut Bench) -> u64 {
    let at = b.alloc_bus(4096);
    b.mem_write(at, &[0xee; 4096]);
    at
}

/// Run `prog` at CMD_VA on `ring` with PROFILE and a record at `at`.
fn run_profiled(b: &mut Bench, ring: usize, prog: &[Insn], at: u64) -> Completion {
    let code = assemble(prog);
    b.map(0, CMD_VA, code.len().max(1) as u64, false);
    b.write(0, CMD_VA, &code);
    let s = b.submit_to(ring, 0, CMD_VA, code.len() as u32, PROFILE, at);
    let c = b.wait_completion(EVENT_BOUND).expect("completion");
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    assert_eq!(c.seqno, s);
    c
}

#[test]
fn nop_end() {
    let mut b = bench();
    let at = buffer(&mut b);
    let c = run_profiled(&mut b, 0, &[Insn::Nop, Insn::End], at);
    assert_eq!(c.fault(), Some(Fault::Ok));
    assert_eq!(
        profile(record(&b, at)),
        Profile {
            cycles: 0,
            instructions: 2,
            macs: 0,
            dma_bytes_read: 128,
            dma_bytes_written: 0,
            dma_engine_cycles: 0,
            compute_engine_cycles: 0,
        }
    );
    // Only the record's 64 bytes are written.
    assert_eq!(b.mem_read(at + 64, 64), vec![0xee; 64]);
}

#[test]
fn load_then_store() {
    let mut b = bench();
    b.map(0, IN_VA, 4096, false);
    b.map(0, OUT_VA, 4096, true);
    let at = buffer(&mut b);
    // load 256 B: 2 + 64 + 4 + one walk (IN_VA's page) 3 = 73;
    // store 256 B: the same, OUT_VA's page = 73; one engine: 146.
    let c = run_profiled(
        &mut b,
        0,
        &[load(IN_VA, 0, 256), store(OUT_VA, 0, 256), Insn::End],
        at,
    );
    assert_eq!(c.fault(), Some(Fault::Ok));
    assert_eq!(c.cycles, 146);
    assert_eq!(
        profile(record(&b, at)),
        Profile {
            cycles: 146,
            instructions: 3,
            macs: 0,
            dma_bytes_read: 3 * 64 + 256,
            dma_bytes_written: 256,
            dma_engine_cycles: 146,
            compute_engine_cycles: 0,
        }
    );
}

fn matmul(dtype: DType, m: u32, n: u32, k: u32, a: u32, bb: u32, c: u32) -> Insn {
    Insn::Matmul {
        dtype,
        accumulate: false,
        transpose_b: false,
        m,
        n,
        k,
        a: tile(a, k),
        b: tile(bb, n),
        c: tile(c, n),
    }
}

#[test]
fn load_matmul_store_on_ring_3() {
    let mut b = bench();
    b.set_ring(3, 4);
    b.map(0, IN_VA, 4096, false);
    b.map(0, OUT_VA, 4096, true);
    let at = buffer(&mut b);
    // A: 4 x 16 f32 = 256 B at SRAM 0; B: 16 x 8 at 1024; C: 4 x 8 at 2048.
    // load A: 73, ends at 73. MATMUL 4*8*16 = 512 MACs: 2 + 2 = 4, waits
    // for A: 73..77. store C (128 B: 2 + 64 + 2 + 3 = 71) waits for C:
    // 77..148.
    let c = run_profiled(
        &mut b,
        3,
        &[
            load(IN_VA, 0, 256),
            matmul(DType::F32, 4, 8, 16, 0, 1024, 2048),
            store(OUT_VA, 2048, 128),
            Insn::End,
        ],
        at,
    );
    assert_eq!((c.ring, c.fault()), (3, Some(Fault::Ok)));
    assert_eq!(c.cycles, 148);
    assert_eq!(
        profile(record(&b, at)),
        Profile {
            cycles: 148,
            instructions: 4,
            macs: 512,
            dma_bytes_read: 4 * 64 + 256,
            dma_bytes_written: 128,
            dma_engine_cycles: 73 + 71,
            compute_engine_cycles: 4,
        }
    );
}

#[test]
fn independent_engines_overlap() {
    let mut b = bench();
    b.map(0, IN_VA, 4096, false);
    let at = buffer(&mut b);
    // An int8 MATMUL 8 x 8 x 32 = 2048 MACs: 2 + 2 = 4 on the compute
    // engine from 0, and an unrelated 64-byte load (2 + 64 + 1 + 3 = 70)
    // on the DMA engine from 0: the job takes 70.
    let c = run_profiled(
        &mut b,
        0,
        &[
            matmul(DType::I8, 8, 8, 32, 0, 1024, 2048),
            load(IN_VA, 8192, 64),
            Insn::End,
        ],
        at,
    );
    assert_eq!(c.fault(), Some(Fault::Ok));
    assert_eq!(
        profile(record(&b, at)),
        Profile {
            cycles: 70,
            instructions: 3,
            macs: 2048,
            dma_bytes_read: 3 * 64 + 64,
            dma_bytes_written: 0,
            dma_engine_cycles: 70,
            compute_engine_cycles: 4,
        }
    );
}

#[test]
fn a_faulting_job_reports_work_up_to_the_fault() {
    let mut b = bench();
    let at = buffer(&mut b);
    // NOP, then a load from an unmapped page: the load decodes (counted)
    // and faults before moving a byte.
    let c = run_profiled(
        &mut b,
        0,
        &[Insn::Nop, load(0x7000_0000, 0, 64), Insn::End],
        at,
    );
    assert_eq!(c.fault(), Some(Fault::MmuUnmapped));
    assert_eq!(
        profile(record(&b, at)),
        Profile {
            cycles: 0,
            instructions: 2,
            macs: 0,
            dma_bytes_read: 128,
            dma_bytes_written: 0,
            dma_engine_cycles: 0,
            compute_engine_cycles: 0,
        }
    );
}

#[test]
fn a_bad_context_reports_zeros() {
    let mut b = bench();
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    let at = buffer(&mut b);
    // Context 3 has no valid descriptor.
    b.submit_to(0, 3, CMD_VA, 64, PROFILE, at);
    let c = b.wait_completion(EVENT_BOUND).expect("completion");
    assert_eq!(c.fault(), Some(Fault::BadContext));
    assert_eq!(record(&b, at), [0; 8]);
}

#[test]
fn records_of_several_jobs_go_to_their_own_addresses() {
    let mut b = bench();
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Nop, Insn::Nop, Insn::End]));
    let at = buffer(&mut b);
    // Jobs of 1, 2 and 3 instructions; one without PROFILE in between.
    for i in 0..3u64 {
        b.submit_to(
            0,
            0,
            CMD_VA + 64 * (2 - i),
            64 * (i as u32 + 1),
            PROFILE,
            at + 128 * i,
        );
    }
    b.submit_to(0, 0, CMD_VA, 192, 0, 0);
    for _ in 0..4 {
        let c = b.wait_completion(EVENT_BOUND).expect("completion");
        assert_eq!(c.fault(), Some(Fault::Ok));
    }
    for i in 0..3u64 {
        let w = record(&b, at + 128 * i);
        assert_eq!((w[1], w[3]), (i + 1, 64 * (i + 1)), "job {i}");
        assert_eq!(b.mem_read(at + 128 * i + 64, 64), vec![0xee; 64]);
    }
}

#[test]
fn bad_profile_fields_are_bad_submissions() {
    let mut b = bench();
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    let at = buffer(&mut b);
    for (flags, addr) in [
        (PROFILE, at + 8),  // misaligned
        (PROFILE, at + 32), // misaligned
        (PROFILE, at + 63),
        (0, at), // an address without PROFILE
        (0, 1 << 63),
        (PROFILE | 2, at), // an unknown flag with it
        (PROFILE | 0x8000, at),
    ] {
        b.submit_to(0, 0, CMD_VA, 64, flags, addr);
        let c = b.wait_completion(EVENT_BOUND).expect("completion");
        assert_eq!(
            (c.fault(), c.fault_addr),
            (Some(Fault::BadSubmission), 0),
            "flags {flags:#x} addr {addr:#x}"
        );
        // No record for an entry the device does not trust.
        assert_eq!(b.mem_read(at, 128), vec![0xee; 128]);
    }
    // Reserved bytes 32..63 must still be 0 with PROFILE.
    let sq = b.device.mmio_read(SQ_BASE_LO) as u64;
    let slot = b.ring_tail(0) % b.sq_size;
    let s = b.queue_to(0, 0, CMD_VA, 64, PROFILE, at);
    b.mem_write(sq + slot as u64 * 64 + 63, &[1]);
    b.publish(0, b.ring_tail(0) - 1);
    let c = b.wait_completion(EVENT_BOUND).expect("completion");
    assert_eq!((c.seqno, c.fault()), (s, Some(Fault::BadSubmission)));
    assert_eq!(b.mem_read(at, 64), vec![0xee; 64]);
}

#[test]
fn a_record_outside_host_memory_halts_the_device() {
    for addr in [u64::MAX - 63, 1 << 40] {
        let mut b = bench();
        b.map(0, CMD_VA, 4096, false);
        b.write(0, CMD_VA, &assemble(&[Insn::End]));
        let end = b.mem_size();
        for at in [end, addr] {
            b.submit_to(0, 0, CMD_VA, 64, PROFILE, at);
            b.wait_until("DEVICE_ERROR", |b| {
                b.device.mmio_read(STATUS) & STATUS_HALTED != 0
            });
            let d = &b.device;
            assert_eq!(d.mmio_read(STATUS) & STATUS_ENABLED, 0);
            assert_ne!(d.mmio_read(IRQ_STATUS) & IRQ_DEVICE_ERROR, 0);
            // No completion record, and the entry is not consumed.
            assert_eq!(d.mmio_read(CQ_TAIL), 0);
            assert_eq!(d.mmio_read(SQ_HEAD), 0);
            b.reset();
            // After the reset the device works again.
            let good = b.alloc_bus(4096);
            b.submit_to(0, 0, CMD_VA, 64, PROFILE, good);
            let c = b.wait_completion(EVENT_BOUND).expect("completion");
            assert_eq!(c.fault(), Some(Fault::Ok));
            assert_eq!(record(&b, good)[1], 1);
            b.reset();
        }
    }
}

#[test]
fn the_last_64_bytes_of_host_memory_hold_a_record() {
    let mut b = bench();
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    let at = b.mem_size() - 64;
    b.submit_to(0, 0, CMD_VA, 64, PROFILE, at);
    let c = b.wait_completion(EVENT_BOUND).expect("completion");
    assert_eq!(c.fault(), Some(Fault::Ok));
    assert_eq!(record(&b, at)[1], 1);
}

/// "The PERF_* counters count the same quantities for all jobs together":
/// the records of a few jobs add up to the counters' increase.
#[test]
fn records_add_up_to_the_performance_counters() {
    let mut b = bench();
    b.map(0, IN_VA, 8192, false);
    b.map(0, OUT_VA, 8192, true);
    let perf = |b: &Bench| {
        [
            PerfCounter::BusyCycles,
            PerfCounter::Instructions,
            PerfCounter::Macs,
            PerfCounter::DmaBytesRead,
            PerfCounter::DmaBytesWritten,
        ]
        .map(|c| {
            let lo = PERF_BASE + 8 * c as u32;
            b.device.mmio_read(lo) as u64 | (b.device.mmio_read(lo + 4) as u64) << 32
        })
    };
    let before = perf(&b);
    let at = buffer(&mut b);
    let progs: [&[Insn]; 3] = [
        &[load(IN_VA, 0, 8192), store(OUT_VA, 0, 8192), Insn::End],
        &[matmul(DType::F32, 16, 16, 16, 0, 2048, 4096), Insn::End],
        &[
            load(IN_VA, 0, 1024),
            matmul(DType::I8, 8, 16, 32, 0, 1024, 2048),
            store(OUT_VA + 4096, 2048, 512),
            Insn::End,
        ],
    ];
    let mut sum = [0u64; 5];
    for (i, prog) in progs.iter().enumerate() {
        let rec = at + 64 * i as u64;
        let c = run_profiled(&mut b, 0, prog, rec);
        assert_eq!(c.fault(), Some(Fault::Ok));
        let w = record(&b, rec);
        assert_eq!(w[0], c.cycles as u64);
        for (s, v) in sum.iter_mut().zip([w[0], w[1], w[2], w[3], w[4]]) {
            *s += v;
        }
    }
    let after = perf(&b);
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, sum);
    // And the MACs by hand: 16^3 + 8 * 16 * 32.
    assert_eq!(sum[2], 4096 + 4096);
}
