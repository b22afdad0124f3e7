//! Every fault path, ring wrap-around, interrupts, reset and injection.

mod common;
use common::*;
use npu_device::inject::Injector;
use npu_device::regs::*;
use npu_device::testbench::{Bench, EVENT_BOUND};
use npu_device::DeviceConfig;
use npu_isa::*;
use std::time::Duration;

fn expect_fault(b: &mut Bench, prog: &[Insn], fault: Fault) -> npu_device::testbench::Completion {
    let (c, _) = run_program(b, &[0u8; 64], 64, prog);
    assert_eq!(c.fault(), Some(fault), "completion {c:?}");
    assert_eq!(b.device.mmio_read(FAULT_STATUS), fault.code());
    c
}

#[test]
fn bad_opcode_reports_its_offset_and_raises_the_error_vector() {
    let mut b = bench();
    let mut cmd = assemble(&[Insn::Nop, Insn::Nop, Insn::End]);
    cmd[64] = 0x7e;
    let c = b.run(0, CMD_VA, &cmd);
    assert_eq!(c.fault(), Some(Fault::BadOpcode));
    assert_eq!(c.fault_addr, 64);
    assert_eq!(b.irq.count(VECTOR_ERROR), 1);
    assert_eq!(b.irq.count(VECTOR_JOB), 0);
}

#[test]
fn unmapped_access_is_an_mmu_fault_with_the_address() {
    let mut b = bench();
    let c = expect_fault(&mut b, &[load(0x7000_0000, 0, 16)], Fault::MmuUnmapped);
    assert_eq!(c.fault_addr, 0x7000_0000);
    assert_eq!(b.device.mmio_read(FAULT_ADDR_LO), 0x7000_0000);
    assert_eq!(b.device.mmio_read(FAULT_CONTEXT), 0);
}

#[test]
fn writing_a_read_only_page_faults_and_leaves_it_unchanged() {
    let mut b = bench();
    b.map(0, 0x80_0000, 4096, false);
    b.write(0, 0x80_0000, &[0xaa; 16]);
    let c = expect_fault(
        &mut b,
        &[
            Insn::Fill {
                dst: 0,
                len: 16,
                pattern: 0,
            },
            store(0x80_0000, 0, 16),
        ],
        Fault::MmuPermission,
    );
    assert_eq!(c.fault_addr, 0x80_0000);
    assert_eq!(b.read(0, 0x80_0000, 16), vec![0xaa; 16]);
}

#[test]
fn a_store_straddling_into_an_unmapped_page_writes_nothing() {
    let mut b = bench();
    b.map(0, 0x80_0000, 4096, true);
    let c = expect_fault(
        &mut b,
        &[
            Insn::Fill {
                dst: 0,
                len: 32,
                pattern: 0x11111111,
            },
            store(0x80_0000 + 4096 - 16, 0, 32),
        ],
        Fault::MmuUnmapped,
    );
    assert_eq!(c.fault_addr, 0x80_1000);
    assert_eq!(b.read(0, 0x80_0000 + 4096 - 16, 16), vec![0; 16]);
}

#[test]
fn virtual_address_beyond_39_bits() {
    let mut b = bench();
    let c = expect_fault(&mut b, &[load(1 << 39, 0, 4)], Fault::MmuVaRange);
    assert_eq!(c.fault_addr, 1 << 39);
}

#[test]
fn sram_ranges_are_checked() {
    let mut b = bench();
    let sram = 256 * 1024;
    expect_fault(&mut b, &[load(IN_VA, sram - 8, 16)], Fault::SramRange);
    expect_fault(
        &mut b,
        &[Insn::Fill {
            dst: sram,
            len: 4,
            pattern: 0,
        }],
        Fault::SramRange,
    );
    expect_fault(
        &mut b,
        &[Insn::Fill {
            dst: u32::MAX - 3,
            len: 8,
            pattern: 0,
        }],
        Fault::SramRange,
    );
    let huge = Insn::Matmul {
        dtype: DType::F32,
        accumulate: false,
        transpose_b: false,
        m: 1 << 20,
        n: 1 << 20,
        k: 1,
        a: tile(0, 1),
        b: tile(0, 1 << 20),
        c: tile(0, 1 << 20),
    };
    expect_fault(&mut b, &[huge], Fault::SramRange);
}

