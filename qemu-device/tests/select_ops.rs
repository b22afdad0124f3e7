//! BINARY F 7..15 (comparisons and logic, writing masks) and SELECT
//! (opcode 0x34), checked against npu-hw.rst's "Comparisons and select":
//! hand-computed masks with NaN, -0, infinities and i32 extremes, every
//! broadcast mode of SELECT against the spec's formula, overlapping
//! operands, the cost model, and the faults of hostile operands.

mod common;
use common::*;
use npu_device::testbench::Completion;
use npu_isa::*;

const T: u32 = 0x3f80_0000; // 1.0: true
const F: u32 = 0; // +0.0: false

fn words(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn to_words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn f32_words(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// BINARY `op` of `a` and `b` (1 x n, no broadcast); the output's words.
fn compare(op: BinaryOp, dtype: DType, a: &[u32], b: &[u32]) -> Vec<u32> {
    let n = a.len() as u32;
    let bytes = n * 4;
    let mut input = a.to_vec();
    input.extend_from_slice(b);
    let prog = [
        load(IN_VA, 0, 2 * bytes),
        Insn::Binary {
            op,
            dtype,
            bcast: Broadcast::None,
            rows: 1,
            cols: n,
            a: tile(0, n),
            b: tile(bytes, n),
            out: tile(4096, n),
            scalar: 0,
        },
        store(OUT_VA, 4096, bytes),
    ];
    let (c, out) = run_program(&mut bench(), &words(&input), bytes as usize, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{op:?}: {c:?}");
    to_words(&out)
}

fn masks(bits: &[u8]) -> Vec<u32> {
    bits.iter().map(|&b| if b == 1 { T } else { F }).collect()
}

#[test]
fn f32_comparisons_follow_ieee() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let a = f32_words(&[1.0, 2.0, nan, -0.0, inf, -inf, 3.0, nan, 5.0]);
    let b = f32_words(&[2.0, 2.0, 1.0, 0.0, inf, 5.0, nan, nan, -1.0]);
    #[rustfmt::skip]
    let cases: [(BinaryOp, [u8; 9]); 6] = [
        (BinaryOp::Eq, [0, 1, 0, 1, 1, 0, 0, 0, 0]),
        (BinaryOp::Ne, [1, 0, 1, 0, 0, 1, 1, 1, 1]),
        (BinaryOp::Lt, [1, 0, 0, 0, 0, 1, 0, 0, 0]),
        (BinaryOp::Le, [1, 1, 0, 1, 1, 1, 0, 0, 0]),
        (BinaryOp::Gt, [0, 0, 0, 0, 0, 0, 0, 0, 1]),
        (BinaryOp::Ge, [0, 1, 0, 1, 1, 0, 0, 0, 1]),
    ];
    for (op, want) in cases {
        assert_eq!(compare(op, DType::F32, &a, &b), masks(&want), "{op:?}");
    }
}

#[test]
fn f32_logic_reads_not_zero_as_true() {
    let nan = f32::NAN;
    // a true: F F T T F T T F; b true: F T F T T F F T (-0 is false, NaN true).
    let a = f32_words(&[0.0, 0.0, 1.0, 1.0, -0.0, nan, 2.5, 0.0]);
    let b = f32_words(&[0.0, 1.0, 0.0, 1.0, 1.0, 0.0, -0.0, nan]);
    for (op, want) in [
        (BinaryOp::And, [0, 0, 0, 1, 0, 0, 0, 0]),
        (BinaryOp::Or, [0, 1, 1, 1, 1, 1, 1, 1]),
        (BinaryOp::Xor, [0, 1, 1, 0, 1, 1, 1, 1]),
    ] {
        assert_eq!(compare(op, DType::F32, &a, &b), masks(&want), "{op:?}");
    }
    // not, as eq with a scalar 0 on a mask.
    let prog = [
        load(IN_VA, 0, 16),
        Insn::Binary {
            op: BinaryOp::Eq,
            dtype: DType::F32,
            bcast: Broadcast::Scalar,
            rows: 2,
            cols: 2,
            a: tile(0, 2),
            b: tile(0, 0),
            out: tile(0, 2),
            scalar: 0,
        },
        store(OUT_VA, 0, 16),
    ];
    let (c, out) = run_program(&mut bench(), &words(&[T, F, F, T]), 16, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok));
    assert_eq!(to_words(&out), [F, T, T, F]);
}

#[test]
fn i32_comparisons_are_signed_and_write_f32_masks() {
    let a = [-1, 0, 5, i32::MIN, i32::MAX, 7].map(|x: i32| x as u32);
    let b = [0, 0, -5, i32::MAX, i32::MIN, 7].map(|x: i32| x as u32);
    #[rustfmt::skip]
    let cases: [(BinaryOp, [u8; 6]); 9] = [
        (BinaryOp::Eq, [0, 1, 0, 0, 0, 1]),
        (BinaryOp::Ne, [1, 0, 1, 1, 1, 0]),
        (BinaryOp::Lt, [1, 0, 0, 1, 0, 0]),
        (BinaryOp::Le, [1, 1, 0, 1, 0, 1]),
        (BinaryOp::Gt, [0, 0, 1, 0, 1, 0]),
        (BinaryOp::Ge, [0, 1, 1, 0, 1, 1]),
        // a true: T F T T T T (i32::MIN is not 0, unlike f32 -0 with the
        // same bits); b true: F F T T T T.
        (BinaryOp::And, [0, 0, 1, 1, 1, 1]),
        (BinaryOp::Or, [1, 0, 1, 1, 1, 1]),
        (BinaryOp::Xor, [1, 0, 0, 0, 0, 0]),
    ];
    for (op, want) in cases {
        assert_eq!(compare(op, DType::I32, &a, &b), masks(&want), "{op:?}");
    }
}

#[test]
fn comparisons_broadcast_like_the_other_binary_ops() {
    // a 2 x 3: [[1, 2, 3], [4, 5, 6]].
    let a = f32_words(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let run = |bcast: Broadcast, b: &[u32], scalar: u32| {
        let mut input = a.clone();
        input.extend_from_slice(b);
        let prog = [
            load(IN_VA, 0, 4 * input.len() as u32),
            Insn::Binary {
                op: BinaryOp::Lt,
                dtype: DType::F32,
                bcast,
                rows: 2,
                cols: 3,
                a: tile(0, 3),
                b: tile(24, 0),
                out: tile(1024, 3),
                scalar,
            },
            store(OUT_VA, 1024, 24),
        ];
        let (c, out) = run_program(&mut bench(), &words(&input), 24, &prog);
        assert_eq!(c.fault(), Some(Fault::Ok));
        to_words(&out)
    };
    // per row: [2.5, 4.5]
    assert_eq!(
        run(Broadcast::PerRow, &f32_words(&[2.5, 4.5]), 0),
        masks(&[1, 1, 0, 1, 0, 0])
    );
    // per column: [5, 0, 3.5]
    assert_eq!(
        run(Broadcast::PerCol, &f32_words(&[5.0, 0.0, 3.5]), 0),
        masks(&[1, 0, 1, 1, 0, 0])
    );
    // scalar 3.5
    assert_eq!(
        run(Broadcast::Scalar, &[], 3.5f32.to_bits()),
        masks(&[1, 1, 1, 0, 0, 0])
    );
}

// SELECT operands for the tests: cond at 0, a at 1024, b at 2048, out at
// 4096 (tiles 2 x 3 with ld 3; vectors at the same addresses).
const COND: u32 = 0;
const A: u32 = 1024;
const B: u32 = 2048;
const OUT: u32 = 4096;
const MODES: [Broadcast; 4] = [
    Broadcast::None,
    Broadcast::PerRow,
    Broadcast::PerCol,
    Broadcast::Scalar,
];

fn operand(bcast: Broadcast, addr: u32, scalar: u32) -> SelectOperand {
    SelectOperand {
        bcast,
        tile: tile(addr, 3),
        scalar,
    }
}

/// Run one SELECT over SRAM prepared with `sram` (bytes from offset 0); the
/// 2 x 3 output's words.
fn select(sram: &[u8], dtype: DType, ops: [SelectOperand; 3]) -> Vec<u32> {
    let prog = [
        load(IN_VA, 0, sram.len() as u32),
        Insn::Select {
            dtype,
            rows: 2,
            cols: 3,
            cond: ops[0],
            a: ops[1],
            b: ops[2],
            out: tile(OUT, 3),
        },
        store(OUT_VA, OUT, 24),
    ];
    let (c, out) = run_program(&mut bench(), sram, 24, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{ops:?}: {c:?}");
    to_words(&out)
}

fn sram_with(parts: &[(u32, &[u32])]) -> Vec<u8> {
    let mut s = vec![0u8; OUT as usize];
    for (addr, w) in parts {
        s[*addr as usize..][..w.len() * 4].copy_from_slice(&words(w));
    }
    s
}

#[test]
fn select_takes_a_where_the_condition_is_not_zero() {
    let nan_payload = 0x7fc0_0123;
    // cond: 1.0, +0, -0, NaN, 2.0, -1.0 -> a, b, b, a, a, a.
    let cond = f32_words(&[1.0, 0.0, -0.0, f32::NAN, 2.0, -1.0]);
    let a = [nan_payload, 11, 12, (-0.0f32).to_bits(), 14, 15];
    let b = [20, 21, 0x8000_0000, 23, 24, 25];
    let s = sram_with(&[(COND, &cond), (A, &a), (B, &b)]);
    let none = |addr| operand(Broadcast::None, addr, 0);
    let want = [nan_payload, 21, 0x8000_0000, 0x8000_0000, 14, 15];
    for dtype in [DType::F32, DType::I32] {
        assert_eq!(select(&s, dtype, [none(COND), none(A), none(B)]), want);
    }
    // The hand-computed broadcasts: cond per column [0, 1, NaN]; a per row
    // [7, 8]; b the scalar 9.
    let s = sram_with(&[(COND, &f32_words(&[0.0, 1.0, f32::NAN])), (A, &[7, 8])]);
    let got = select(
        &s,
        DType::I32,
        [
            operand(Broadcast::PerCol, COND, 0),
            operand(Broadcast::PerRow, A, 0),
            operand(Broadcast::Scalar, 0, 9),
        ],
    );
    assert_eq!(got, [9, 7, 7, 9, 8, 8]);
    // cond per row [-0, 3]: row 0 from b, row 1 from a; a scalar -inf.
    let s = sram_with(&[(COND, &f32_words(&[-0.0, 3.0])), (B, &[1, 2, 3, 4, 5, 6])]);
    let inf = f32::NEG_INFINITY.to_bits();
    let got = select(
        &s,
        DType::F32,
        [
            operand(Broadcast::PerRow, COND, 0),
            operand(Broadcast::Scalar, 0, inf),
            operand(Broadcast::None, B, 0),
        ],
    );
    assert_eq!(got, [1, 2, 3, inf, inf, inf]);
}

/// Every combination of the three operands' broadcasts against the spec's
/// formula, element by element.
#[test]
fn select_every_broadcast_combination() {
    let cond_tile = f32_words(&[1.0, 0.0, 5.0, -0.0, f32::NAN, 0.0]);
    let a_tile: Vec<u32> = (100..106).collect();
    let b_tile: Vec<u32> = (200..206).collect();
    let s = sram_with(&[(COND, &cond_tile), (A, &a_tile), (B, &b_tile)]);
    // The element an operand contributes at (r, c), by its mode.
    let elem = |mode: Broadcast, t: &[u32], scalar: u32, r: usize, c: usize| match mode {
        Broadcast::None => t[r * 3 + c],
        Broadcast::PerRow => t[r],
        Broadcast::PerCol => t[c],
        Broadcast::Scalar => scalar,
    };
    let scalars = [0.0f32.to_bits(), 77, 88];
    let mut combos = 0;
    for mc in MODES {
        for ma in MODES {
            for mb in MODES {
                // A scalar condition of +0 takes b everywhere; another
                // run of the loop body below with 1.0 takes a.
                for cs in [scalars[0], T] {
                    let got = select(
                        &s,
                        DType::I32,
                        [
                            operand(mc, COND, cs),
                            operand(ma, A, scalars[1]),
                            operand(mb, B, scalars[2]),
                        ],
                    );
                    for r in 0..2 {
                        for c in 0..3 {
                            let cv = f32::from_bits(elem(mc, &cond_tile, cs, r, c));
                            let want = if cv != 0.0 {
                                elem(ma, &a_tile, scalars[1], r, c)
                            } else {
                                elem(mb, &b_tile, scalars[2], r, c)
                            };
                            assert_eq!(got[r * 3 + c], want, "{mc:?} {ma:?} {mb:?} ({r}, {c})");
                        }
                    }
                    combos += 1;
                }
            }
        }
    }
    assert_eq!(combos, 128);
}

/// The output over an operand: the result is computed from the operands as
/// they were before the instruction.
#[test]
fn select_reads_its_operands_before_writing() {
    // 2 x 4 tiles: cond at 0, a at 32, b at 64. Out = cond (in place), out
    // = a, and out shifted one element into b.
    let cond = f32_words(&[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
    let a: Vec<u32> = (10..18).collect();
    let b: Vec<u32> = (20..28).collect();
    let want = [10, 21, 12, 23, 24, 15, 26, 17];
    let mut input = cond.clone();
    input.extend(&a);
    input.extend(&b);
    for out in [0u32, 32, 68] {
        let prog = [
            load(IN_VA, 0, 96),
            Insn::Select {
                dtype: DType::I32,
                rows: 2,
                cols: 4,
                cond: SelectOperand {
                    bcast: Broadcast::None,
                    tile: tile(0, 4),
                    scalar: 0,
                },
                a: SelectOperand {
                    bcast: Broadcast::None,
                    tile: tile(32, 4),
                    scalar: 0,
                },
                b: SelectOperand {
                    bcast: Broadcast::None,
                    tile: tile(64, 4),
                    scalar: 0,
                },
                out: tile(out, 4),
            },
            store(OUT_VA, out, 32),
        ];
        let (c, got) = run_program(&mut bench(), &words(&input), 32, &prog);
        assert_eq!(c.fault(), Some(Fault::Ok));
        assert_eq!(to_words(&got), want, "out at {out}");
    }
}

fn cycles_of(insn: Insn) -> u64 {
    let (c, _) = run_program(&mut bench(), &[], 0, &[insn]);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    c.cycles.into()
}

#[test]
fn comparisons_and_select_cost_the_vector_rate() {
    let binary = |op| Insn::Binary {
        op,
        dtype: DType::F32,
        bcast: Broadcast::None,
        rows: 10,
        cols: 100,
        a: tile(0, 100),
        b: tile(4096, 100),
        out: tile(8192, 100),
        scalar: 0,
    };
    let add = cycles_of(binary(BinaryOp::Add));
    for op in &BinaryOp::ALL[7..] {
        assert_eq!(cycles_of(binary(*op)), add, "{op:?}");
    }
    let sel = Insn::Select {
        dtype: DType::F32,
        rows: 10,
        cols: 100,
        cond: SelectOperand {
            bcast: Broadcast::None,
            tile: tile(0, 100),
            scalar: 0,
        },
        a: operand(Broadcast::PerCol, 4096, 0),
        b: operand(Broadcast::Scalar, 0, 0),
        out: tile(8192, 100),
    };
    assert_eq!(cycles_of(sel), add);
    // INSN_OVERHEAD + 1000 / 32 over a job that costs nothing else: the
    // difference from END alone.
    let end_only = {
        let (c, _) = run_program(&mut bench(), &[], 0, &[]);
        u64::from(c.cycles)
    };
    assert_eq!(add - end_only, 2 + 1000u64.div_ceil(32));
}

/// Run a raw command buffer of one instruction's words and END.
fn run_raw(words: [u8; INSN_SIZE]) -> Completion {
    let mut b = bench();
    let mut cmd = words.to_vec();
    cmd.extend(assemble(&[Insn::End]));
    b.run(0, CMD_VA, &cmd)
}

fn select_insn(rows: u32, cols: u32, ops: [SelectOperand; 3], out: Tile) -> Insn {
    Insn::Select {
        dtype: DType::F32,
        rows,
        cols,
        cond: ops[0],
        a: ops[1],
        b: ops[2],
        out,
    }
}

#[test]
fn hostile_select_operands_fault_as_documented() {
    const SRAM: u32 = 256 * 1024;
    let none = |addr: u32, ld: u32| SelectOperand {
        bcast: Broadcast::None,
        tile: tile(addr, ld),
        scalar: 0,
    };
    let vec_of = |bcast, addr: u32| SelectOperand {
        bcast,
        tile: tile(addr, 0),
        scalar: 0,
    };
    let good = [none(0, 4), none(64, 4), none(128, 4)];
    let ok = select_insn(2, 4, good, tile(256, 4));
    assert_eq!(run_raw(ok.encode()).fault(), Some(Fault::Ok));
    let cases: Vec<(&str, Insn, Fault)> = vec![
        // Each operand past the end of the SRAM.
        (
            "cond past",
            select_insn(2, 4, [none(SRAM - 16, 4), good[1], good[2]], tile(256, 4)),
            Fault::SramRange,
        ),
        (
            "a past",
            select_insn(2, 4, [good[0], none(SRAM - 4, 4), good[2]], tile(256, 4)),
            Fault::SramRange,
        ),
        (
            "b past",
            select_insn(
                2,
                4,
                [good[0], good[1], none(u32::MAX - 3, 4)],
                tile(256, 4),
            ),
            Fault::SramRange,
        ),
        (
            "out past",
            select_insn(2, 4, good, tile(SRAM - 8, 4)),
            Fault::SramRange,
        ),
        // A per-row vector of 2^32 - 1 elements, a per-column one past the end.
        (
            "row vector",
            select_insn(
                u32::MAX,
                1,
                [vec_of(Broadcast::PerRow, 0), none(0, 1), none(0, 1)],
                tile(0, 1),
            ),
            Fault::SramRange,
        ),
        (
            "col vector",
            select_insn(
                1,
                4,
                [good[0], vec_of(Broadcast::PerCol, SRAM - 8), good[2]],
                tile(256, 4),
            ),
            Fault::SramRange,
        ),
        // Tiles whose span overflows 64 bits.
        (
            "huge",
            select_insn(
                u32::MAX,
                u32::MAX,
                [none(0, u32::MAX), good[1], good[2]],
                tile(0, u32::MAX),
            ),
            Fault::SramRange,
        ),
        // Misaligned, and rows overlapping (ld < cols).
        (
            "misaligned a",
            select_insn(2, 4, [good[0], none(66, 4), good[2]], tile(256, 4)),
            Fault::BadOperand,
        ),
        (
            "misaligned vector",
            select_insn(
                2,
                4,
                [vec_of(Broadcast::PerRow, 2), good[1], good[2]],
                tile(256, 4),
            ),
            Fault::BadOperand,
        ),
        (
            "short ld",
            select_insn(2, 4, [good[0], good[1], good[2]], tile(256, 3)),
            Fault::BadOperand,
        ),
        (
            "short cond ld",
            select_insn(2, 4, [none(0, 1), good[1], good[2]], tile(256, 4)),
            Fault::BadOperand,
        ),
    ];
    for (what, insn, want) in cases {
        let c = run_raw(insn.encode());
        assert_eq!(c.fault(), Some(want), "{what}: {c:?}");
        assert_eq!(c.fault_addr, 0, "{what}");
    }
    // Empty: touches nothing and ends at once, whatever the other
    // dimension and ld say (the addresses are still in the SRAM and aligned).
    for (rows, cols) in [(0, 4), (4, 0), (0, u32::MAX), (u32::MAX, 0)] {
        let ops = [none(SRAM - 4, 0), none(0, u32::MAX), none(8, 16)];
        let c = run_raw(select_insn(rows, cols, ops, tile(SRAM - 4, 1)).encode());
        assert_eq!(c.fault(), Some(Fault::Ok), "{rows} x {cols}");
    }
    // Encodings this version rejects.
    let w = ok.encode();
    for (byte, value) in [
        (1usize, 0x02u8),
        (1, 0x0f),
        (1, 0x10),
        (2, 0x40),
        (2, 0x80),
        (56, 1),
    ] {
        let mut b = w;
        b[byte] = value;
        assert_eq!(
            run_raw(b).fault(),
            Some(Fault::BadOperand),
            "byte {byte} = {value:#x}"
        );
    }
    // BINARY F 16 and above stay undefined.
    let mut b = Insn::Binary {
        op: BinaryOp::Xor,
        dtype: DType::F32,
        bcast: Broadcast::None,
        rows: 1,
        cols: 1,
        a: tile(0, 1),
        b: tile(0, 1),
        out: tile(0, 1),
        scalar: 0,
    }
    .encode();
    assert_eq!(run_raw(b).fault(), Some(Fault::Ok));
    b[2] = 16;
    assert_eq!(run_raw(b).fault(), Some(Fault::BadOperand));
}
