//! Tiles of one-element rows (`cols == 1`, rows `ld` elements apart) in
//! UNARY and CONVERT: the strided moves libnpu's conv lowering splits a
//! band into its stride phases with, which the device model runs on a path
//! of their own (a strided loop, no per-row slicing). Each program is
//! checked byte for byte against the spec (npu-hw.rst: element `(r, c)` of
//! a tile is at `addr + (r * ld + c) * size`; "Operand overlap": the inputs
//! are read in full before the output is written), computed here on a copy
//! of the SRAM area; its compute-engine cycles against the cost table
//! (INSN_OVERHEAD 2 + rows * cols / 32, rounded up, for each); and bad
//! operands against the fault table.

mod common;

use common::*;
use npu_device::regs::*;
use npu_device::testbench::{Bench, Completion, Rng, EVENT_BOUND};
use npu_isa::{assemble, Conversion, DType, Fault, Insn, Tile, UnaryOp, INSN_SIZE};

/// The bench's SRAM (tests/common: 256 KiB).
const SRAM: u32 = 256 * 1024;
/// The bytes each program loads, works on and stores back.
const AREA: u32 = 8192;
const PROFILE: u16 = 1;

fn unary(op: UnaryOp, dtype: DType, rows: u32, src: Tile, dst: Tile) -> Insn {
    Insn::Unary {
        op,
        dtype,
        rows,
        cols: 1,
        src,
        dst,
        lo: 0,
        hi: 0,
    }
}

fn convert(conv: Conversion, rows: u32, src: Tile, dst: Tile, zero_point: i32) -> Insn {
    Insn::Convert {
        conv,
        rows,
        cols: 1,
        src,
        dst,
        zero_point,
        scale: 0.25,
    }
}

/// The spec's result of `insn` on `mem`, the SRAM from byte `at` on: every
/// source element read first, then the results written in row order.
fn reference(mem: &mut [u8], at: u32, insn: &Insn) {
    let word = |m: &[u8], a: usize| u32::from_le_bytes(m[a..a + 4].try_into().unwrap());
    let (rows, cols, src, dst, in_size) = match *insn {
        Insn::Unary {
            dtype,
            rows,
            cols,
            src,
            dst,
            ..
        } => (rows, cols, src, dst, dtype.size()),
        Insn::Convert {
            conv,
            rows,
            cols,
            src,
            dst,
            ..
        } => {
            let size = match conv {
                Conversion::I8ToI32 | Conversion::I8ToF32 => 1,
                Conversion::F16ToF32 | Conversion::Bf16ToF32 => 2,
                _ => 4,
            };
            (rows, cols, src, dst, size)
        }
        _ => unreachable!("only UNARY and CONVERT"),
    };
    let at_elem =
        |t: Tile, r: u32, c: u32, size: u32| (t.addr - at + (r * t.ld + c) * size) as usize;
    let mut xs = vec![];
    for r in 0..rows {
        for c in 0..cols {
            let a = at_elem(src, r, c, in_size);
            xs.push(match in_size {
                1 => mem[a] as u32,
                2 => u16::from_le_bytes([mem[a], mem[a + 1]]) as u32,
                _ => word(mem, a),
            });
        }
    }
    let results: Vec<Vec<u8>> = xs
        .iter()
        .map(|&x| match *insn {
            Insn::Unary {
                op,
                dtype: DType::I8,
                ..
            } => {
                assert_eq!(op, UnaryOp::Move);
                vec![x as u8]
            }
            Insn::Unary {
                op,
                dtype: DType::I32,
                ..
            } => {
                let v = x as i32;
                let y = match op {
                    UnaryOp::Move => v,
                    UnaryOp::Relu => v.max(0),
                    _ => unreachable!(),
                };
                y.to_le_bytes().to_vec()
            }
            Insn::Unary { op, .. } => {
                let v = f32::from_bits(x);
                let y = match op {
                    UnaryOp::Move => v,
                    // Test data has no NaN or -0.
                    UnaryOp::Relu => {
                        if v > 0.0 {
                            v
                        } else {
                            0.0
                        }
                    }
                    _ => unreachable!(),
                };
                y.to_le_bytes().to_vec()
            }
            Insn::Convert {
                conv,
                zero_point,
                scale,
                ..
            } => match conv {
                Conversion::I8ToI32 => ((x as u8 as i8 as i32) - zero_point).to_le_bytes().to_vec(),
                Conversion::I8ToF32 => (((x as u8 as i8 as i32) - zero_point) as f32 * scale)
                    .to_le_bytes()
                    .to_vec(),
                Conversion::I32ToF32 => (x as i32 as f32).to_le_bytes().to_vec(),
                Conversion::F32ToI32 => (f32::from_bits(x).round_ties_even() as i32)
                    .to_le_bytes()
                    .to_vec(),
                // The spec's rounding is npu_isa's (checked against
                // hand-computed vectors in isa/src/tests.rs).
                Conversion::F32ToF16 => npu_isa::f32_to_f16(f32::from_bits(x))
                    .to_le_bytes()
                    .to_vec(),
                Conversion::F32ToBf16 => npu_isa::f32_to_bf16(f32::from_bits(x))
                    .to_le_bytes()
                    .to_vec(),
                Conversion::F16ToF32 => npu_isa::f16_to_f32(x as u16).to_le_bytes().to_vec(),
                Conversion::Bf16ToF32 => npu_isa::bf16_to_f32(x as u16).to_le_bytes().to_vec(),
            },
            _ => unreachable!(),
        })
        .collect();
    let out_size = results[0].len() as u32;
    for r in 0..rows {
        for c in 0..cols {
            let a = at_elem(dst, r, c, out_size);
            mem[a..a + out_size as usize].copy_from_slice(&results[(r * cols + c) as usize]);
        }
    }
}