#[test]
fn misaligned_and_malformed_operands() {
    let mut b = bench();
    expect_fault(
        &mut b,
        &[Insn::Fill {
            dst: 2,
            len: 4,
            pattern: 0,
        }],
        Fault::BadOperand,
    );
    let mm = Insn::Matmul {
        dtype: DType::F32,
        accumulate: false,
        transpose_b: false,
        m: 2,
        n: 2,
        k: 2,
        a: tile(1, 2),
        b: tile(0, 2),
        c: tile(64, 2),
    };
    expect_fault(&mut b, &[mm], Fault::BadOperand);
    // ld smaller than the row length.
    let un = Insn::Unary {
        op: UnaryOp::Relu,
        dtype: DType::F32,
        rows: 2,
        cols: 4,
        src: tile(0, 2),
        dst: tile(64, 4),
        lo: 0,
        hi: 0,
    };
    expect_fault(&mut b, &[un], Fault::BadOperand);
    let geom = PoolGeom {
        channels: 1,
        in_h: 4,
        in_w: 4,
        out_h: 9,
        out_w: 9,
        kernel: [2, 2],
        stride: [1, 1],
        pad: [0, 0],
    };
    expect_fault(
        &mut b,
        &[Insn::Pool {
            op: PoolOp::Max,
            geom,
            src: 0,
            dst: 256,
        }],
        Fault::BadOperand,
    );
}

#[test]
fn missing_end_is_an_overrun() {
    let mut b = bench();
    let c = b.run(0, CMD_VA, &assemble(&[Insn::Nop, Insn::Nop]));
    assert_eq!(c.fault(), Some(Fault::CmdbufOverrun));
}

