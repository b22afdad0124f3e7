//! A hostile guest (issue 14): jobs that run for hours, allocations sized by
//! guest values, command buffers that make the scoreboard quadratic, DMA
//! after bus mastering went off or a region was unmapped, and ring pointers
//! outside the rings. Expected behaviour is Documentation/hw/npu-hw.rst's
//! (`Reset`, `Bus mastering`, `Ring pointer errors`, `Cost model`).
//!
//! Waits poll device state or completion records with generous bounds
//! (seconds, where the spec's worst case is milliseconds): they only decide
//! when to give up, never what is correct.

mod common;
use common::*;
use npu_device::cost::{CostModel, Engine, Timeline};
use npu_device::mem::{bus_read, bus_write};
use npu_device::regs::*;
use npu_device::testbench::Bench;
use npu_device::{Device, DeviceConfig};
use npu_isa::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// No single allocation in this test process may exceed this: the device
/// must never size one by a guest value. A bigger request is refused (the
/// process aborts with a message), so an old device fails here instead of
/// paging the machine to death.
const ALLOC_CAP: usize = 256 << 20;

struct CappedAlloc;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; refuses by returning null,
// which the GlobalAlloc contract allows.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > ALLOC_CAP {
            let msg = b"hostile_guest: an allocation above 256 MiB was requested\n";
            // SAFETY: writing a static buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const PATIENCE: Duration = Duration::from_secs(20);

fn big_bench() -> Bench {
    Bench::new(
        DeviceConfig {
            sram_size: 1 << 20,
            contexts: 4,
            ..Default::default()
        },
        32,
    )
}

/// Poll `cond` until true; false after PATIENCE.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() > PATIENCE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// A DMA_LOAD of 2^32 one-byte rows that fits in 128 KiB of SRAM: SRAM
/// strides [1, 1] over shape [1, 65536, 65536], memory stride 0. Legal, and
/// hours of work for the model (at ~100 ns a row).
fn endless_load(va: u64) -> Insn {
    let n = 65536;
    Insn::DmaLoad {
        va,
        sram: 0,
        mem: Strided {
            shape: [1, n, n],
            stride: [0, 0],
        },
        sram_layout: Strided {
            shape: [1, n, n],
            stride: [1, 1],
        },
    }
}

/// The same as a store: every row writes the byte at `va` again.
fn endless_store(va: u64) -> Insn {
    let n = 65536;
    Insn::DmaStore {
        va,
        sram: 0,
        mem: Strided {
            shape: [1, n, n],
            stride: [0, 0],
        },
        sram_layout: Strided {
            shape: [1, n, n],
            stride: [1, 1],
        },
    }
}

/// Queue `prog` + END at CMD_VA without waiting; returns its seqno.
fn start(b: &mut Bench, prog: &[Insn]) -> u64 {
    let mut p = prog.to_vec();
    p.push(Insn::End);
    let code = assemble(&p);
    b.map(0, CMD_VA, code.len() as u64, false);
    b.write(0, CMD_VA, &code);
    b.submit_raw(0, CMD_VA, code.len() as u32, 0)
}

/// SOFT_RESET, then poll STATUS until RESET_DONE (giving up after
/// PATIENCE); re-program the rings. Returns how long RESET_DONE took.
fn timed_reset(b: &mut Bench) -> Duration {
    let t = Instant::now();
    b.device.mmio_write(CONTROL, CONTROL_SOFT_RESET);
    while b.device.mmio_read(STATUS) & STATUS_RESET_DONE == 0 {
        assert!(t.elapsed() < PATIENCE, "no RESET_DONE");
        std::thread::yield_now();
    }
    let took = t.elapsed();
    b.program_rings();
    took
}

/// A job that copies 4 KiB from IN_VA to OUT_VA through the SRAM, checked.
fn check_copy_job(b: &mut Bench, seed: u64) {
    let mut rng = Rng(seed);
    let data: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let (c, out) = run_program(
        b,
        &data,
        4096,
        &[load(IN_VA, 4096, 4096), store(OUT_VA, 4096, 4096)],
    );
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    assert!(out == data, "the job after the reset copied wrong data");
}

