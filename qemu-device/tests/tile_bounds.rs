//! Tile bounds: a tile with zero rows or columns touches nothing, whatever
//! the other dimension and ld say, and a huge one faults instead of
//! wrapping around (regressions found by the fuzz target `cmdbuf`).

mod common;
use common::*;
use npu_isa::*;
use std::time::{Duration, Instant};

fn binary(rows: u32, cols: u32, ld: u32) -> Insn {
    let t = tile(0, ld);
    Insn::Binary {
        op: BinaryOp::Add,
        dtype: DType::F32,
        bcast: Broadcast::None,
        rows,
        cols,
        a: t,
        b: t,
        out: t,
        scalar: 0,
    }
}

#[test]
fn zero_column_tiles_with_huge_row_counts_end_at_once() {
    let mut b = bench();
    // Before the fix, ld = 16 put row offsets past the SRAM (the CP thread
    // panicked and the job never completed) and ld = 0 looped 2^32 times.
    let prog = [
        binary(u32::MAX, 0, 16),
        binary(u32::MAX, 0, 0),
        Insn::Unary {
            op: UnaryOp::Move,
            dtype: DType::I8,
            rows: u32::MAX,
            cols: 0,
            src: tile(0, 64),
            dst: tile(64, 64),
            lo: 0,
            hi: 0,
        },
        Insn::Reduce {
            op: ReduceOp::Sum,
            axis: Axis::Rows,
            dtype: DType::I32,
            rows: u32::MAX,
            cols: 0,
            src: tile(0, 8),
            dst: 0,
        },
        Insn::Matmul {
            dtype: DType::I8,
            accumulate: true,
            transpose_b: false,
            m: u32::MAX,
            n: 0,
            k: 0,
            a: tile(0, 4),
            b: tile(0, 4),
            c: tile(0, 4),
        },
        Insn::End,
    ];
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&prog));
    let t = Instant::now();
    b.submit_raw(0, CMD_VA, (prog.len() * INSN_SIZE) as u32, 0);
    let c = b
        .wait_completion(Duration::from_secs(5))
        .expect("the job did not complete in 5 s");
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_zero_row_reduce_along_rows_still_writes_its_identity() {
    // The empty source does not shrink the result vector: one value per column.
    let mut b = bench();
    let prog = [
        Insn::Fill {
            dst: 0,
            len: 16,
            pattern: 0x7777_7777,
        },
        Insn::Reduce {
            op: ReduceOp::Sum,
            axis: Axis::Rows,
            dtype: DType::I32,
            rows: 0,
            cols: 4,
            src: tile(64, 4),
            dst: 0,
        },
        store(OUT_VA, 0, 16),
    ];
    let (c, out) = run_program(&mut b, &[], 16, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    assert_eq!(bytes_i32(&out), vec![0; 4]);
}

#[test]
fn a_tile_span_beyond_u64_is_an_sram_range_fault() {
    // (2^31 rows - 1) * ld 2^31 + 1 elements of 4 bytes is 2^64 + 4 bytes:
    // wrapped, it looked like a 4-byte tile at 0 and passed the SRAM check.
    let mut b = bench();
    let t = tile(0, 1 << 31);
    let insn = Insn::Unary {
        op: UnaryOp::Move,
        dtype: DType::F32,
        rows: (1 << 31) + 1,
        cols: 1,
        src: t,
        dst: t,
        lo: 0,
        hi: 0,
    };
    b.map(0, CMD_VA, 4096, false);
    b.write(0, CMD_VA, &assemble(&[insn, Insn::End]));
    b.submit_raw(0, CMD_VA, 2 * INSN_SIZE as u32, 0);
    let c = b
        .wait_completion(Duration::from_secs(5))
        .expect("the job did not complete in 5 s");
    assert_eq!(
        (c.fault(), c.fault_addr),
        (Some(Fault::SramRange), 0),
        "{c:?}"
    );
}
