//! The shadow doorbell page: tails and heads published in memory, the
//! DOORBELL write only when the CP said it sleeps.

mod common;
use common::*;
use npu_device::inject::Injector;
use npu_device::regs::*;
use npu_device::testbench::{need_doorbell, Bench, Rng};
use npu_device::DeviceConfig;
use npu_isa::*;
use std::time::{Duration, Instant};

fn cfg() -> DeviceConfig {
    DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    }
}

fn wait_idle(b: &Bench) {
    let t = Instant::now();
    while b.device.mmio_read(STATUS) & STATUS_BUSY != 0
        || b.device.mmio_read(SQ_HEAD) != b.device.mmio_read(SQ_TAIL)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "device never went idle"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The CP publishes its event index just before it sleeps.
    let head = b.device.mmio_read(SQ_HEAD);
    while b.shadow_event() != head {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the CP never published its event index"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
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
    let inject = Injector::parse(&["delay=500:tag=1".to_string()]).expect("rule");
    let mut b = Bench::with_options(cfg(), 16, 64, 64, inject);
    assert_ne!(b.device.mmio_read(CAPS) & CAP_SHADOW_DOORBELL, 0);
    b.use_shadow(None);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 1 }, Insn::End]));
    b.write(0, CMD_VA + 128, &assemble(&[Insn::End]));
    // The first job rings (the CP sleeps) and then runs for 500 ms, while
    // ten more are queued: the CP finds them in the shadow page.
    let first = b.submit_raw(0, CMD_VA, 128, 0);
    std::thread::sleep(Duration::from_millis(30));
    let rest: Vec<u64> = (0..10)
        .map(|_| b.submit_raw(0, CMD_VA + 128, 64, 0))
        .collect();
    assert_eq!(
        b.doorbells, 1,
        "only the job that found the CP asleep rings"
    );
    for want in std::iter::once(first).chain(rest) {
        let c = b
            .wait_completion(Duration::from_secs(5))
            .expect("completion");
        assert_eq!((c.seqno, c.status), (want, 0));
    }
    // Idle again: the next job must ring, and runs.
    wait_idle(&b);
    let s = b.submit_raw(0, CMD_VA + 128, 64, 0);
    assert_eq!(b.doorbells, 2);
    assert_eq!(
        b.wait_completion(Duration::from_secs(5))
            .expect("last")
            .seqno,
        s
    );
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
            let c = b
                .wait_completion(Duration::from_secs(5))
                .expect("a job was lost");
            assert_eq!(Some(c.seqno), queued.pop_front());
        }
        if rng.range(0, 50) == 0 {
            std::thread::sleep(Duration::from_micros(rng.range(0, 300) as u64));
        }
    }
    while let Some(s) = queued.pop_front() {
        assert_eq!(
            b.wait_completion(Duration::from_secs(5))
                .expect("drain")
                .seqno,
            s
        );
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
    let t = Instant::now();
    while b.device.mmio_read(STATUS) & STATUS_HALTED == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "not halted");
        std::thread::sleep(Duration::from_millis(1));
    }
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