#[test]
fn bad_context_and_bad_submission() {
    let mut b = bench();
    b.map(0, CMD_VA, 64, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    // Context 1 has no valid descriptor; context 99 is out of range.
    for (ctx, size, flags, want) in [
        (1u16, 64u32, 0u16, Fault::BadContext),
        (99, 64, 0, Fault::BadContext),
        (0, 65, 0, Fault::BadSubmission),
        // Flag bits other than PROFILE (bit 0, tests/rings.rs).
        (0, 64, 2, Fault::BadSubmission),
        (0, 64, 0x8000, Fault::BadSubmission),
        (0, 0, 0, Fault::BadSubmission),
    ] {
        b.submit_raw(ctx, CMD_VA, size, flags);
        let c = b.wait_completion(EVENT_BOUND).expect("completion");
        assert_eq!(c.fault(), Some(want), "ctx {ctx} size {size} flags {flags}");
    }
}

#[test]
fn contexts_are_isolated() {
    let mut b = bench();
    b.enable_context(1);
    // Context 0 owns a buffer at 0x90_0000; context 1 has nothing there.
    b.map(0, 0x90_0000, 4096, true);
    b.write(0, 0x90_0000, &[0x5a; 64]);
    b.map(1, CMD_VA, 64 * 3, false);
    b.write(
        1,
        CMD_VA,
        &assemble(&[load(0x90_0000, 0, 64), store(0x90_0000, 0, 64), Insn::End]),
    );
    b.submit_raw(1, CMD_VA, 192, 0);
    let c = b.wait_completion(EVENT_BOUND).expect("completion");
    assert_eq!(
        (c.fault(), c.context, c.fault_addr),
        (Some(Fault::MmuUnmapped), 1, 0x90_0000)
    );
    assert_eq!(b.read(0, 0x90_0000, 64), vec![0x5a; 64]);
}

#[test]
fn rings_wrap_around_with_phase_bits() {
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    let mut b = Bench::with_options(cfg, 16, 4, 2, Injector::default());
    b.map(0, CMD_VA, 64, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    for round in 0..11 {
        let seqno = b.submit_raw(0, CMD_VA, 64, 0);
        let c = b.wait_completion(EVENT_BOUND).expect("completion");
        assert_eq!((c.seqno, c.status), (seqno, 0), "round {round}");
        b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    }
    assert_eq!(b.device.mmio_read(CQ_TAIL), 11);
    assert_eq!(b.device.mmio_read(SQ_HEAD), 11);
}

#[test]
fn a_full_completion_ring_stalls_until_released() {
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    let mut b = Bench::with_options(cfg, 16, 8, 2, Injector::default());
    // With a shadow page the CP publishes where it stopped (SQ_EVENT) when
    // it cannot go on: that is the event to wait for, not time.
    b.use_shadow(None);
    b.map(0, CMD_VA, 64, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    // Queue all three while disabled, so the CP never sees a tail of 2.
    b.device.mmio_write(CONTROL, 0);
    for _ in 0..3 {
        b.submit_raw(0, CMD_VA, 64, 0);
    }
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    // Stopped at entry 2 with entry 3 queued: the full completion ring.
    b.wait_until("the CP to stop at entry 2", |b| b.shadow_event() == 2);
    // Two records fit; the third job waits for CQ_HEAD to move.
    assert_eq!(b.device.mmio_read(CQ_TAIL), 2);
    assert_eq!(b.device.mmio_read(SQ_HEAD), 2);
    for _ in 0..3 {
        assert!(b.wait_completion(EVENT_BOUND).is_some());
    }
    assert_eq!(b.device.mmio_read(CQ_TAIL), 3);
}

#[test]
fn interrupts_coalesce_until_acknowledged() {
    let mut b = bench();
    b.map(0, CMD_VA, 64, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    for _ in 0..3 {
        b.submit_raw(0, CMD_VA, 64, 0);
    }
    for _ in 0..3 {
        b.wait_completion(EVENT_BOUND).expect("completion");
    }
    // JOB_DONE stayed pending between jobs: one message for three jobs.
    assert_eq!(b.irq.count(VECTOR_JOB), 1);
    assert_eq!(b.device.mmio_read(IRQ_STATUS) & IRQ_JOB_DONE, IRQ_JOB_DONE);
    b.device.mmio_write(IRQ_ACK, IRQ_JOB_DONE);
    b.submit_raw(0, CMD_VA, 64, 0);
    b.wait_completion(EVENT_BOUND).expect("completion");
    assert_eq!(b.irq.count(VECTOR_JOB), 2);
    // Masked causes are recorded but not sent; unmasking sends them.
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    b.device.mmio_write(IRQ_MASK, 0);
    b.submit_raw(0, CMD_VA, 64, 0);
    b.wait_completion(EVENT_BOUND).expect("completion");
    assert_eq!(b.irq.count(VECTOR_JOB), 2);
    b.device.mmio_write(IRQ_MASK, IRQ_ALL);
    assert_eq!(b.irq.count(VECTOR_JOB), 3);
}

#[test]
fn invalid_ring_setup_halts_the_device() {
    let b = bench();
    b.device.mmio_write(CONTROL, 0);
    b.device.mmio_write(SQ_SIZE, 3);
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    assert_eq!(b.device.mmio_read(STATUS) & STATUS_HALTED, STATUS_HALTED);
    assert_eq!(b.irq.count(VECTOR_ERROR), 1);
}

#[test]
fn reset_aborts_a_hung_job_and_the_device_recovers() {
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    let inject = Injector::parse(&["hang:tag=7".to_string()]).expect("rule");
    let mut b = Bench::with_options(cfg, 16, 8, 8, inject);
    b.map(0, CMD_VA, 128, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 7 }, Insn::End]));
    b.map(0, CMD_VA + 4096, 64, false);
    b.write(0, CMD_VA + 4096, &assemble(&[Insn::End]));
    b.submit_raw(0, CMD_VA, 128, 0);
    b.submit_raw(0, CMD_VA + 4096, 64, 0);
    // The injector counts the job when it has run; BUSY clears when the
    // CP is done with it (here: hangs instead of completing).
    let inj = b.device.injector();
    let jobs = || inj.lock().expect("injector").jobs();
    b.wait_until("the CP to finish the hung job", |b| {
        jobs() == 1 && b.device.mmio_read(STATUS) & STATUS_BUSY == 0
    });
    assert_eq!(
        b.device.mmio_read(SQ_HEAD),
        0,
        "a hung job does not advance SQ_HEAD"
    );
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    assert!(
        b.wait_completion(Duration::ZERO).is_none(),
        "a hung job must not complete"
    );
    b.reset();
    assert_eq!(b.device.mmio_read(SQ_HEAD), 0);
    let seqno = b.submit_raw(0, CMD_VA + 4096, 64, 0);
    let c = b
        .wait_completion(EVENT_BOUND)
        .expect("the device works after reset");
    assert_eq!((c.seqno, c.status), (seqno, 0));
    // The job queued behind the hung one never ran.
    assert_eq!(jobs(), 2, "the CP took a job while hung");
}

#[test]
fn reset_mid_job_discards_its_completion() {
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    // Ten minutes: only the reset can end this job in time.
    let inject = Injector::parse(&["delay=600000:tag=1".to_string()]).expect("rule");
    let mut b = Bench::with_options(cfg, 16, 8, 8, inject);
    b.map(0, CMD_VA, 128, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 1 }, Insn::End]));
    b.map(0, CMD_VA + 4096, 64, false);
    b.write(0, CMD_VA + 4096, &assemble(&[Insn::End]));
    b.submit_raw(0, CMD_VA, 128, 0);
    b.wait_until("the CP to take the job", |b| {
        b.device.mmio_read(STATUS) & STATUS_BUSY != 0
    });
    b.reset();
    // The CP runs jobs in order: the next job's record is the first one
    // written after the reset, so the aborted job wrote none.
    let seqno = b.submit_raw(0, CMD_VA + 4096, 64, 0);
    let c = b
        .wait_completion(EVENT_BOUND)
        .expect("the reset did not end the delayed job");
    assert_eq!(
        (c.seqno, c.status),
        (seqno, 0),
        "an aborted job writes no record"
    );
    assert_eq!(b.device.mmio_read(CQ_TAIL), 1);
}

