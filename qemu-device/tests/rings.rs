//! Device 1.1 submission rings with fixed priorities, checked against
//! Documentation/hw/npu-hw.rst ("Submission rings and priorities", "Ring
//! pointer errors", "Shadow doorbells", "Reset"). Expected orders are
//! derived by hand from the arbitration rule: at every job boundary the CP
//! takes the head entry of the highest-numbered enabled ring that has one.

mod common;

use common::*;
use npu_device::inject::Injector;
use npu_device::regs::*;
use npu_device::testbench::{Bench, Completion, EVENT_BOUND};
use npu_device::DeviceConfig;
use npu_isa::{assemble, Fault, Insn};

/// A one-instruction job (END) at CMD_VA in context 0.
fn end_job(b: &mut Bench) {
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
}

fn next(b: &mut Bench) -> Completion {
    let c = b.wait_completion(EVENT_BOUND).expect("a completion record");
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    c
}

/// The (ring, seqno) of the next `n` completion records.
fn drain(b: &mut Bench, n: usize) -> Vec<(u16, u64)> {
    (0..n)
        .map(|_| {
            let c = next(b);
            assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
            (c.ring, c.seqno)
        })
        .collect()
}

fn bench_with(inject: Injector) -> Bench {
    Bench::with_options(
        DeviceConfig {
            sram_size: 64 * 1024,
            contexts: 4,
            ..Default::default()
        },
        32,
        64,
        64,
        inject,
    )
}

fn status(b: &Bench) -> u32 {
    b.device.mmio_read(STATUS)
}

#[test]
fn identification_registers() {
    let b = bench();
    assert_eq!(b.device.mmio_read(VERSION), 0x0001_0006);
    assert_eq!(b.device.mmio_read(NUM_RINGS), 4);
    let caps = b.device.mmio_read(CAPS);
    assert_eq!(caps & (1 << 4), 1 << 4, "CAPS.MULTI_RING");
    assert_eq!(caps & (1 << 5), 1 << 5, "CAPS.JOB_PROFILE");
}

#[test]
fn ring_zero_block_aliases_the_1_0_registers() {
    let b = bench();
    let d = &b.device;
    // The bench programmed ring 0 through 0x40..0x48.
    for (old, new) in [(0x40, 0x200), (0x44, 0x204), (0x48, 0x208), (0x4c, 0x20c)] {
        assert_eq!(d.mmio_read(old), d.mmio_read(new), "{old:#x} vs {new:#x}");
    }
    assert_eq!(d.mmio_read(0x208), 64);
    // Written through the block (while disabled), read at the 1.0 offset.
    d.mmio_write(CONTROL, 0);
    d.mmio_write(0x208, 32);
    assert_eq!(d.mmio_read(0x48), 32);
    d.mmio_write(0x48, 64);
    assert_eq!(d.mmio_read(0x208), 64);
    // Rings 1..3 reset disabled; their reserved words read 0.
    for n in 1..4u32 {
        for reg in [0x00, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c] {
            assert_eq!(d.mmio_read(0x200 + 0x20 * n + reg), 0, "ring {n} +{reg:#x}");
        }
    }
}

#[test]
fn a_doorbell_through_the_ring_zero_block_runs_a_job() {
    let mut b = bench();
    end_job(&mut b);
    b.queue_to(0, 0, CMD_VA, 64, 0, 0);
    b.device.mmio_write(0x214, 1);
    let c = next(&mut b);
    assert_eq!((c.ring, c.fault()), (0, Some(Fault::Ok)));
    assert_eq!(b.device.mmio_read(0x20c), 1);
}

/// Every ring loaded before ENABLE: the order is 3, 2, 1, 0, FIFO within
/// each ring.
#[test]
fn strict_priority_from_a_standing_start() {
    let mut b = bench();
    for n in 1..4 {
        b.set_ring(n, 8);
    }
    end_job(&mut b);
    b.device.mmio_write(CONTROL, 0);
    // Ring: seqnos (assigned 1, 2, ... in this order of queueing).
    let a1 = b.queue_to(0, 0, CMD_VA, 64, 0, 0);
    let a2 = b.queue_to(0, 0, CMD_VA, 64, 0, 0);
    let b1 = b.queue_to(1, 0, CMD_VA, 64, 0, 0);
    let c1 = b.queue_to(2, 0, CMD_VA, 64, 0, 0);
    let c2 = b.queue_to(2, 0, CMD_VA, 64, 0, 0);
    let d1 = b.queue_to(3, 0, CMD_VA, 64, 0, 0);
    for (ring, tail) in [(0, 2), (1, 1), (2, 2), (3, 1)] {
        // DOORBELL is accepted while ENABLE is 0 (same rule).
        b.device.mmio_write(ring_reg(ring, RING_DOORBELL), tail);
        assert_eq!(b.device.mmio_read(ring_reg(ring, RING_SQ_TAIL)), tail);
    }
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    let got = drain(&mut b, 6);
    assert_eq!(
        got,
        vec![(3, d1), (2, c1), (2, c2), (1, b1), (0, a1), (0, a2)]
    );
    for (ring, head) in [(0, 2), (1, 1), (2, 2), (3, 1)] {
        assert_eq!(b.device.mmio_read(ring_reg(ring, RING_SQ_HEAD)), head);
    }
}

