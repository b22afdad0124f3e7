//! The shadow doorbell page: tails and heads published in memory, the
//! DOORBELL write only when the CP said it sleeps.

mod common;
use common::*;
use npu_device::inject::Injector;
use npu_device::regs::*;
use npu_device::testbench::{need_doorbell, Bench, Rng, EVENT_BOUND};
use npu_device::DeviceConfig;
use npu_isa::*;
use std::time::Duration;

fn cfg() -> DeviceConfig {
    DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    }
}

fn wait_idle(b: &Bench) {
    b.wait_until("the device to go idle", |b| {
        b.device.mmio_read(STATUS) & STATUS_BUSY == 0
            && b.device.mmio_read(SQ_HEAD) == b.device.mmio_read(SQ_TAIL)
    });
    // The CP publishes its event index just before it sleeps.
    let head = b.device.mmio_read(SQ_HEAD);
    b.wait_until("the CP to publish its event index", |b| {
        b.shadow_event() == head
    });
}

#[test]
fn the_event_rule_wraps() {
    assert!(need_doorbell(0, 1, 0));
    assert!(
        !need_doorbell(0, 2, 1),
        "the CP has not caught up: it polls"
    );
    assert!(need_doorbell(7, 8, 7));
    assert!(need_doorbell(7, 10, 7), "a batch past the event");
    assert!(need_doorbell(u32::MAX, 0, u32::MAX), "across the wrap");
    assert!(!need_doorbell(u32::MAX - 3, 1, 0));
}

#[test]
fn a_busy_device_takes_new_entries_without_a_doorbell() {
    let inject = Injector::parse(&["delay=1000:tag=1".to_string()]).expect("rule");
    let mut b = Bench::with_options(cfg(), 16, 64, 64, inject);
    assert_ne!(b.device.mmio_read(CAPS) & CAP_SHADOW_DOORBELL, 0);
    b.use_shadow(None);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 1 }, Insn::End]));
    b.write(0, CMD_VA + 128, &assemble(&[Insn::End]));
    // The first job rings (the CP sleeps) and then runs for 1 s, while
    // ten more are queued: the CP finds them in the shadow page.
    let first = b.submit_raw(0, CMD_VA, 128, 0);
    b.wait_until("the CP to take the first job", |b| {
        b.device.mmio_read(STATUS) & STATUS_BUSY != 0
    });
    let rest: Vec<u64> = (0..10)
        .map(|_| b.submit_raw(0, CMD_VA + 128, 64, 0))
        .collect();
    assert_eq!(
        b.device.mmio_read(CQ_TAIL),
        0,
        "the first job ended before the others were queued"
    );
    assert_eq!(
        b.doorbells, 1,
        "only the job that found the CP asleep rings"
    );
    for want in std::iter::once(first).chain(rest) {
        let c = b.wait_completion(EVENT_BOUND).expect("completion");
        assert_eq!((c.seqno, c.status), (want, 0));
    }
    // Idle again: the next job must ring, and runs.
    wait_idle(&b);
    let s = b.submit_raw(0, CMD_VA + 128, 64, 0);
    assert_eq!(b.doorbells, 2);
    assert_eq!(b.wait_completion(EVENT_BOUND).expect("last").seqno, s);
}

#[test]
fn an_idle_cp_polls_the_page_before_it_sleeps() {
    // A window far longer than this test takes between jobs: every tail
    // published in it is taken without a doorbell.
    let config = DeviceConfig {
        idle_poll: Duration::from_secs(1),
        ..cfg()
    };
    let mut b = Bench::with_options(config, 16, 8, 8, Injector::default());
    b.use_shadow(None);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    // The page starts with SQ_EVENT 0: the first job rings.
    let first = b.submit_raw(0, CMD_VA, 64, 0);
    assert_eq!(b.doorbells, 1);
    assert_eq!(b.wait_completion(EVENT_BOUND).expect("first").seqno, first);
    // The rings are dry, and the CP polls the page instead of announcing:
    // the event stays behind, so the driver's rule rings no more.
    for _ in 0..5 {
        let s = b.submit_raw(0, CMD_VA, 64, 0);
        assert_eq!(b.wait_completion(EVENT_BOUND).expect("polled").seqno, s);
    }
    assert_eq!(b.doorbells, 1, "the polling CP needed no doorbell");
    assert_eq!(b.shadow_event(), 0, "the CP has not said it sleeps");
    // Once the window is over it announces where it stopped and sleeps:
    // the next job rings again.
    wait_idle(&b);
    let s = b.submit_raw(0, CMD_VA, 64, 0);
    assert_eq!(b.doorbells, 2);
    assert_eq!(b.wait_completion(EVENT_BOUND).expect("rung").seqno, s);
}

#[test]
fn without_an_idle_poll_the_cp_announces_at_once() {
    let config = DeviceConfig {
        idle_poll: Duration::ZERO,
        ..cfg()
    };
    let mut b = Bench::with_options(config, 16, 8, 8, Injector::default());
    b.use_shadow(None);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    for n in 1..=3u32 {
        let s = b.submit_raw(0, CMD_VA, 64, 0);
        assert_eq!(b.wait_completion(EVENT_BOUND).expect("job").seqno, s);
        // Asleep after each job: each one rings.
        wait_idle(&b);
        assert_eq!(b.shadow_event(), n);
        assert_eq!(b.doorbells, u64::from(n));
    }
}