#[test]
fn injected_faults_do_what_they_say() {
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    let rules = [
        "mmu-fault:nth=1",
        "drop-irq:nth=2",
        "corrupt-completion:nth=3",
    ]
    .map(String::from);
    let mut b = Bench::with_options(cfg, 16, 8, 8, Injector::parse(&rules).expect("rules"));
    b.map(0, CMD_VA, 64, false);
    b.write(0, CMD_VA, &assemble(&[Insn::End]));
    let s1 = b.submit_raw(0, CMD_VA, 64, 0);
    let c = b.wait_completion(EVENT_BOUND).expect("1");
    assert_eq!(
        (c.seqno, c.fault(), c.fault_addr),
        (s1, Some(Fault::MmuUnmapped), 0xdead000)
    );
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    let before = b.irq.count(VECTOR_JOB);
    let s2 = b.submit_raw(0, CMD_VA, 64, 0);
    let c = b.wait_completion(EVENT_BOUND).expect("2");
    assert_eq!((c.seqno, c.status), (s2, 0));
    assert_eq!(b.irq.count(VECTOR_JOB), before, "interrupt dropped");
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    let s3 = b.submit_raw(0, CMD_VA, 64, 0);
    let c = b.wait_completion(EVENT_BOUND).expect("3");
    assert_ne!(c.seqno, s3);
    assert!(Fault::from_code(c.status).is_none());
}

#[test]
fn bad_injection_rules_are_rejected_with_a_reason() {
    for bad in [
        "explode",
        "hang:tag=x",
        "delay",
        "hang:prob=2",
        "hang:every=0",
    ] {
        let e = Injector::parse(&[bad.to_string()])
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn reprogramming_the_rings_under_a_running_job_halts_instead_of_crashing() {
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    // The job runs 2 s after it is taken: the two register writes below
    // land inside it.
    let inject = Injector::parse(&["delay=2000:tag=1".to_string()]).expect("rule");
    let mut b = Bench::with_options(cfg, 16, 8, 8, inject);
    b.map(0, CMD_VA, 128, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 1 }, Insn::End]));
    b.submit_raw(0, CMD_VA, 128, 0);
    b.wait_until("the CP to take the job", |b| {
        b.device.mmio_read(STATUS) & STATUS_BUSY != 0
    });
    // Disable (not reset) mid-job, then make the completion ring invalid.
    b.device.mmio_write(CONTROL, 0);
    b.device.mmio_write(CQ_SIZE, 0);
    assert_eq!(
        b.device.mmio_read(CQ_TAIL),
        0,
        "the job ended before the rings were reprogrammed"
    );
    // The job ends, finds the completion ring invalid, and halts.
    b.wait_until("HALTED", |b| {
        b.device.mmio_read(STATUS) & STATUS_HALTED != 0
    });
    // The command processor survived: a reset brings the device back.
    b.reset();
    b.map(0, CMD_VA + 4096, 64, false);
    b.write(0, CMD_VA + 4096, &assemble(&[Insn::End]));
    let seqno = b.submit_raw(0, CMD_VA + 4096, 64, 0);
    let c = b
        .wait_completion(EVENT_BOUND)
        .expect("device works after reset");
    assert_eq!((c.seqno, c.status), (seqno, 0));
}

