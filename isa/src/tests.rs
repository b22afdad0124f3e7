use super::*;
use alloc::format;

fn sample() -> alloc::vec::Vec<Insn> {
    let t = |addr, ld| Tile { addr, ld };
    alloc::vec![
        Insn::Nop,
        Insn::Barrier,
        Insn::Mark { tag: 7 },
        Insn::DmaLoad {
            va: 0x1_0000_2000,
            sram: 64,
            mem: Strided {
                shape: [16, 3, 2],
                stride: [32, 128]
            },
            sram_layout: Strided {
                shape: [16, 3, 2],
                stride: [16, 48]
            }
        },
        Insn::DmaStore {
            va: 0x4000,
            sram: 0,
            mem: Strided::contiguous(256),
            sram_layout: Strided::contiguous(256)
        },
        Insn::Copy {
            src: 0,
            dst: 512,
            src_layout: Strided::rows(8, 4, 16),
            dst_layout: Strided::rows(8, 4, 8)
        },
        Insn::Fill {
            dst: 128,
            len: 64,
            pattern: 0xdead_beef
        },
        Insn::Matmul {
            dtype: DType::I8,
            accumulate: true,
            transpose_b: true,
            m: 3,
            n: 5,
            k: 7,
            a: t(0, 7),
            b: t(64, 7),
            c: t(256, 5)
        },
        Insn::Requant {
            rows: 2,
            cols: 3,
            src: t(0, 3),
            dst: t(64, 3),
            mult: 1 << 20,
            per_channel: false,
            bias: Some(96),
            shift: 30,
            zero_point: -3,
            lo: -128,
            hi: 127
        },
        Insn::Convert {
            conv: Conversion::I8ToF32,
            rows: 1,
            cols: 4,
            src: t(0, 4),
            dst: t(16, 4),
            zero_point: 5,
            scale: 0.5
        },
        Insn::Binary {
            op: BinaryOp::Max,
            dtype: DType::F32,
            bcast: Broadcast::PerCol,
            rows: 4,
            cols: 4,
            a: t(0, 4),
            b: t(64, 0),
            out: t(128, 4),
            scalar: 0
        },
        Insn::Unary {
            op: UnaryOp::Clamp,
            dtype: DType::I32,
            rows: 2,
            cols: 2,
            src: t(0, 2),
            dst: t(0, 2),
            lo: (-5i32) as u32,
            hi: 5
        },
        Insn::Reduce {
            op: ReduceOp::Max,
            axis: Axis::Rows,
            dtype: DType::F32,
            rows: 3,
            cols: 4,
            src: t(0, 4),
            dst: 100 * 4
        },
        Insn::Pool {
            op: PoolOp::Avg,
            geom: PoolGeom {
                channels: 2,
                in_h: 5,
                in_w: 5,
                out_h: 3,
                out_w: 3,
                kernel: [3, 3],
                stride: [2, 2],
                pad: [1, 1]
            },
            src: 0,
            dst: 1024
        },
        Insn::End,
    ]
}

#[test]
fn every_instruction_round_trips() {
    for insn in sample() {
        let bytes = insn.encode();
        assert_eq!(Insn::decode(&bytes), Ok(insn), "{insn}");
    }
}

#[test]
fn unknown_opcode_is_rejected() {
    let mut b = Insn::Nop.encode();
    b[0] = 0x7f;
    assert_eq!(Insn::decode(&b), Err(DecodeError::BadOpcode(0x7f)));
}

#[test]
fn nonzero_reserved_words_are_rejected() {
    for insn in sample() {
        let mut b = insn.encode();
        b[INSN_SIZE - 1] = 1;
        assert_eq!(Insn::decode(&b), Err(DecodeError::BadOperand), "{insn}");
    }
    let mut b = Insn::End.encode();
    b[3] = 0x80; // flag bits on an instruction without flags
    assert_eq!(Insn::decode(&b), Err(DecodeError::BadOperand));
}

#[test]
fn invalid_selectors_are_rejected() {
    let mut b = Insn::Matmul {
        dtype: DType::F32,
        accumulate: false,
        transpose_b: false,
        m: 1,
        n: 1,
        k: 1,
        a: Tile::default(),
        b: Tile::default(),
        c: Tile::default(),
    }
    .encode();
    b[1] = 0x01; // dtype i32 is not a matmul input type
    assert_eq!(Insn::decode(&b), Err(DecodeError::BadOperand));
    let mut b = Insn::Unary {
        op: UnaryOp::Exp,
        dtype: DType::F32,
        rows: 1,
        cols: 1,
        src: Tile::default(),
        dst: Tile::default(),
        lo: 0,
        hi: 0,
    }
    .encode();
    b[1] = 0x01; // exp on i32
    assert_eq!(Insn::decode(&b), Err(DecodeError::BadOperand));
}

#[test]
fn disassembly_is_readable() {
    let text: alloc::vec::Vec<_> = sample().iter().map(|i| format!("{i}")).collect();
    assert_eq!(
        text[7],
        "matmul.i8.acc.bt 3x5x7 s:0x100/5 <- s:0x0/7, s:0x40/7"
    );
    assert!(text[3].starts_with("dma.load s:0x40"));
    let buf = assemble(&sample());
    assert_eq!(disassemble(&buf).len(), sample().len());
    assert_eq!(
        disassemble(&buf[..70]).last(),
        Some(&Err(DecodeError::BadOperand))
    );
}

#[test]
fn requantize_rounds_half_up_and_clamps() {
    // 3 * 2^29 / 2^30 = 1.5 -> 2
    assert_eq!(requantize(3, 0, 1 << 29, 30, 0, -128, 127), 2);
    // -1.5 -> -1 (half up)
    assert_eq!(requantize(-3, 0, 1 << 29, 30, 0, -128, 127), -1);
    assert_eq!(
        requantize(i32::MAX, i32::MAX, i32::MAX, 1, 0, -128, 127),
        127
    );
    assert_eq!(requantize(10, 0, 1 << 30, 30, -5, -128, 127), 5);
    assert_eq!(requantize(100, 0, 1 << 30, 30, 0, 0, 50), 50);
}

#[test]
fn strided_extent_checks_overflow() {
    let s = Strided {
        shape: [4, 3, 2],
        stride: [8, 100],
    };
    assert_eq!(s.extent(), Some(2 * 8 + 100 + 4));
    assert_eq!(s.bytes(), Some(24));
    let huge = Strided {
        shape: [u32::MAX, u32::MAX, u32::MAX],
        stride: [u32::MAX, u32::MAX],
    };
    assert_eq!(huge.extent(), None); // rows + planes overflow 64 bits
    assert_eq!(
        Strided {
            shape: [0, 5, 5],
            stride: [1, 1]
        }
        .extent(),
        Some(0)
    );
}