#[test]
fn a_reset_cuts_a_long_strided_load_and_the_next_job_is_right() {
    let mut b = big_bench();
    b.map(0, IN_VA, 4096, false);
    start(&mut b, &[endless_load(IN_VA)]);
    assert!(
        eventually(|| b.device.mmio_read(STATUS) & STATUS_BUSY != 0),
        "the long job never started"
    );
    let done_irqs = b.irq.count(VECTOR_ERROR);
    // The spec bounds SOFT_RESET -> RESET_DONE by one poll interval of the
    // CP, a DMA row here; the poll below only gives up after PATIENCE.
    let took = timed_reset(&mut b);
    println!("SOFT_RESET to RESET_DONE during a strided DMA: {took:?}");
    assert!(
        b.irq.count(VECTOR_ERROR) > done_irqs,
        "RESET_DONE raised no message"
    );
    // RESET_DONE means the CP has left the job.
    assert_eq!(
        b.device.mmio_read(STATUS) & STATUS_BUSY,
        0,
        "BUSY after RESET_DONE"
    );
    // On the old device the CP was still in the first job: this one waited
    // behind it for hours (Bench::run gives up after 30 s).
    check_copy_job(&mut b, 1);
    check_copy_job(&mut b, 2);
}

#[test]
fn a_reset_cuts_a_long_pool() {
    // One 255 x 255 input, a 255 x 255 window with padding 127: 255 x 255
    // outputs, each window holding up to 255 x 255 input positions (the
    // padding adds none: the device visits only positions in the input),
    // 2.4e9 steps, legal. (A 1 x 1 input with padding 254 was long only
    // while the device stepped over the padding too.)
    let mut b = big_bench();
    let geom = PoolGeom {
        channels: 1,
        in_h: 255,
        in_w: 255,
        out_h: 255,
        out_w: 255,
        kernel: [255, 255],
        stride: [1, 1],
        pad: [127, 127],
    };
    start(
        &mut b,
        &[Insn::Pool {
            op: PoolOp::Max,
            geom,
            src: 0,
            dst: 255 * 255 * 4,
        }],
    );
    assert!(
        eventually(|| b.device.mmio_read(STATUS) & STATUS_BUSY != 0),
        "the long job never started"
    );
    let took = timed_reset(&mut b);
    println!("SOFT_RESET to RESET_DONE during a 255 x 255 max POOL: {took:?}");
    assert_eq!(
        b.device.mmio_read(STATUS) & STATUS_BUSY,
        0,
        "BUSY after RESET_DONE"
    );
    check_copy_job(&mut b, 3);
}

#[test]
fn a_reset_cuts_a_long_int8_pool() {
    // POOL_I8's average over the same 255 x 255 windows (2.4e9 steps).
    let mut b = big_bench();
    let geom = PoolGeom {
        channels: 1,
        in_h: 255,
        in_w: 255,
        out_h: 255,
        out_w: 255,
        kernel: [255, 255],
        stride: [1, 1],
        pad: [127, 127],
    };
    start(
        &mut b,
        &[Insn::PoolI8 {
            op: PoolI8Op::Avg,
            geom,
            src: 0,
            dst: 255 * 255,
            requant: false,
            zp_in: 0,
            zp_out: 0,
            scale_in: 1.0,
            scale_out: 1.0,
        }],
    );
    assert!(
        eventually(|| b.device.mmio_read(STATUS) & STATUS_BUSY != 0),
        "the long job never started"
    );
    let took = timed_reset(&mut b);
    println!("SOFT_RESET to RESET_DONE during a 255 x 255 average POOL_I8: {took:?}");
    assert_eq!(
        b.device.mmio_read(STATUS) & STATUS_BUSY,
        0,
        "BUSY after RESET_DONE"
    );
    check_copy_job(&mut b, 3);
}

fn requant(rows: u32, cols: u32, bias: Option<u32>) -> Insn {
    Insn::Requant {
        rows,
        cols,
        src: tile(0, 0),
        dst: tile(0, 0),
        mult: 0x4000_0000,
        per_channel: false,
        bias,
        shift: 1,
        zero_point: 0,
        lo: -128,
        hi: 127,
    }
}