#[test]
fn ring_bases_at_the_top_of_the_address_space_halt_the_device() {
    let b = bench();
    b.device.mmio_write(CONTROL, 0);
    b.device.mmio_write(SQ_BASE_LO, 0xffff_f000);
    b.device.mmio_write(SQ_BASE_HI, 0xffff_ffff);
    b.device.mmio_write(CONTROL, CONTROL_ENABLE);
    // Entry 0 is not in host memory (later entries would wrap past 2^64).
    b.device.mmio_write(DOORBELL, 1);
    b.wait_until("HALTED", |b| {
        b.device.mmio_read(STATUS) & STATUS_HALTED != 0
    });
    assert_eq!(b.irq.count(VECTOR_ERROR), 1);
}

#[test]
fn prob_trigger_is_reproducible_from_its_seed() {
    let fires = |rule: &str| -> Vec<bool> {
        let mut inj = Injector::parse(&[rule.to_string()]).expect("rule");
        (0..64).map(|_| inj.on_job(&[]).is_some()).collect()
    };
    let a = fires("hang:prob=0.5,seed=42");
    assert_eq!(a, fires("hang:prob=0.5,seed=42"));
    assert_ne!(a, fires("hang:prob=0.5,seed=43"));
    assert!(a.iter().any(|&f| f) && a.iter().any(|&f| !f));
    assert!(Injector::parse(&["hang:nth=1,seed=3".to_string()]).is_err());
}

#[test]
fn control_lines_arm_and_clear_rules_in_a_running_device() {
    use npu_device::inject::control_line;
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    let mut b = Bench::with_options(cfg, 16, 8, 8, Injector::default());
    assert_eq!(b.device.mmio_read(CAPS) & CAP_FAULT_INJECTION, 0);
    let inj = b.device.injector();
    let ctl = |line: &str| control_line(&mut inj.lock().expect("lock"), line);
    assert_eq!(ctl("inject mmu-fault:tag=5"), "ok");
    assert!(ctl("inject explode").starts_with("error: "));
    assert!(ctl("frobnicate").starts_with("error: "));
    assert_eq!(ctl("list"), "ok mmu-fault:tag=5");
    assert_eq!(
        b.device.mmio_read(CAPS) & CAP_FAULT_INJECTION,
        CAP_FAULT_INJECTION
    );
    b.map(0, CMD_VA, 128, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 5 }, Insn::End]));
    let s = b.submit_raw(0, CMD_VA, 128, 0);
    let c = b.wait_completion(EVENT_BOUND).expect("faulted job");
    assert_eq!((c.seqno, c.fault()), (s, Some(Fault::MmuUnmapped)));
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    assert_eq!(ctl("clear"), "ok");
    assert_eq!(ctl("list"), "ok");
    let s = b.submit_raw(0, CMD_VA, 128, 0);
    let c = b.wait_completion(EVENT_BOUND).expect("clean job");
    assert_eq!((c.seqno, c.status), (s, 0));
}

/// The control socket's `clear` ends a delay in progress: the held job
/// completes at once (not after its hour), and the next job runs.
#[test]
fn clear_ends_a_delay_in_progress() {
    use npu_device::device::control;
    let cfg = DeviceConfig {
        sram_size: 64 * 1024,
        contexts: 2,
        ..Default::default()
    };
    let mut b = Bench::with_options(cfg, 16, 8, 8, Injector::default());
    let (inj, delays) = (b.device.injector(), b.device.delay_ender());
    assert_eq!(control(&inj, &delays, "inject delay=3600000:tag=3"), "ok");
    b.map(0, CMD_VA, 128, false);
    b.write(0, CMD_VA, &assemble(&[Insn::Mark { tag: 3 }, Insn::End]));
    let held = b.submit_raw(0, CMD_VA, 128, 0);
    let after = b.submit_raw(0, CMD_VA + 64, 64, 0);
    b.wait_until("the held job running", |b| {
        b.device.mmio_read(STATUS) & STATUS_BUSY != 0
    });
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    // `list` leaves it held; `clear` releases it.
    assert_eq!(control(&inj, &delays, "list"), "ok delay=3600000:tag=3");
    assert_eq!(b.device.mmio_read(CQ_TAIL), 0);
    assert_eq!(control(&inj, &delays, "clear"), "ok");
    for want in [held, after] {
        let c = b.wait_completion(EVENT_BOUND).expect("released job");
        assert_eq!((c.seqno, c.status), (want, 0));
    }
}