/// Data for the area: f32 values in [-1, 1] (no NaN, no -0), whose bytes
/// also serve as i8 and i32 data.
fn data(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..AREA / 4)
        .flat_map(|_| {
            let v = rng.f32();
            (if v == 0.0 { 0.5f32 } else { v }).to_le_bytes()
        })
        .collect()
}

/// Run `prog` profiled between a load of `input` into the SRAM from byte
/// `at` and a store of that area; the completion, the area after, and the
/// profile record's compute-engine cycles.
fn run(b: &mut Bench, at: u32, input: &[u8], prog: &[Insn]) -> (Completion, Vec<u8>, u64) {
    let mut p = vec![load(IN_VA, at, AREA)];
    p.extend_from_slice(prog);
    p.push(store(OUT_VA, at, AREA));
    p.push(Insn::End);
    b.map(0, IN_VA, AREA as u64, false);
    b.write(0, IN_VA, input);
    b.map(0, OUT_VA, AREA as u64, true);
    b.write(0, OUT_VA, &vec![0; AREA as usize]);
    let code = assemble(&p);
    b.map(0, CMD_VA, code.len() as u64, false);
    b.write(0, CMD_VA, &code);
    let record = b.alloc_bus(4096);
    let s = b.submit_to(0, 0, CMD_VA, code.len() as u32, PROFILE, record);
    let c = b.wait_completion(EVENT_BOUND).expect("completion");
    b.device.mmio_write(IRQ_ACK, IRQ_ALL);
    assert_eq!(c.seqno, s);
    let compute = u64::from_le_bytes(b.mem_read(record + 48, 8).try_into().unwrap());
    (c, b.read(0, OUT_VA, AREA as usize), compute)
}

