//! A transfer's host memory is bounded by the SRAM, not by its shape
//! (regressions found by the fuzz target `cmdbuf`). One test per binary:
//! it caps the address space of the whole process.

mod common;
use common::*;
use npu_isa::*;

/// Cap the address space at its current size plus `extra` bytes.
fn cap_address_space(extra: u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("statm size");
    let limit = pages * 4096 + extra;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
}

#[test]
fn transfers_allocate_no_more_than_the_sram() {
    let mut b = bench();
    // Warm up first, so the CP thread's allocator arena exists before the cap.
    let (c, _) = run_program(
        &mut b,
        &[],
        0,
        &[Insn::Fill {
            dst: 0,
            len: 64,
            pattern: 1,
        }],
    );
    assert_eq!(c.fault(), Some(Fault::Ok));
    cap_address_space(160 << 20);
    // An empty DMA_LOAD (no planes) allocated a row buffer of shape[0]: 4 GiB.
    let empty = Strided {
        shape: [u32::MAX, 1, 0],
        stride: [0, 0],
    };
    // Planes that overlap rows: 2046 x 2048 rows of 64 bytes, 256 MiB,
    // were gathered into one buffer, though they all lie in 256 KiB.
    let overlapping = Strided {
        shape: [64, 2048, 2046],
        stride: [64, 64],
    };
    let prog = [
        Insn::DmaLoad {
            va: IN_VA,
            sram: 0,
            mem: empty,
            sram_layout: empty,
        },
        Insn::Fill {
            dst: 0,
            len: 64,
            pattern: 0x0101_0101,
        },
        Insn::Fill {
            dst: 64,
            len: 64 * 4095,
            pattern: 0,
        },
        Insn::Copy {
            src: 0,
            dst: 64,
            src_layout: overlapping,
            dst_layout: overlapping,
        },
        store(OUT_VA, 64, 128),
    ];
    let (c, out) = run_program(&mut b, &[], 128, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    // Each row moves up one, all read before any is written: row 0's ones
    // land in row 1 only, not on down the SRAM.
    assert_eq!(out, [[1u8; 64], [0u8; 64]].concat());
}