/// 16-byte rows every 1024 bytes: four in the mapped page at 0x80_0000,
/// the rest in the unmapped page after it.
const SHORT_ROWS: Strided = Strided {
    shape: [16, 8, 1],
    stride: [1024, 1024 * 8],
};

#[test]
fn a_strided_load_into_an_unmapped_page_moves_the_rows_before_it() {
    let mut b = bench();
    b.map(0, 0x80_0000, 4096, false);
    let page: Vec<u8> = (0..4096u32).map(|i| (i / 16) as u8).collect();
    b.write(0, 0x80_0000, &page);
    let dense = Strided {
        shape: [16, 8, 1],
        stride: [16, 128],
    };
    let c = expect_fault(
        &mut b,
        &[
            Insn::Fill {
                dst: 0,
                len: 128,
                pattern: 0xeeee_eeee,
            },
            Insn::DmaLoad {
                va: 0x80_0000,
                sram: 0,
                mem: SHORT_ROWS,
                sram_layout: dense,
            },
        ],
        Fault::MmuUnmapped,
    );
    // The spec: the first row of the unmapped page faults, the rows before
    // it have taken effect, the rows after it have not.
    assert_eq!(c.fault_addr, 0x80_1000);
    let (c, out) = run_program(&mut b, &[], 128, &[store(OUT_VA, 0, 128)]);
    assert_eq!(c.fault(), Some(Fault::Ok));
    let mut want = Vec::new();
    for r in 0..4u8 {
        want.extend([r * 64; 16]); // byte 1024 * r holds (1024 * r) / 16
    }
    want.extend([0xee; 64]);
    assert_eq!(out, want);
}

#[test]
fn a_strided_store_into_an_unmapped_page_writes_the_rows_before_it() {
    let mut b = bench();
    b.map(0, 0x80_0000, 4096, true);
    let sram: Vec<u8> = (0..128u32).map(|i| (i / 16 + 1) as u8).collect();
    let c = {
        // Not IN_VA: expect_fault writes its own input there.
        b.map(0, 0x90_0000, 128, false);
        b.write(0, 0x90_0000, &sram);
        expect_fault(
            &mut b,
            &[
                load(0x90_0000, 0, 128),
                Insn::DmaStore {
                    va: 0x80_0000,
                    sram: 0,
                    mem: SHORT_ROWS,
                    sram_layout: Strided {
                        shape: [16, 8, 1],
                        stride: [16, 128],
                    },
                },
            ],
            Fault::MmuUnmapped,
        )
    };
    assert_eq!(c.fault_addr, 0x80_1000);
    let got = b.read(0, 0x80_0000, 4096);
    for (i, &v) in got.iter().enumerate() {
        let want = if i % 1024 < 16 {
            (i / 1024 + 1) as u8
        } else {
            0
        };
        assert_eq!(v, want, "byte {i}");
    }
}

#[test]
fn a_load_row_running_into_an_unmapped_page_leaves_the_sram_as_it_was() {
    // One 8 KiB row: its first page mapped, its second not. The row is
    // all or nothing: the fault at the second page, the SRAM untouched
    // (the pattern FILL wrote), then a row in one mapped page loads.
    let mut b = bench();
    b.map(0, 0x80_0000, 4096, false);
    b.write(0, 0x80_0000, &[0x5a; 4096]);
    let c = expect_fault(
        &mut b,
        &[
            Insn::Fill {
                dst: 0,
                len: 8192,
                pattern: 0xeeee_eeee,
            },
            load(0x80_0000, 0, 8192),
        ],
        Fault::MmuUnmapped,
    );
    assert_eq!(c.fault_addr, 0x80_1000);
    let (c, out) = run_program(&mut b, &[], 8192, &[store(OUT_VA, 0, 8192)]);
    assert_eq!(c.fault(), Some(Fault::Ok));
    assert!(out.iter().all(|&x| x == 0xee), "the SRAM changed");
    // Across two mapped pages: every byte arrives.
    b.map(0, 0x81_0000, 8192, false);
    let row: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    b.write(0, 0x81_0000, &row);
    let (c, out) = run_program(
        &mut b,
        &[],
        8192,
        &[load(0x81_0000 + 100, 0, 8000), store(OUT_VA, 0, 8000)],
    );
    assert_eq!(c.fault(), Some(Fault::Ok));
    let bad = out[..8000]
        .iter()
        .zip(&row[100..8100])
        .position(|(a, b)| a != b);
    assert_eq!(bad, None, "first wrong byte");
}
