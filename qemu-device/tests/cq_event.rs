//! Completion interrupts by event index (npu-hw.rst, "Completion event
//! index"): with CONTROL.CQ_EVENT, JOB_DONE does not latch and vector 0's
//! message goes out only for a record written at the driver's published
//! completion-ring head. The expectations below come from that rule, not
//! from the model's code.

mod common;
use common::*;
use npu_device::inject::Injector;
use npu_device::regs::*;
use npu_device::testbench::{Bench, EVENT_BOUND};
use npu_device::DeviceConfig;
use npu_isa::*;
use std::time::{Duration, Instant};

const CQ_SIZE: u32 = 64;

fn cfg() -> DeviceConfig {
    DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    }
}

/// A bench with the shadow page, a null job at CMD_VA, and the event
/// mode on (`event`) or off.
fn bench_with(inject: Injector, event: bool) -> Bench {
    let mut b = Bench::with_options(cfg(), 16, 64, CQ_SIZE, inject);
    b.use_shadow(None);
    let control = CONTROL_ENABLE | if event { CONTROL_CQ_EVENT } else { 0 };
    b.device.mmio_write(CONTROL, control);
    assert_eq!(b.device.mmio_read(CONTROL), control);
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    b
}

fn null_job(b: &mut Bench) -> u64 {
    b.submit_raw(0, CMD_VA, INSN_SIZE as u32, 0)
}

/// A job the device refuses (cmdbuf_size 0: BAD_SUBMISSION).
fn bad_job(b: &mut Bench) -> u64 {
    b.submit_raw(0, CMD_VA, 0, 0)
}

fn shadow(b: &Bench) -> u64 {
    b.device.mmio_read(SHADOW_LO) as u64 | (b.device.mmio_read(SHADOW_HI) as u64) << 32
}

/// Publish the driver's completion-ring head in the shadow page.
fn publish_head(b: &Bench, head: u32) {
    b.mem_write(shadow(b) + SHADOW_CQ_HEAD, &head.to_le_bytes());
}

/// Whether the record at free-running index `idx` has been written (its
/// phase bit: 1 in the first pass over the ring, 0 in the second, ...).
fn record_written(b: &Bench, idx: u32) -> bool {
    let base = b.device.mmio_read(CQ_BASE_LO) as u64;
    let at = base + (idx % CQ_SIZE) as u64 * CQ_ENTRY_SIZE + 28;
    let flags = u32::from_le_bytes(b.mem_read(at, 4).try_into().unwrap_or([0; 4]));
    flags & 1 == (idx / CQ_SIZE).is_multiple_of(2) as u32
}

/// Wait until the device has written `n` records. The message a record
/// calls for is sent before CQ_TAIL reads past it.
fn wait_records(b: &Bench, n: u32) {
    b.wait_until("the completion records", |b| {
        b.device.mmio_read(CQ_TAIL) == n
    });
}

#[test]
fn the_capability_and_control_bit() {
    let mut b = bench_with(Injector::default(), true);
    assert_ne!(b.device.mmio_read(CAPS) & CAP_CQ_EVENT, 0, "CAPS.CQ_EVENT");
    assert_eq!(CAP_CQ_EVENT, 1 << 6);
    assert_eq!(CONTROL_CQ_EVENT, 1 << 2);
    // A soft reset clears it; the bench's re-enable writes ENABLE alone.
    b.device.mmio_write(CONTROL, CONTROL_SOFT_RESET);
    assert_eq!(b.device.mmio_read(CONTROL) & CONTROL_CQ_EVENT, 0);
    b.reset();
    assert_eq!(b.device.mmio_read(CONTROL), CONTROL_ENABLE);
}

#[test]
fn a_driver_that_keeps_up_gets_one_message_per_record_and_no_latch() {
    let mut b = bench_with(Injector::default(), true);
    for i in 0..5u32 {
        null_job(&mut b);
        wait_records(&b, i + 1);
        assert_eq!(b.irq.count(VECTOR_JOB), u64::from(i) + 1, "job {i}");
        assert_eq!(b.device.mmio_read(IRQ_STATUS), 0, "JOB_DONE does not latch");
        publish_head(&b, i + 1);
    }
    assert_eq!(b.irq.count(VECTOR_ERROR), 0);
}

#[test]
fn records_written_while_the_driver_is_behind_send_nothing() {
    let mut b = bench_with(Injector::default(), true);
    // The driver consumes nothing: only record 0 is at its head (0).
    for _ in 0..6 {
        null_job(&mut b);
    }
    wait_records(&b, 6);
    assert_eq!(b.irq.count(VECTOR_JOB), 1);
    // It catches up, publishes, looks again: nothing new.
    publish_head(&b, 6);
    assert!(!record_written(&b, 6));
    // The next record is at its head: exactly one message.
    null_job(&mut b);
    wait_records(&b, 7);
    assert_eq!(b.irq.count(VECTOR_JOB), 2);
    // Half-way caught up (head 5 of 7 records, 8th written): none.
    publish_head(&b, 5);
    null_job(&mut b);
    wait_records(&b, 8);
    assert_eq!(b.irq.count(VECTOR_JOB), 2);
    assert_eq!(b.device.mmio_read(IRQ_STATUS), 0);
}