#[test]
fn a_huge_requant_ends_cleanly_without_a_huge_allocation() {
    // rows = 0: the tile is empty (npu-hw.rst: an empty tile touches
    // nothing), so the job ends OK; the old device sized the immediate
    // multiplier vector by the raw cols, 16 GiB, and the process died.
    let mut b = big_bench();
    let (c, _) = run_program(&mut b, &[], 0, &[requant(0, u32::MAX, None)]);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    // The bias vector has cols entries and must lie in the SRAM.
    let (c, _) = run_program(&mut b, &[], 0, &[requant(0, u32::MAX, Some(0))]);
    assert_eq!(
        (c.fault(), c.fault_addr),
        (Some(Fault::SramRange), 0),
        "{c:?}"
    );
    let (c, _) = run_program(&mut b, &[], 0, &[requant(1, u32::MAX, None)]);
    assert_eq!(c.fault(), Some(Fault::SramRange), "{c:?}");
    let largest = LARGEST.load(Ordering::Relaxed);
    println!("largest single allocation in this process: {largest} bytes");
    assert!(largest <= ALLOC_CAP);
    check_copy_job(&mut b, 4);
}

#[test]
fn the_scoreboard_does_linear_work_for_dma_only_jobs() {
    // Count the scoreboard's work, not time: the old scoreboard compared
    // each instruction with every earlier one (nothing retired without
    // compute work), 16x the work for 4x the instructions.
    let work = |n: u64| {
        let mut tl = Timeline::default();
        for i in 0..n {
            let lo = (i * 4) % (1 << 20);
            tl.issue(Engine::Dma, &[], &[(lo, lo + 4)], 67);
        }
        // One compute instruction reading everything, at the end.
        tl.issue(Engine::Compute, &[(0, 1 << 20)], &[], 10);
        (tl.work(), tl.total())
    };
    let (w16, t16) = work(16 << 10);
    let (w64, t64) = work(64 << 10);
    println!("scoreboard work: 16k instructions {w16}, 64k {w64}");
    assert!(w64 <= 5 * w16.max(1), "16k: {w16}, 64k: {w64}: not linear");
    // The compute read waits for the last overlapping FILL: n * 67 + 10.
    assert_eq!((t16, t64), ((16 << 10) * 67 + 10, (64 << 10) * 67 + 10));
}

#[test]
fn short_rows_cost_a_cycle_each_and_page_walks_are_charged() {
    // npu-hw.rst, Cost model: a DMA instruction costs INSN_OVERHEAD +
    // DMA_LATENCY + max(ceil(bytes / DMA_BYTES_PER_CYCLE), rows) +
    // WALK_CYCLES per page-table walk it makes.
    let cm = CostModel::default();
    assert_eq!(cm.registers()[7], 3, "WALK_CYCLES");
    let mut b = big_bench();
    b.map(0, IN_VA, 4096, false);
    // 1000 rows of 1 byte from one page: one walk.
    let insn = Insn::DmaLoad {
        va: IN_VA,
        sram: 0,
        mem: Strided {
            shape: [1, 1000, 1],
            stride: [1, 1000],
        },
        sram_layout: Strided {
            shape: [1, 1000, 1],
            stride: [4, 4000],
        },
    };
    let (c, _) = run_program(&mut b, &[], 0, &[insn]);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    assert_eq!(c.cycles, 2 + 64 + 1000 + 3);
    // One 8 KiB row over two pages: 128 cycles of transfer, two walks.
    let mut b = big_bench();
    let (c, _) = run_program(&mut b, &[0u8; 8192], 0, &[load(IN_VA, 0, 8192)]);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    assert_eq!(c.cycles, 2 + 64 + 128 + 2 * 3);
    // The cost registers are readable.
    assert_eq!(b.device.mmio_read(COST_BASE + 7 * 4), 3);
}