/// Moves placed relative to the area's start `at`: odd strides, sources
/// below, above, partly under and exactly on their outputs, single rows
/// with ld 0, and tiles ending on the area's (at the top: the SRAM's)
/// last element.
fn programs(at: u32) -> Vec<(&'static str, Vec<Insn>)> {
    let t = |addr: u32, ld: u32| Tile {
        addr: at + addr,
        ld,
    };
    let f32 = DType::F32;
    // The last element of `rows` rows `ld` apart at the area's last word.
    let last_word = |rows: u32, ld: u32| t(AREA - 4 - (rows - 1) * ld * 4, ld);
    vec![
        (
            "f32, ld 3 to ld 1, output above",
            vec![unary(UnaryOp::Move, f32, 37, t(0, 3), t(2048, 1))],
        ),
        (
            "f32, ld 5 to ld 2, output below",
            vec![unary(UnaryOp::Move, f32, 41, t(4096, 5), t(256, 2))],
        ),
        (
            "f32 relu in place, ld 7",
            vec![unary(UnaryOp::Relu, f32, 50, t(512, 7), t(512, 7))],
        ),
        (
            // libnpu's phase split of `p` elements a phase: the rows staged
            // from the last phase's plane on, split by one move a phase in
            // phase order, each writing below what later ones read and the
            // last over its own source.
            "f32 phase split of stride 2 (p = 150) and 3 (p = 67)",
            vec![
                unary(UnaryOp::Move, f32, 150, t(1024 + 600, 2), t(1024, 1)),
                unary(UnaryOp::Move, f32, 150, t(1024 + 604, 2), t(1024 + 600, 1)),
                unary(UnaryOp::Move, f32, 67, t(4000 + 536, 3), t(4000, 1)),
                unary(UnaryOp::Move, f32, 67, t(4000 + 540, 3), t(4000 + 268, 1)),
                unary(UnaryOp::Move, f32, 67, t(4000 + 544, 3), t(4000 + 536, 1)),
            ],
        ),
        (
            "f32 relu spread out over its source, ld 1 to ld 3",
            vec![unary(UnaryOp::Relu, f32, 29, t(3000, 1), t(3004, 3))],
        ),
        (
            "one row, ld 0",
            vec![
                unary(UnaryOp::Relu, f32, 1, t(100, 0), t(104, 0)),
                unary(UnaryOp::Move, DType::I8, 1, t(201, 0), t(203, 0)),
            ],
        ),
        (
            "i32 relu, ld 3 to ld 1, overlapping",
            vec![unary(UnaryOp::Relu, DType::I32, 33, t(6000, 3), t(5996, 1))],
        ),
        (
            "i8 at odd addresses, ld 3 to ld 1 and ld 1 to ld 2, overlapping",
            vec![
                unary(UnaryOp::Move, DType::I8, 101, t(5001, 3), t(5000, 1)),
                unary(UnaryOp::Move, DType::I8, 77, t(6001, 1), t(6002, 2)),
            ],
        ),
        (
            "convert, one-element rows",
            vec![
                convert(Conversion::I8ToI32, 45, t(7001, 3), t(1500, 1), -3),
                convert(Conversion::I8ToF32, 19, t(7003, 5), t(1700, 2), 7),
                convert(Conversion::I32ToF32, 23, t(6400, 3), t(6404, 1), 0),
                convert(Conversion::F32ToI32, 23, t(600, 1), t(720, 5), 0),
            ],
        ),
        (
            "half-precision convert, one-element rows",
            vec![
                convert(Conversion::F32ToF16, 21, t(800, 3), t(2000, 1), 0),
                convert(Conversion::F32ToBf16, 17, t(804, 2), t(2100, 3), 0),
                convert(Conversion::F16ToF32, 19, t(2000, 1), t(2200, 2), 0),
                convert(Conversion::Bf16ToF32, 13, t(3002, 5), t(2400, 1), 0),
            ],
        ),
        (
            "tiles ending on the last word and byte",
            vec![
                unary(UnaryOp::Move, f32, 63, last_word(63, 5), last_word(63, 1)),
                unary(UnaryOp::Relu, f32, 40, t(0, 1), last_word(40, 9)),
                unary(
                    UnaryOp::Move,
                    DType::I8,
                    70,
                    t(AREA - 1 - 69 * 7, 7),
                    t(AREA - 70, 1),
                ),
                convert(
                    Conversion::I8ToI32,
                    30,
                    t(AREA - 1 - 29 * 3, 3),
                    last_word(30, 3),
                    1,
                ),
            ],
        ),
    ]
}