#[test]
fn opting_out_keeps_the_latched_job_done() {
    let mut b = bench_with(Injector::default(), false);
    for _ in 0..4 {
        null_job(&mut b);
    }
    wait_records(&b, 4);
    // One edge, coalesced while pending, whatever the head says.
    assert_eq!(b.irq.count(VECTOR_JOB), 1);
    assert_eq!(b.device.mmio_read(IRQ_STATUS), IRQ_JOB_DONE);
    b.device.mmio_write(IRQ_ACK, IRQ_JOB_DONE);
    assert_eq!(b.device.mmio_read(IRQ_STATUS), 0);
    // Acknowledged, the driver still behind (head 0): the next one sends.
    null_job(&mut b);
    wait_records(&b, 5);
    assert_eq!(b.irq.count(VECTOR_JOB), 2);
}

#[test]
fn faults_stay_latched_on_vector_1() {
    let mut b = bench_with(Injector::default(), true);
    bad_job(&mut b);
    wait_records(&b, 1);
    assert_eq!(
        b.irq.count(VECTOR_JOB),
        0,
        "no vector-0 message for a fault"
    );
    assert_eq!(b.irq.count(VECTOR_ERROR), 1);
    assert_eq!(b.device.mmio_read(IRQ_STATUS), IRQ_JOB_FAULT);
    // Not acknowledged: a second fault is coalesced.
    publish_head(&b, 1);
    bad_job(&mut b);
    wait_records(&b, 2);
    assert_eq!(b.irq.count(VECTOR_ERROR), 1);
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    // A good job after the driver caught up sends on vector 0.
    publish_head(&b, 2);
    null_job(&mut b);
    wait_records(&b, 3);
    assert_eq!(b.irq.count(VECTOR_JOB), 1);
    assert_eq!(b.device.mmio_read(IRQ_STATUS), 0);
}

#[test]
fn a_masked_job_done_sends_nothing_and_nothing_is_pending() {
    let mut b = bench_with(Injector::default(), true);
    b.device.mmio_write(IRQ_MASK, IRQ_ALL & !IRQ_JOB_DONE);
    null_job(&mut b);
    wait_records(&b, 1);
    b.device.mmio_write(IRQ_MASK, IRQ_ALL);
    assert_eq!(b.irq.count(VECTOR_JOB), 0);
    assert_eq!(b.device.mmio_read(IRQ_STATUS), 0);
}

#[test]
fn a_refused_head_keeps_the_last_accepted_one() {
    let mut b = bench_with(Injector::default(), true);
    // Past the tail: refused, reported; the device goes on with head 0.
    publish_head(&b, 0x8000_0000);
    null_job(&mut b);
    wait_records(&b, 1);
    assert_eq!(
        b.device.mmio_read(RING_ERROR) & RING_ERROR_SHADOW_CQ_HEAD,
        RING_ERROR_SHADOW_CQ_HEAD
    );
    assert_eq!(b.device.mmio_read(RING_ERROR_VALUE), 0x8000_0000);
    assert_eq!(b.irq.count(VECTOR_JOB), 1, "record 0 is at head 0");
    assert_eq!(b.device.mmio_read(STATUS) & STATUS_HALTED, 0);
    // Record 1 at the last accepted head 0: nothing.
    null_job(&mut b);
    wait_records(&b, 2);
    assert_eq!(b.irq.count(VECTOR_JOB), 1);
    // A good head again.
    publish_head(&b, 2);
    null_job(&mut b);
    wait_records(&b, 3);
    assert_eq!(b.irq.count(VECTOR_JOB), 2);
}

#[test]
fn injected_drop_and_spurious_messages() {
    let inject =
        Injector::parse(&["drop-irq:nth=1".into(), "spurious-irq:nth=2".into()]).expect("rules");
    let mut b = bench_with(inject, true);
    null_job(&mut b);
    wait_records(&b, 1);
    assert_eq!(b.irq.count(VECTOR_JOB), 0, "dropped");
    assert_eq!(b.device.mmio_read(IRQ_STATUS), 0);
    publish_head(&b, 1);
    null_job(&mut b);
    wait_records(&b, 2);
    assert_eq!(b.irq.count(VECTOR_JOB), 2, "the real one and the extra");
}

/// A driver following the rule (drain, publish the head, full barrier,
/// look again; otherwise sleep until a message) never sleeps through a
/// record, whatever the interleaving with the device's record write and
/// head read. A lost wakeup shows as a wait of EVENT_BOUND.
#[test]
fn no_completion_waits_for_ever() {
    let mut b = bench_with(Injector::default(), true);
    let mut rng = Rng(0x5eed_cafe);
    let total = 3000u32;
    let (mut submitted, mut head, mut sleeps) = (0u32, 0u32, 0u64);
    while head < total {
        // Keep up to a ring's worth queued, in random batches.
        let batch = rng.range(1, 8) as u32;
        while submitted < total && submitted - head < batch.min(CQ_SIZE) {
            null_job(&mut b);
            submitted += 1;
        }
        loop {
            while head < submitted && record_written(&b, head) {
                head += 1;
            }
            let seen = b.irq.count(VECTOR_JOB);
            publish_head(&b, head);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if head < submitted && record_written(&b, head) {
                continue;
            }
            if head == submitted || rng.range(0, 1) == 0 {
                // Some batches are topped up before they are drained.
                break;
            }
            sleeps += 1;
            let deadline = Instant::now() + EVENT_BOUND;
            while b.irq.count(VECTOR_JOB) == seen {
                assert!(
                    Instant::now() < deadline,
                    "record {head} written without a message (tail {})",
                    b.device.mmio_read(CQ_TAIL)
                );
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
    let messages = b.irq.count(VECTOR_JOB);
    println!("{total} jobs, {messages} messages, {sleeps} sleeps");
    assert!(messages <= u64::from(total));
    assert_eq!(b.device.mmio_read(IRQ_STATUS), 0);
}