#[test]
fn a_doorbell_more_than_a_ring_ahead_is_refused_and_reported() {
    let mut b = big_bench();
    let errs = b.irq.count(VECTOR_ERROR);
    let bad = b.sq_size + 1;
    b.device.mmio_write(DOORBELL, bad);
    assert_eq!(b.device.mmio_read(SQ_TAIL), 0, "the bad tail was taken");
    assert_eq!(b.device.mmio_read(RING_ERROR), RING_ERROR_DOORBELL);
    assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), bad);
    assert_ne!(b.device.mmio_read(IRQ_STATUS) & IRQ_RING_ERROR, 0);
    assert_eq!(b.irq.count(VECTOR_ERROR), errs + 1, "no RING_ERROR message");
    // A tail behind the head is as bad.
    b.device.mmio_write(DOORBELL, u32::MAX);
    assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), u32::MAX);
    // Write-1-to-clear, and the device runs on.
    b.device.mmio_write(RING_ERROR, RING_ERROR_DOORBELL);
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
    assert_eq!(b.device.mmio_read(STATUS) & STATUS_HALTED, 0);
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    check_copy_job(&mut b, 5);
}

#[test]
fn a_cq_head_beyond_the_tail_is_refused_and_the_device_keeps_running() {
    let mut b = big_bench();
    check_copy_job(&mut b, 6);
    let tail = b.device.mmio_read(CQ_TAIL);
    assert_eq!(tail, 1);
    let errs = b.irq.count(VECTOR_ERROR);
    // On the old device this head made the ring look full for ever.
    b.device.mmio_write(CQ_HEAD, tail + 3);
    assert_eq!(b.device.mmio_read(CQ_HEAD), tail, "the bad head was taken");
    assert_eq!(b.device.mmio_read(RING_ERROR), RING_ERROR_CQ_HEAD);
    assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), tail + 3);
    assert_eq!(b.irq.count(VECTOR_ERROR), errs + 1, "no RING_ERROR message");
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    for seed in 7..12 {
        check_copy_job(&mut b, seed);
    }
    // A soft reset clears RING_ERROR.
    b.reset();
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
}

#[test]
fn bus_mastering_off_stops_a_running_job_and_holds_its_record() {
    let mut b = big_bench();
    b.map(0, OUT_VA, 4096, true);
    // Every SRAM byte the store reads (2 x 65536 - 1 of them) holds 0xa5.
    let fill = Insn::Fill {
        dst: 0,
        len: 2 << 16,
        pattern: 0xa5a5_a5a5,
    };
    let seqno = start(&mut b, &[fill, endless_store(OUT_VA)]);
    // The store is under way once its byte shows up in memory.
    assert!(
        eventually(|| b.read(0, OUT_VA, 1) == [0xa5]),
        "the long store never started"
    );
    // Returns once the CP no longer touches memory.
    b.device.set_bus_master(false);
    b.write(0, OUT_VA, &[0x5a]);
    // While bus mastering is off no record is written; on again, the job's
    // record says where its DMA failed.
    b.device.set_bus_master(true);
    let c = b
        .wait_completion(PATIENCE)
        .expect("no record after bus mastering came back");
    assert_eq!(
        (c.seqno, c.fault(), c.fault_addr),
        (seqno, Some(Fault::DmaBusError), OUT_VA),
        "{c:?}"
    );
    assert_eq!(
        b.read(0, OUT_VA, 1),
        [0x5a],
        "the device stored after bus mastering went off"
    );
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    check_copy_job(&mut b, 12);
}

#[test]
fn with_bus_mastering_off_no_entry_is_fetched() {
    let mut b = big_bench();
    b.device.set_bus_master(false);
    let data = [7u8; 64];
    b.map(0, IN_VA, 4096, false);
    b.write(0, IN_VA, &data);
    b.map(0, OUT_VA, 4096, true);
    let seqno = start(&mut b, &[load(IN_VA, 0, 64), store(OUT_VA, 0, 64)]);
    // The CP sees the doorbell (the register write wakes it) but must not
    // fetch: SQ_HEAD stays, no record.
    assert_eq!(b.device.mmio_read(SQ_HEAD), 0);
    b.device.set_bus_master(true);
    let c = b
        .wait_completion(PATIENCE)
        .expect("the job did not run once bus mastering was on");
    assert_eq!((c.seqno, c.fault()), (seqno, Some(Fault::Ok)));
    assert_eq!(b.read(0, OUT_VA, 64), data);
}