#[test]
fn one_element_row_tiles_match_the_spec() {
    let mut b = bench();
    // At the start of the SRAM and at its very end.
    for at in [0, SRAM - AREA] {
        for (i, (name, prog)) in programs(at).into_iter().enumerate() {
            let input = data(0x5eed + i as u64);
            let mut want = input.clone();
            let mut cycles = 0;
            for insn in &prog {
                reference(&mut want, at, insn);
                let (Insn::Unary { rows, cols, .. } | Insn::Convert { rows, cols, .. }) = *insn
                else {
                    unreachable!()
                };
                cycles += 2 + (rows * cols).div_ceil(32) as u64;
            }
            let (c, got, compute) = run(&mut b, at, &input, &prog);
            assert_eq!(c.fault(), Some(Fault::Ok), "{name} at {at}: {c:?}");
            assert_ne!(got, input, "{name} at {at}: changed nothing");
            let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
            assert_eq!(first_bad, None, "{name} at {at}: first wrong byte");
            assert_eq!(compute, cycles, "{name} at {at}: compute-engine cycles");
        }
    }
}

#[test]
fn bad_one_element_row_tiles_fault_as_the_spec_says() {
    let mut b = bench();
    let f32 = DType::F32;
    let t = |addr: u32, ld: u32| Tile { addr, ld };
    let cases = [
        // One element past the SRAM's end, source or output.
        (
            unary(UnaryOp::Move, f32, 10, t(SRAM - 9 * 12 * 4, 12), t(0, 1)),
            Fault::SramRange,
        ),
        (
            unary(UnaryOp::Move, f32, 10, t(0, 1), t(SRAM - 9 * 9 * 4, 9)),
            Fault::SramRange,
        ),
        (
            unary(UnaryOp::Move, DType::I8, 10, t(SRAM - 9 * 3, 3), t(0, 1)),
            Fault::SramRange,
        ),
        (
            convert(Conversion::I8ToI32, 4, t(0, 1), t(SRAM - 12, 1), 0),
            Fault::SramRange,
        ),
        // Spans that wrap 32 or 64 bits.
        (
            unary(UnaryOp::Move, f32, u32::MAX, t(0, 1), t(64, 1)),
            Fault::SramRange,
        ),
        (
            unary(UnaryOp::Move, f32, u32::MAX, t(0, u32::MAX), t(64, 1)),
            Fault::SramRange,
        ),
        // Rows that would overlap, and a misaligned f32 tile.
        (
            unary(UnaryOp::Move, f32, 2, t(0, 0), t(64, 1)),
            Fault::BadOperand,
        ),
        (
            unary(UnaryOp::Move, f32, 3, t(0, 2), t(66, 1)),
            Fault::BadOperand,
        ),
        (
            convert(Conversion::I8ToI32, 3, t(1, 1), t(66, 1), 0),
            Fault::BadOperand,
        ),
    ];
    for (insn, fault) in cases {
        // After a NOP, so that fault_addr, the instruction's byte offset,
        // is not 0.
        let prog = [Insn::Nop, insn, Insn::End];
        let code = assemble(&prog);
        let c = b.run(0, CMD_VA, &code);
        assert_eq!(c.fault(), Some(fault), "{insn:?}: {c:?}");
        assert_eq!(
            c.fault_addr, INSN_SIZE as u64,
            "{insn:?}: the instruction's offset"
        );
    }
}