#[test]
fn no_entry_is_lost_between_the_event_and_the_tail() {
    // Submissions racing the CP going to sleep, with the ring wrapping many
    // times: every job completes (a lost wake-up hangs this test).
    let mut b = Bench::with_options(cfg(), 16, 8, 8, Injector::default());
    b.use_shadow(None);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut queued = std::collections::VecDeque::new();
    for _ in 0..3000 {
        if queued.len() < 8 {
            queued.push_back(b.submit_raw(0, CMD_VA, 64, 0));
        }
        if rng.range(0, 3) == 0 || queued.len() == 8 {
            let c = b.wait_completion(EVENT_BOUND).expect("a job was lost");
            assert_eq!(Some(c.seqno), queued.pop_front());
        }
        if rng.range(0, 50) == 0 {
            std::thread::sleep(Duration::from_micros(rng.range(0, 300) as u64));
        }
    }
    while let Some(s) = queued.pop_front() {
        assert_eq!(b.wait_completion(EVENT_BOUND).expect("drain").seqno, s);
    }
    assert!(
        b.doorbells < 3000,
        "{} doorbells for 3000 jobs",
        b.doorbells
    );
}

#[test]
fn a_shadow_page_outside_memory_halts_the_device() {
    let mut b = Bench::with_options(cfg(), 16, 8, 8, Injector::default());
    b.use_shadow(Some(0x7fff_f000_0000));
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    b.wait_until("HALTED", |b| {
        b.device.mmio_read(STATUS) & STATUS_HALTED != 0
    });
    assert_ne!(b.device.mmio_read(IRQ_STATUS) & IRQ_DEVICE_ERROR, 0);
    // A good page and a reset bring it back (ENABLE alone does not clear
    // HALTED).
    b.use_shadow(None);
    assert_ne!(b.device.mmio_read(STATUS) & STATUS_HALTED, 0);
    b.reset();
    let c = b.run(0, CMD_VA + 4096, &assemble(&[Insn::End]));
    assert_eq!(c.status, 0);
}

#[test]
fn a_misaligned_shadow_page_is_refused_at_enable() {
    let mut b = Bench::with_options(cfg(), 16, 8, 8, Injector::default());
    b.use_shadow(Some(0x3f008));
    assert_ne!(b.device.mmio_read(STATUS) & STATUS_HALTED, 0);
    assert_eq!(b.device.mmio_read(STATUS) & STATUS_ENABLED, 0);
}

/// A doorbell is a posted write, the page is read by DMA: a submitter's
/// DOORBELL can arrive after the CP took a later tail from the page and
/// ran past it. Such a late value (at most SQ_SIZE behind the tail) only
/// wakes the CP: no ring error, the tail does not move back. One further
/// back, or ahead of the ring, is still refused.
#[test]
fn a_late_doorbell_is_not_a_ring_error() {
    let inject = Injector::parse(&["delay=300:tag=1".to_string()]).expect("rule");
    let mut b = Bench::with_options(cfg(), 16, 64, 64, inject);
    b.use_shadow(None);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 1 }, Insn::End]));
    b.write(0, CMD_VA + 128, &assemble(&[Insn::End]));
    let errs = b.irq.count(VECTOR_ERROR);
    // Behind the head: the CP ran past it.
    let first = b.submit_raw(0, CMD_VA + 128, 64, 0);
    assert_eq!(b.wait_completion(EVENT_BOUND).expect("first").seqno, first);
    wait_idle(&b);
    b.device.mmio_write(DOORBELL, 0);
    // Between the head and the tail: a long job runs while four more wait
    // in the page; a doorbell of the first of them arrives late.
    let long = b.submit_raw(0, CMD_VA, 128, 0);
    b.wait_until("the CP to take the long job", |b| {
        b.device.mmio_read(STATUS) & STATUS_BUSY != 0
    });
    let old = b.ring_tail(0);
    let rest: Vec<u64> = (0..4)
        .map(|_| b.queue_to(0, 0, CMD_VA + 128, 64, 0, 0))
        .collect();
    b.publish(0, old);
    b.wait_until("the CP to read the page", |b| {
        b.device.mmio_read(SQ_TAIL) == old + 4
    });
    b.device.mmio_write(DOORBELL, old + 1);
    assert_eq!(b.device.mmio_read(SQ_TAIL), old + 4, "the tail moved back");
    assert_eq!(b.device.mmio_read(RING_ERROR), 0);
    assert_eq!(b.device.mmio_read(IRQ_STATUS) & IRQ_RING_ERROR, 0);
    assert_eq!(b.irq.count(VECTOR_ERROR), errs, "a RING_ERROR message");
    for want in std::iter::once(long).chain(rest) {
        let c = b.wait_completion(EVENT_BOUND).expect("completion");
        assert_eq!((c.seqno, c.status), (want, 0));
    }
    // More than a ring behind the tail, or more than a ring ahead of the
    // head: refused as before.
    wait_idle(&b);
    let tail = b.device.mmio_read(SQ_TAIL);
    for bad in [tail.wrapping_sub(b.sq_size + 1), tail + b.sq_size + 1] {
        b.device.mmio_write(RING_ERROR, u32::MAX);
        b.device.mmio_write(DOORBELL, bad);
        assert_eq!(
            b.device.mmio_read(RING_ERROR),
            RING_ERROR_DOORBELL,
            "{bad:#x}"
        );
        assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), bad);
        assert_eq!(b.device.mmio_read(SQ_TAIL), tail);
    }
}