#[test]
fn unmapping_memory_under_a_running_job_stops_its_dma() {
    let mut b = big_bench();
    b.map(0, OUT_VA, 4096, true);
    start(&mut b, &[endless_store(OUT_VA)]);
    assert!(
        eventually(|| b.device.mmio_read(STATUS) & STATUS_BUSY != 0),
        "the long job never started"
    );
    // The bench's host memory is one region at 0; removing it takes the
    // rings too. unmap returns once the CP has moved off the old memory.
    let bus = b.device.bus().clone();
    bus.unmap(0, 32 << 20).expect("unmap");
    b.write(0, OUT_VA, &[0x77]);
    // The job's next row faults; its record has nowhere to go: HALTED.
    assert!(
        eventually(|| b.device.mmio_read(STATUS) & STATUS_HALTED != 0),
        "the job went on after the unmap"
    );
    assert_eq!(
        b.read(0, OUT_VA, 1),
        [0x77],
        "the device stored after DMA_UNMAP returned"
    );
    let mem = bus.snapshot();
    assert!(!bus_read(&mem, 0, &mut [0u8; 1]) && !bus_write(&mem, 0, &[0u8; 1]));
}

#[test]
fn a_failed_command_processor_start_is_reported() {
    let bus = npu_device::mem::Bus::default();
    let irq = std::sync::Arc::new(npu_device::testbench::IrqRecorder::default());
    let r = Device::with_spawner(
        DeviceConfig::default(),
        bus,
        irq,
        Default::default(),
        |_, _| Err(std::io::Error::other("no threads left")),
    );
    let e = r.err().expect("a device without its command processor");
    assert!(e.to_string().contains("command-processor thread"), "{e}");
}

#[test]
fn transfers_with_a_zero_dimension_and_billions_of_planes_end_at_once() {
    // Found by the cmdbuf fuzzer's time budget: zero rows in 2^32 - 1
    // planes looped over every empty plane without a poll (about 3 s each
    // in a release build), charged as the empty transfer it is. Sixteen of
    // them take minutes on the old device; nothing here.
    let mut b = big_bench();
    b.map(0, IN_VA, 4096, true);
    let empty = Strided {
        shape: [64, 0, u32::MAX],
        stride: [64, 64],
    };
    let mut prog = Vec::new();
    for i in 0..16 {
        prog.push(if i % 2 == 0 {
            Insn::DmaLoad {
                va: IN_VA,
                sram: 0,
                mem: empty,
                sram_layout: empty,
            }
        } else {
            Insn::Copy {
                src: 0,
                dst: 4096,
                src_layout: empty,
                dst_layout: empty,
            }
        });
    }
    let seqno = start(&mut b, &prog);
    let c = b
        .wait_completion(PATIENCE)
        .expect("the empty transfers did not end");
    assert_eq!((c.seqno, c.fault()), (seqno, Some(Fault::Ok)), "{c:?}");
    // Each costs INSN_OVERHEAD + DMA_LATENCY and nothing more.
    assert_eq!(c.cycles, 16 * (2 + 64));
}

#[test]
fn a_reset_cuts_a_job_of_the_largest_matmuls() {
    // With the default 1 MiB SRAM the largest f32 MATMUL is 256^3 MACs and
    // the largest int8 one (m x k and k x n bytes, m x n words) 2^29: a job
    // of hundreds of them runs for seconds. The reset waits for at most the
    // current block (npu-hw.rst, Reset); this prints how long that was.
    // int8: A 512 x 1024 bytes at 0, B 1024 x 512 at 512 KiB; C (1 MiB of
    // words) does not fit beside them, so C overwrites A (allowed: inputs
    // are read before the output is written).
    for (dtype, m, n, k, b_at, c_at) in [
        (DType::F32, 256u32, 256u32, 256u32, 256 << 10, 512 << 10),
        (DType::I8, 512, 512, 1024, 512 << 10, 0),
    ] {
        let mut b = big_bench();
        let a_at = 0;
        let mm = Insn::Matmul {
            dtype,
            accumulate: false,
            transpose_b: false,
            m,
            n,
            k,
            a: tile(a_at, k),
            b: tile(b_at, n),
            c: tile(c_at, n),
        };
        let prog = vec![mm; 400];
        start(&mut b, &prog);
        assert!(
            eventually(|| b.device.mmio_read(STATUS) & STATUS_BUSY != 0),
            "the job never started"
        );
        // Let it get into its MATMULs. Not a wait for an event: a reset at
        // any moment must work; later is just more representative.
        std::thread::sleep(Duration::from_millis(50));
        let took = timed_reset(&mut b);
        println!("SOFT_RESET to RESET_DONE during {dtype:?} MATMULs of {m}x{n}x{k}: {took:?}");
        assert_eq!(
            b.device.mmio_read(STATUS) & STATUS_BUSY,
            0,
            "BUSY after RESET_DONE"
        );
        check_copy_job(&mut b, 20);
    }
}