/// Ring 0 holds six jobs; the first one is held running (an injected
/// delay) while a ring-3 job is submitted. The running job is not
/// interrupted, and at the next boundary the ring-3 job goes first: its
/// record is the second.
#[test]
fn a_high_job_overtakes_queued_low_jobs_at_the_next_boundary() {
    let mut inj = Injector::default();
    // Long enough never to end by itself: end_delays() ends it.
    inj.add("delay=3600000:nth=1").expect("rule");
    let mut b = bench_with(inj);
    b.set_ring(3, 4);
    end_job(&mut b);
    let low: Vec<u64> = (0..6).map(|_| b.queue_to(0, 0, CMD_VA, 64, 0, 0)).collect();
    b.publish(0, 0);
    b.wait_until("the first low job running", |b| {
        status(b) & STATUS_BUSY != 0
    });
    // Held: nothing has completed.
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    assert_eq!(b.device.mmio_read(SQ_HEAD), 0);
    let high = b.submit_to(3, 0, CMD_VA, 64, 0, 0);
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    b.device.end_delays();
    let got = drain(&mut b, 7);
    let mut want = vec![(0, low[0]), (3, high)];
    want.extend(low[1..].iter().map(|&s| (0, s)));
    assert_eq!(got, want);
}

#[test]
fn equal_priority_is_fifo() {
    let mut b = bench();
    b.set_ring(2, 16);
    end_job(&mut b);
    b.device.mmio_write(CONTROL, 0);
    let seqnos: Vec<u64> = (0..12)
        .map(|_| b.queue_to(2, 0, CMD_VA, 64, 0, 0))
        .collect();
    b.publish(2, 0);
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    let got = drain(&mut b, 12);
    assert_eq!(got, seqnos.iter().map(|&s| (2, s)).collect::<Vec<_>>());
    // Across the ring's wrap (16 entries): 12 more, in order.
    let seqnos: Vec<u64> = (0..12)
        .map(|_| b.submit_to(2, 0, CMD_VA, 64, 0, 0))
        .collect();
    let got = drain(&mut b, 12);
    assert_eq!(got, seqnos.iter().map(|&s| (2, s)).collect::<Vec<_>>());
    assert_eq!(b.device.mmio_read(ring_reg(2, RING_SQ_HEAD)), 24);
}

#[test]
fn disabled_rings_are_ignored() {
    let mut b = bench();
    end_job(&mut b);
    // Ring 1 disabled (SQ_SIZE 0) with a base that is not even aligned:
    // ENABLE does not check it.
    b.device.mmio_write(CONTROL, 0);
    b.device.mmio_write(ring_reg(1, RING_SQ_BASE_LO), 0x1234);
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    assert_eq!(
        status(&b) & (STATUS_ENABLED | STATUS_HALTED),
        STATUS_ENABLED
    );
    // Its DOORBELL accepts only its head (0): anything else is refused.
    b.device.mmio_write(ring_reg(1, RING_DOORBELL), 0);
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
    b.device.mmio_write(ring_reg(1, RING_DOORBELL), 1);
    assert_eq!(b.device.mmio_read(RING_ERROR), 1 << 9);
    assert_eq!(b.device.mmio_read(ring_reg(1, RING_SQ_TAIL)), 0);
    // Ring 0 still runs, and nothing came from ring 1.
    let s = b.submit_raw(0, CMD_VA, 64, 0);
    let c = next(&mut b);
    assert_eq!((c.ring, c.seqno), (0, s));
    assert_eq!(b.device.mmio_read(CQ_TAIL), 1);
}