/// Device 1.1's rings and profile records under random register writes and
/// random submission entries: every refusal is one the spec documents, the
/// device never panics, and after a soft reset it runs a checked job.
#[test]
fn random_ring_programming_and_profile_entries_end_in_a_working_device() {
    let mut b = big_bench();
    let mut rng = Rng(0x0011_2026);
    let mem = b.mem_size();
    // Ring memory of the guest's own, and a page of random entries there.
    let area = b.alloc_bus(8 * 4096);
    let junk: Vec<u8> = (0..8 * 4096).map(|_| rng.next() as u8).collect();
    b.mem_write(area, &junk);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    let ring_regs: Vec<u32> = (0..RINGS)
        .flat_map(|n| (0..8).map(move |r| ring_reg(n, 4 * r)))
        .chain([NUM_RINGS, SQ_BASE_LO, SQ_SIZE, DOORBELL, RING_ERROR])
        .collect();
    let value = |rng: &mut Rng| match rng.next() % 8 {
        0 => 0,
        1 => u32::MAX,
        2 => (area + (rng.next() % 8) * 4096) as u32,
        3 => 1 << (rng.next() % 13),
        4 => rng.next() as u32 % 8,
        _ => rng.next() as u32,
    };
    let mut enabled_rounds = 0;
    for round in 0..10_000 {
        let d = &b.device;
        match rng.next() % 10 {
            // ENABLE, disable, or a soft reset (out of a halt).
            0 => d.mmio_write(
                CONTROL,
                [CONTROL_ENABLE, 0, CONTROL_SOFT_RESET][(rng.next() % 3) as usize],
            ),
            1 => d.mmio_write(
                SHADOW_LO,
                if rng.next().is_multiple_of(4) {
                    area as u32
                } else {
                    0
                },
            ),
            2 | 3 => {
                let r = ring_regs[(rng.next() % ring_regs.len() as u64) as usize];
                d.mmio_write(r, value(&mut rng));
            }
            // Half the time a sane geometry, so that ENABLE can succeed.
            4..=6 => {
                let n = (rng.next() % RINGS as u64) as usize;
                let base = area + (rng.next() % 8) * 4096;
                let size = match rng.next() % 4 {
                    0 if n > 0 => 0,
                    _ => 1 << (1 + rng.next() % 3),
                };
                d.mmio_write(ring_reg(n, RING_SQ_BASE_LO), base as u32);
                d.mmio_write(ring_reg(n, RING_SQ_BASE_HI), 0);
                d.mmio_write(ring_reg(n, RING_SQ_SIZE), size);
            }
            _ => {
                // A random entry on a random ring, PROFILE with an address
                // anywhere: inside memory (even the rings), past it, wrapping.
                let ring = (rng.next() % RINGS as u64) as usize;
                let at = match rng.next() % 8 {
                    0 => mem + (rng.next() % 64) * 64,
                    1 => u64::MAX - 63,
                    2 => rng.next(),
                    _ => area + (rng.next() % 512) * 64,
                };
                let flags = if rng.next().is_multiple_of(4) {
                    rng.next() as u16
                } else {
                    1
                };
                let base = d.mmio_read(ring_reg(ring, RING_SQ_BASE_LO)) as u64
                    | (d.mmio_read(ring_reg(ring, RING_SQ_BASE_HI)) as u64) << 32;
                let size = d.mmio_read(ring_reg(ring, RING_SQ_SIZE)).max(1);
                let tail = d.mmio_read(ring_reg(ring, RING_SQ_TAIL));
                let mut e = [0u8; 64];
                e[8..16].copy_from_slice(&CMD_VA.to_le_bytes());
                e[16..20].copy_from_slice(&64u32.to_le_bytes());
                e[22..24].copy_from_slice(&flags.to_le_bytes());
                e[24..32].copy_from_slice(&at.to_le_bytes());
                let slot = base.wrapping_add((tail % size) as u64 * 64);
                if slot.checked_add(64).is_some_and(|end| end <= mem) {
                    b.mem_write(slot, &e);
                }
                b.device
                    .mmio_write(ring_reg(ring, RING_DOORBELL), tail.wrapping_add(1));
                // Let the CP catch up (an event, not a delay): halted,
                // disabled, or every enabled ring drained.
                b.wait_until("the CP idle", |b| {
                    let d = &b.device;
                    // Consume the records as a driver would (a full
                    // completion ring would stall the CP).
                    d.mmio_write(CQ_HEAD, d.mmio_read(CQ_TAIL));
                    let st = d.mmio_read(STATUS);
                    let drained = (0..RINGS).all(|n| {
                        let size = d.mmio_read(ring_reg(n, RING_SQ_SIZE));
                        (n > 0 && size == 0)
                            || d.mmio_read(ring_reg(n, RING_SQ_HEAD))
                                == d.mmio_read(ring_reg(n, RING_SQ_TAIL))
                    });
                    st & STATUS_HALTED != 0
                        || st & STATUS_ENABLED == 0
                        || (drained && st & STATUS_BUSY == 0)
                });
            }
        }
        // Every register read answers, and RING_ERROR holds only the bits
        // the spec defines.
        let d = &b.device;
        enabled_rounds += (d.mmio_read(STATUS) & STATUS_ENABLED != 0) as u32;
        let ring_error = d.mmio_read(RING_ERROR);
        assert_eq!(
            ring_error & !0xee0f,
            0,
            "round {round}: RING_ERROR {ring_error:#x}"
        );
        assert_eq!(d.mmio_read(NUM_RINGS), 4);
    }
    // The rounds did reach the CP: entries were fetched and ended.
    let ended = b.device.perf(PerfCounter::JobsDone) + b.device.perf(PerfCounter::JobsFaulted);
    eprintln!(
        "random rings: {ended} jobs ended, {} error messages, enabled in {enabled_rounds} rounds",
        b.irq.count(VECTOR_ERROR)
    );
    assert!(ended > 0, "no random entry ever ran");
    // Rings 1..3 back to disabled, then a reset: the device works.
    b.device.mmio_write(CONTROL, 0);
    for n in 1..RINGS {
        b.device.mmio_write(ring_reg(n, RING_SQ_SIZE), 0);
    }
    b.device.mmio_write(SHADOW_LO, 0);
    b.device.mmio_write(SHADOW_HI, 0);
    timed_reset(&mut b);
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    check_copy_job(&mut b, 11);
}

/// Doorbells of disabled rings, in a flood: each is refused (or a no-op),
/// none queues work, and the cost is one register write each.
#[test]
fn a_flood_of_doorbells_on_disabled_rings_changes_nothing() {
    let mut b = big_bench();
    let mut rng = Rng(99);
    for _ in 0..10_000 {
        let n = 1 + (rng.next() % 3) as usize;
        b.device
            .mmio_write(ring_reg(n, RING_DOORBELL), 1 + rng.next() as u32 % u32::MAX);
    }
    for n in 1..RINGS {
        assert_eq!(b.device.mmio_read(ring_reg(n, RING_SQ_TAIL)), 0);
        assert_eq!(b.device.mmio_read(ring_reg(n, RING_SQ_HEAD)), 0);
    }
    assert_eq!(b.device.mmio_read(RING_ERROR), 0b1110 << 8);
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    check_copy_job(&mut b, 12);
}