#[test]
fn a_ring_disabled_again_is_not_read() {
    let mut b = bench();
    b.set_ring(1, 4);
    end_job(&mut b);
    // An entry queued on ring 1 while disabled, then ring 1 switched off.
    b.device.mmio_write(CONTROL, 0);
    b.queue_to(1, 0, CMD_VA, 64, 0, 0);
    b.publish(1, 0);
    b.device.mmio_write(ring_reg(1, RING_SQ_SIZE), 0);
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    let s = b.submit_raw(0, CMD_VA, 64, 0);
    let c = next(&mut b);
    assert_eq!((c.ring, c.seqno), (0, s));
    assert_eq!(b.device.mmio_read(ring_reg(1, RING_SQ_HEAD)), 0);
    assert_eq!(b.device.mmio_read(CQ_TAIL), 1);
}

#[test]
fn bad_ring_programming_halts() {
    let mut b = bench();
    let d = &b.device;
    let cases: [(u32, u32); 6] = [
        (0x10_0000, 1),    // size below 2
        (0x10_0000, 3),    // not a power of two
        (0x10_0000, 8192), // above 4096
        (0x10_0000, 0x8000_0000),
        (0x10_0800, 8), // base not 4 KiB aligned
        (0x10_0004, 2),
    ];
    for n in 1..4 {
        for &(base, size) in &cases {
            d.mmio_write(CONTROL, CONTROL_SOFT_RESET);
            b.wait_until("RESET_DONE", |b| status(b) & STATUS_RESET_DONE != 0);
            let d = &b.device;
            d.mmio_write(IRQ_ACK, IRQ_ALL);
            d.mmio_write(ring_reg(n, RING_SQ_BASE_LO), base);
            d.mmio_write(ring_reg(n, RING_SQ_BASE_HI), 0);
            d.mmio_write(ring_reg(n, RING_SQ_SIZE), size);
            d.mmio_write(CONTROL, CONTROL_ENABLE);
            let st = d.mmio_read(STATUS);
            assert_eq!(
                st & (STATUS_ENABLED | STATUS_HALTED),
                STATUS_HALTED,
                "ring {n} base {base:#x} size {size}"
            );
            assert_ne!(d.mmio_read(IRQ_STATUS) & IRQ_DEVICE_ERROR, 0);
            d.mmio_write(ring_reg(n, RING_SQ_SIZE), 0);
        }
    }
    // A valid base and size are accepted.
    let d = &b.device;
    d.mmio_write(CONTROL, CONTROL_SOFT_RESET);
    b.wait_until("RESET_DONE", |b| status(b) & STATUS_RESET_DONE != 0);
    b.program_rings();
    assert_eq!(
        status(&b) & (STATUS_ENABLED | STATUS_HALTED),
        STATUS_ENABLED
    );
}

#[test]
fn ring_geometry_is_fixed_while_enabled() {
    let mut b = bench();
    b.set_ring(2, 8);
    let d = &b.device;
    let base = d.mmio_read(ring_reg(2, RING_SQ_BASE_LO));
    d.mmio_write(ring_reg(2, RING_SQ_BASE_LO), 0x5000);
    d.mmio_write(ring_reg(2, RING_SQ_BASE_HI), 7);
    d.mmio_write(ring_reg(2, RING_SQ_SIZE), 3);
    assert_eq!(d.mmio_read(ring_reg(2, RING_SQ_BASE_LO)), base);
    assert_eq!(d.mmio_read(ring_reg(2, RING_SQ_BASE_HI)), 0);
    assert_eq!(d.mmio_read(ring_reg(2, RING_SQ_SIZE)), 8);
    // The read-only pointers ignore writes.
    d.mmio_write(ring_reg(2, RING_SQ_HEAD), 5);
    d.mmio_write(ring_reg(2, RING_SQ_TAIL), 5);
    assert_eq!(d.mmio_read(ring_reg(2, RING_SQ_HEAD)), 0);
    assert_eq!(d.mmio_read(ring_reg(2, RING_SQ_TAIL)), 0);
}

/// Every register the spec defines, minus the ones a refused doorbell is
/// documented to change (RING_ERROR, RING_ERROR_VALUE, IRQ_STATUS and the
/// IRQS_SENT counter).
fn snapshot(b: &Bench) -> Vec<(u32, u32)> {
    let irqs_sent = PERF_BASE + 8 * PerfCounter::IrqsSent as u32;
    (0..0x280)
        .step_by(4)
        .filter(|&o| {
            ![
                RING_ERROR,
                RING_ERROR_VALUE,
                IRQ_STATUS,
                irqs_sent,
                irqs_sent + 4,
            ]
            .contains(&o)
        })
        .map(|o| (o, b.device.mmio_read(o)))
        .collect()
}

#[test]
fn refused_doorbells_of_rings_1_to_3() {
    let mut b = bench();
    for n in 1..4 {
        b.set_ring(n, 4);
    }
    end_job(&mut b);
    // Hold each ring at head 1, tail 1 by running one job on it.
    for n in 1..4 {
        b.submit_to(n, 0, CMD_VA, 64, 0, 0);
        next(&mut b);
    }
    let before = snapshot(&b);
    for n in 1..4usize {
        // Accepted: head + 0..=size. Refused: beyond, or behind the head.
        for value in [6u32, 0, u32::MAX, 0x8000_0000] {
            b.device.mmio_write(IRQ_ACK, IRQ_ALL);
            b.device.mmio_write(RING_ERROR, u32::MAX);
            b.device.mmio_write(ring_reg(n, RING_DOORBELL), value);
            assert_eq!(
                b.device.mmio_read(RING_ERROR),
                1 << (8 + n),
                "ring {n} value {value:#x}"
            );
            assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), value);
            assert_ne!(b.device.mmio_read(IRQ_STATUS) & IRQ_RING_ERROR, 0);
            assert_eq!(snapshot(&b), before, "ring {n} value {value:#x}");
        }
    }
    // RING_ERROR is write-1-to-clear, bit by bit.
    b.device.mmio_write(ring_reg(1, RING_DOORBELL), 9);
    b.device.mmio_write(ring_reg(3, RING_DOORBELL), 9);
    assert_eq!(b.device.mmio_read(RING_ERROR), (1 << 9) | (1 << 11));
    b.device.mmio_write(RING_ERROR, 1 << 9);
    assert_eq!(b.device.mmio_read(RING_ERROR), 1 << 11);
    // The limit itself is accepted: head 1 + size 4.
    b.device.mmio_write(RING_ERROR, u32::MAX);
    b.device.mmio_write(CONTROL, 0);
    b.device.mmio_write(ring_reg(2, RING_DOORBELL), 5);
    assert_eq!(b.device.mmio_read(ring_reg(2, RING_SQ_TAIL)), 5);
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
}

#[test]
fn soft_reset_clears_every_ring_pointer() {
    let mut b = bench();
    for n in 1..4 {
        b.set_ring(n, 8);
    }
    end_job(&mut b);
    for n in 0..4usize {
        for _ in 0..=n {
            b.submit_to(n, 0, CMD_VA, 64, 0, 0);
        }
    }
    drain(&mut b, 10);
    let geometry = |b: &Bench| -> Vec<u32> {
        (0..4)
            .flat_map(|n| [RING_SQ_BASE_LO, RING_SQ_BASE_HI, RING_SQ_SIZE].map(|r| ring_reg(n, r)))
            .map(|o| b.device.mmio_read(o))
            .collect()
    };
    let kept = geometry(&b);
    for n in 0..4usize {
        let head = b.device.mmio_read(ring_reg(n, RING_SQ_HEAD));
        assert_eq!(head, n as u32 + 1);
        assert_eq!(b.device.mmio_read(ring_reg(n, RING_SQ_TAIL)), head);
    }
    b.device.mmio_write(CONTROL, CONTROL_SOFT_RESET);
    b.wait_until("RESET_DONE", |b| status(b) & STATUS_RESET_DONE != 0);
    for n in 0..4usize {
        assert_eq!(b.device.mmio_read(ring_reg(n, RING_SQ_HEAD)), 0, "ring {n}");
        assert_eq!(b.device.mmio_read(ring_reg(n, RING_SQ_TAIL)), 0, "ring {n}");
    }
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    assert_eq!(geometry(&b), kept);
}

/// The shadow page's per-ring words: the CP takes ring n's tail from
/// 0x10 + 8n and writes its head to 0x14 + 8n when it goes to sleep.
#[test]
fn shadow_page_per_ring_tails_and_events() {
    let mut b = bench();
    b.use_shadow(None);
    b.set_ring(1, 4);
    b.set_ring(3, 8);
    end_job(&mut b);
    let shadow =
        (b.device.mmio_read(SHADOW_LO) as u64) | (b.device.mmio_read(SHADOW_HI) as u64) << 32;
    let word = |b: &Bench, off: u64| {
        let v = b.mem_read(shadow + off, 4);
        u32::from_le_bytes([v[0], v[1], v[2], v[3]])
    };
    // Idle: the CP has published every enabled ring's head (0) and sleeps,
    // so the first job of a ring needs its doorbell.
    b.wait_until("the CP asleep", |b| status(b) & STATUS_BUSY == 0);
    let rung = b.doorbells;
    let s1 = b.submit_to(3, 0, CMD_VA, 64, 0, 0);
    assert_eq!(b.doorbells, rung + 1);
    assert_eq!(word(&b, 0x28), 1, "ring 3's SQ_TAIL word");
    let c = next(&mut b);
    assert_eq!((c.ring, c.seqno), (3, s1));
    // Asleep again: ring 3's event is its head, ring 1's and ring 0's 0.
    b.wait_until("ring 3's SQ_EVENT", |b| word(b, 0x2c) == 1);
    assert_eq!(word(&b, 0x1c), 0);
    assert_eq!(word(&b, 0x4), 0);
    // Ring 1 then ring 0, each through its own word.
    let s2 = b.submit_to(1, 0, CMD_VA, 64, 0, 0);
    assert_eq!(word(&b, 0x18), 1);
    let c = next(&mut b);
    assert_eq!((c.ring, c.seqno), (1, s2));
    b.wait_until("ring 1's SQ_EVENT", |b| word(b, 0x1c) == 1);
    let s3 = b.submit_raw(0, CMD_VA, 64, 0);
    let c = next(&mut b);
    assert_eq!((c.ring, c.seqno), (0, s3));
    b.wait_until("ring 0's SQ_EVENT", |b| word(b, 0x4) == 1);
    // Disabled ring 2's words are the driver's: never read or written.
    assert_eq!(word(&b, 0x24), 0);
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
}

#[test]
fn shadow_tails_without_doorbells_are_taken_by_priority() {
    let mut b = bench();
    b.use_shadow(None);
    b.set_ring(2, 8);
    end_job(&mut b);
    let shadow =
        (b.device.mmio_read(SHADOW_LO) as u64) | (b.device.mmio_read(SHADOW_HI) as u64) << 32;
    b.device.mmio_write(CONTROL, 0);
    // Tails published only in the page, before ENABLE (the restart values).
    let low = b.queue_to(0, 0, CMD_VA, 64, 0, 0);
    let high = b.queue_to(2, 0, CMD_VA, 64, 0, 0);
    b.mem_write(shadow, &1u32.to_le_bytes());
    b.mem_write(shadow + 0x20, &1u32.to_le_bytes());
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    assert_eq!(drain(&mut b, 2), vec![(2, high), (0, low)]);
}

#[test]
fn refused_shadow_tails_of_rings_1_to_3() {
    for n in 1..4usize {
        let mut b = bench();
        b.use_shadow(None);
        b.set_ring(n, 4);
        end_job(&mut b);
        let shadow =
            (b.device.mmio_read(SHADOW_LO) as u64) | (b.device.mmio_read(SHADOW_HI) as u64) << 32;
        // A stale word of ring 2 while ring 2 is disabled: never read.
        if n != 2 {
            b.mem_write(shadow + 0x20, &77u32.to_le_bytes());
        }
        // Five ahead of head 0 on a 4-entry ring.
        b.mem_write(shadow + 0x10 + 8 * n as u64, &5u32.to_le_bytes());
        // Wake the CP with an accepted (no-op) ring 0 doorbell.
        b.device.mmio_write(DOORBELL, 0);
        b.wait_until("RING_ERROR", |b| b.device.mmio_read(RING_ERROR) != 0);
        assert_eq!(b.device.mmio_read(RING_ERROR), 1 << (12 + n), "ring {n}");
        assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), 5);
        assert_eq!(b.device.mmio_read(ring_reg(n, RING_SQ_TAIL)), 0);
        // The CP goes on with ring 0.
        b.mem_write(shadow + 0x10 + 8 * n as u64, &0u32.to_le_bytes());
        let s = b.submit_raw(0, CMD_VA, 64, 0);
        let c = next(&mut b);
        assert_eq!((c.ring, c.seqno), (0, s));
    }
}

/// A 1.0 driver: ring 0 only, flags 0. Records carry ring 0, nothing of
/// rings 1..3 is touched.
#[test]
fn a_1_0_driver_sees_1_0_behaviour() {
    let mut b = bench();
    end_job(&mut b);
    for _ in 0..100 {
        let s = b.submit_raw(0, CMD_VA, 64, 0);
        let c = next(&mut b);
        assert_eq!((c.ring, c.seqno, c.fault()), (0, s, Some(Fault::Ok)));
    }
    assert_eq!(b.device.mmio_read(SQ_HEAD), 100);
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
}
