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
    // (-2^31 - 2^31) * -2^31 = 2^63, one bit past i64: 2^63 / 2^62 = 2.
    assert_eq!(
        requantize(i32::MIN, i32::MIN, i32::MIN, 62, 0, -128, 127),
        2
    );
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

/// The words of each `sample()` instruction, written by hand from the
/// opcode table of Documentation/hw/npu-hw.rst ("ISA version 1.0"): opcode
/// in w0 bits 7:0, S1 11:8, S2 15:12, F 23:16, operands in the words the
/// table names; every other word 0. Not derived from the encoder.
#[rustfmt::skip]
const GOLDEN: [[u32; 11]; 15] = [
    [0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],                               // NOP
    [0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],                               // BARRIER
    [0x03, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0],                               // MARK w1 tag
    // DMA_LOAD w1-2 VA, w3 SRAM, w4-6 shape, w7-8 memory strides, w9-10 SRAM strides
    [0x10, 0x2000, 0x1, 64, 16, 3, 2, 32, 128, 16, 48],
    [0x11, 0x4000, 0, 0, 256, 1, 1, 256, 256, 256, 256],                 // DMA_STORE
    // COPY w1 src, w2 dst, w3-5 shape, w6-7 src strides, w8-9 dst strides
    [0x12, 0, 512, 8, 4, 1, 16, 64, 8, 32, 0],
    [0x13, 128, 64, 0xdead_beef, 0, 0, 0, 0, 0, 0, 0],                  // FILL
    // MATMUL S1 = 2 (i8), F = ACCUMULATE | TRANSPOSE_B; m n k, A, B, C tiles
    [0x0003_0220, 3, 5, 7, 0, 7, 64, 7, 256, 5, 0],
    // REQUANT F = BIAS; rows cols src dst mult bias, w9 = shift 30 | zp -3 << 8 | lo -128 << 16 | hi 127 << 24
    [0x0002_0021, 2, 3, 0, 3, 64, 3, 1 << 20, 96, 0x7f80_fd1e, 0],
    // CONVERT S2 = 3 (i8->f32); rows cols src dst, w7 zp, w8 scale 0.5f32
    [0x0000_3022, 1, 4, 0, 4, 16, 4, 5, 0x3f00_0000, 0, 0],
    // BINARY S1 = 0 (f32), S2 = 2 (per column), F = 4 (max)
    [0x0004_2030, 4, 4, 0, 4, 64, 0, 128, 4, 0, 0],
    // UNARY S1 = 1 (i32), F = 1 (clamp); w7 lo = -5, w8 hi = 5
    [0x0001_0131, 2, 2, 0, 2, 0, 2, 0xffff_fffb, 5, 0, 0],
    // REDUCE S1 = 0 (f32), S2 = 1 (along rows), F = 1 (max); w5 dst
    [0x0001_1032, 3, 4, 0, 4, 400, 0, 0, 0, 0, 0],
    // POOL S2 = 1 (average); w6 kernel 3,3 stride 2,2 (bytes 0..3), w7 pad 1,1
    [0x0000_1033, 2, 5, 5, 3, 3, 0x0202_0303, 0x0101, 0, 1024, 0],
    [0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],                               // END
];

fn golden_bytes(words: &[u32; 11]) -> [u8; INSN_SIZE] {
    let mut b = [0u8; INSN_SIZE];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    b
}

#[test]
fn encodings_match_the_spec_bit_for_bit() {
    let sample = sample();
    assert_eq!(sample.len(), GOLDEN.len());
    for (insn, words) in sample.iter().zip(&GOLDEN) {
        let want = golden_bytes(words);
        assert_eq!(insn.encode(), want, "{insn}");
        assert_eq!(Insn::decode(&want), Ok(*insn), "{insn}");
    }
}

/// The opcode column of the spec's table, read from npu-hw.rst itself: every
/// opcode it lists is the one the encoder writes, and it lists them all.
#[test]
fn opcodes_match_the_spec_table() {
    let spec = include_str!("../../Documentation/hw/npu-hw.rst");
    let mut table: alloc::vec::Vec<(u8, &str)> = alloc::vec::Vec::new();
    for line in spec.lines() {
        let mut f = line.split_whitespace();
        let (Some(code), Some(name)) = (f.next(), f.next()) else {
            continue;
        };
        let Some(hex) = code.strip_prefix("0x").filter(|h| h.len() == 2) else {
            continue;
        };
        if name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            table.push((u8::from_str_radix(hex, 16).expect("hex opcode"), name));
        }
    }
    let ours: [(&str, Insn); 18] = [
        ("NOP", sample()[0]),
        ("END", Insn::End),
        ("BARRIER", sample()[1]),
        ("MARK", sample()[2]),
        ("DMA_LOAD", sample()[3]),
        ("DMA_STORE", sample()[4]),
        ("COPY", sample()[5]),
        ("FILL", sample()[6]),
        ("MATMUL", sample()[7]),
        ("REQUANT", sample()[8]),
        ("CONVERT", sample()[9]),
        ("BINARY", sample()[10]),
        ("UNARY", sample()[11]),
        ("REDUCE", sample()[12]),
        ("POOL", sample()[13]),
        ("GATHER", gather_sample()),
        ("SELECT", select_sample()),
        ("POOL_I8", pool_i8_sample()),
    ];
    assert_eq!(
        table.len(),
        ours.len(),
        "the spec's opcode table: {table:?}"
    );
    for (name, insn) in ours {
        let code = table
            .iter()
            .find(|(_, n)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not in the spec's table"))
            .0;
        assert_eq!(insn.encode()[0], code, "{name}");
    }
}

fn gather_sample() -> Insn {
    Insn::Gather {
        wrap_negative: true,
        va: 0x2_0000_0040,
        sram: 256,
        row_bytes: 48,
        count: 5,
        table_rows: 1000,
        table_stride: 64,
        indices: 16,
        sram_stride: 48,
    }
}

#[test]
fn gather_matches_the_spec_bit_for_bit() {
    // GATHER S1 = 1 (i32 indices), F bit 0 = WRAP_NEGATIVE; w1-2 VA; w3
    // SRAM dst; w4 row bytes; w5 count; w6 table rows; w7 table stride;
    // w8 index vector; w9 SRAM row stride.
    let words = [0x0001_0114, 0x40, 2, 256, 48, 5, 1000, 64, 16, 48, 0];
    let want = golden_bytes(&words);
    assert_eq!(gather_sample().encode(), want);
    assert_eq!(Insn::decode(&want), Ok(gather_sample()));
    let plain = Insn::Gather {
        wrap_negative: false,
        va: 0,
        sram: 0,
        row_bytes: 4,
        count: 1,
        table_rows: 1,
        table_stride: 4,
        indices: 64,
        sram_stride: 4,
    };
    assert_eq!(Insn::decode(&plain.encode()), Ok(plain));
    assert_eq!(
        format!("{}", gather_sample()),
        "gather.wrap s:0x100[5x48 /48] <- va:0x200000040[1000 rows /64] by s:0x10"
    );
}

#[test]
fn gather_rejects_other_index_types_flags_and_reserved_words() {
    let good = gather_sample().encode();
    for (byte, value) in [
        (1, 0x00), // S1 = f32 indices
        (1, 0x02), // S1 = i8 indices
        (1, 0x11), // S2 != 0
        (2, 0x03), // F bit 1 is undefined
        (40, 1),   // w10 is reserved
    ] {
        let mut b = good;
        b[byte] = value;
        assert_eq!(
            Insn::decode(&b),
            Err(DecodeError::BadOperand),
            "byte {byte} = {value:#x}"
        );
    }
}

#[test]
fn index_range_is_fault_twelve() {
    assert_eq!(Fault::IndexRange.code(), 12);
    assert_eq!(Fault::from_code(12), Some(Fault::IndexRange));
    assert_eq!(Fault::IndexRange.name(), "index-range");
    assert!(!Fault::IndexRange.is_mmu());
}

/// Every UNARY F value round-trips, F values past the last are refused, and
/// the golden words of the UNARY F 10 (erf) and BINARY F 6 (prelu, per
/// column) encodings are the spec's bit layout.
#[test]
fn unary_functions_and_prelu_encode_as_the_spec_says() {
    for (f, op) in UnaryOp::ALL.iter().enumerate() {
        assert_eq!(*op as usize, f);
        let insn = Insn::Unary {
            op: *op,
            dtype: DType::F32,
            rows: 2,
            cols: 3,
            src: Tile { addr: 0, ld: 3 },
            dst: Tile { addr: 64, ld: 3 },
            lo: 0.5f32.to_bits(),
            hi: 0.25f32.to_bits(),
        };
        assert_eq!(Insn::decode(&insn.encode()), Ok(insn));
    }
    // UNARY S1 = 0 (f32), F = 10 (erf)
    let erf = golden_bytes(&[0x000a_0031, 1, 4, 0, 4, 64, 4, 0, 0, 0, 0]);
    assert!(matches!(
        Insn::decode(&erf),
        Ok(Insn::Unary {
            op: UnaryOp::Erf,
            ..
        })
    ));
    let mut bad = erf;
    bad[2] = 17;
    assert_eq!(Insn::decode(&bad), Err(DecodeError::BadOperand));
    // BINARY S1 = 0 (f32), S2 = 2 (per column), F = 6 (prelu); w9 scalar 0
    let prelu = golden_bytes(&[0x0006_2030, 2, 3, 0, 3, 64, 0, 128, 3, 0, 0]);
    assert_eq!(
        Insn::decode(&prelu),
        Ok(Insn::Binary {
            op: BinaryOp::Prelu,
            dtype: DType::F32,
            bcast: Broadcast::PerCol,
            rows: 2,
            cols: 3,
            a: Tile { addr: 0, ld: 3 },
            b: Tile { addr: 64, ld: 0 },
            out: Tile { addr: 128, ld: 3 },
            scalar: 0,
        })
    );
    let mut i32_prelu = prelu;
    i32_prelu[1] = 0x21; // S1 = 1 (i32)
    assert_eq!(Insn::decode(&i32_prelu), Err(DecodeError::BadOperand));
}

/// npu-hw.rst's "UNARY functions" table, read from the spec: each F value,
/// name and cost class is the crate's.
#[test]
fn unary_functions_match_the_spec_table() {
    let spec = include_str!("../../Documentation/hw/npu-hw.rst");
    let section = spec
        .split("UNARY functions\n---------------")
        .nth(1)
        .expect("the spec has a UNARY functions section");
    let mut seen = 0;
    for line in section.lines().take_while(|l| !l.starts_with("BINARY F 6")) {
        let mut f = line.split_whitespace();
        let (Some(code), Some(name)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(code) = code.parse::<usize>() else {
            continue;
        };
        let op = UnaryOp::ALL[code];
        let want = format!("{op:?}").to_lowercase();
        assert_eq!(name.replace('_', ""), want, "F {code}");
        let cost = line.split_whitespace().last().unwrap();
        assert_eq!(cost == "special", op.special(), "{name}: {cost}");
        assert!(op.float_only());
        seen += 1;
    }
    assert_eq!(seen, UnaryOp::ALL.len() - 7);
}

fn select_sample() -> Insn {
    Insn::Select {
        dtype: DType::F32,
        rows: 2,
        cols: 3,
        cond: SelectOperand {
            bcast: Broadcast::PerCol,
            tile: Tile { addr: 0, ld: 0 },
            scalar: 0,
        },
        a: SelectOperand {
            bcast: Broadcast::None,
            tile: Tile { addr: 64, ld: 4 },
            scalar: 0,
        },
        b: SelectOperand {
            bcast: Broadcast::Scalar,
            tile: Tile::default(),
            scalar: f32::NEG_INFINITY.to_bits(),
        },
        out: Tile { addr: 128, ld: 3 },
    }
}

/// SELECT's words as npu-hw.rst lays them out: S1 dtype, F bits 1:0 / 3:2
/// / 5:4 the broadcasts of cond / a / b; w1 rows; w2 cols; w3-4 cond; w5-6
/// a; w7-8 b; w9-10 out; w11-13 the scalars of cond, a, b.
#[test]
fn select_matches_the_spec_bit_for_bit() {
    let words: [u32; 14] = [
        0x0032_0034, // F = 0b11_00_10: b scalar, a tile, cond per column
        2,
        3,
        0,
        0,
        64,
        4,
        0,
        0,
        128,
        3,
        0,
        0,
        0xff80_0000,
    ];
    let mut want = [0u8; INSN_SIZE];
    for (i, w) in words.iter().enumerate() {
        want[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    assert_eq!(select_sample().encode(), want);
    assert_eq!(Insn::decode(&want), Ok(select_sample()));
    assert_eq!(
        format!("{}", select_sample()),
        "select.f32 2x3 s:0x80/3 <- s:0x0 (PerCol) ? s:0x40/4 : #0xff800000"
    );
    let i32_rows = Insn::Select {
        dtype: DType::I32,
        rows: 5,
        cols: 1,
        cond: SelectOperand {
            bcast: Broadcast::Scalar,
            tile: Tile::default(),
            scalar: 1.0f32.to_bits(),
        },
        a: SelectOperand {
            bcast: Broadcast::PerRow,
            tile: Tile { addr: 4, ld: 0 },
            scalar: 0,
        },
        b: SelectOperand {
            bcast: Broadcast::None,
            tile: Tile { addr: 32, ld: 1 },
            scalar: 0,
        },
        out: Tile { addr: 32, ld: 1 },
    };
    assert_eq!(Insn::decode(&i32_rows.encode()), Ok(i32_rows));
}

#[test]
fn select_rejects_i8_reserved_selectors_flags_and_words() {
    let good = select_sample().encode();
    for (byte, value) in [
        (1, 0x02), // S1 = i8
        (1, 0x03), // S1 = 3, no dtype
        (1, 0x10), // S2 != 0
        (2, 0x72), // F bit 6 is undefined
        (2, 0xb2), // F bit 7 is undefined
        (56, 1),   // w14 is reserved
        (63, 1),   // w15 is reserved
    ] {
        let mut b = good;
        b[byte] = value;
        assert_eq!(
            Insn::decode(&b),
            Err(DecodeError::BadOperand),
            "byte {byte} = {value:#x}"
        );
    }
}

/// BINARY F 7..15 (comparisons and logic) round-trip for f32 and i32, F 16
/// is refused, and the golden words of a per-row `lt` are the spec's.
#[test]
fn comparisons_encode_as_the_spec_says() {
    for (f, op) in BinaryOp::ALL.iter().enumerate() {
        assert_eq!(*op as usize, f);
        assert_eq!(op.gives_mask(), f >= 7, "{op:?}");
        for dtype in [DType::F32, DType::I32] {
            let insn = Insn::Binary {
                op: *op,
                dtype,
                bcast: Broadcast::None,
                rows: 2,
                cols: 3,
                a: Tile { addr: 0, ld: 3 },
                b: Tile { addr: 64, ld: 3 },
                out: Tile { addr: 128, ld: 3 },
                scalar: 0,
            };
            let want = if *op == BinaryOp::Prelu && dtype == DType::I32 {
                Err(DecodeError::BadOperand)
            } else {
                Ok(insn)
            };
            assert_eq!(Insn::decode(&insn.encode()), want, "{op:?} {dtype:?}");
        }
    }
    // BINARY S1 = 1 (i32), S2 = 1 (per row), F = 9 (lt)
    let lt = golden_bytes(&[0x0009_1130, 4, 2, 0, 2, 64, 0, 128, 2, 0, 0]);
    assert!(matches!(
        Insn::decode(&lt),
        Ok(Insn::Binary {
            op: BinaryOp::Lt,
            dtype: DType::I32,
            bcast: Broadcast::PerRow,
            ..
        })
    ));
    let mut bad = lt;
    bad[2] = 16;
    assert_eq!(Insn::decode(&bad), Err(DecodeError::BadOperand));
}

#[test]
fn half_conversions_encode_as_the_spec_says() {
    // CONVERT S2 = 4..7: f32->f16, f16->f32, f32->bf16, bf16->f32.
    let want = [
        (4, Conversion::F32ToF16, (4, 2)),
        (5, Conversion::F16ToF32, (2, 4)),
        (6, Conversion::F32ToBf16, (4, 2)),
        (7, Conversion::Bf16ToF32, (2, 4)),
    ];
    for (s2, conv, sizes) in want {
        let words = [0x22 | s2 << 12, 2, 3, 0, 3, 64, 3, 0, 0, 0, 0];
        let insn = Insn::Convert {
            conv,
            rows: 2,
            cols: 3,
            src: Tile { addr: 0, ld: 3 },
            dst: Tile { addr: 64, ld: 3 },
            zero_point: 0,
            scale: 0.0,
        };
        assert_eq!(insn.encode(), golden_bytes(&words));
        assert_eq!(Insn::decode(&golden_bytes(&words)), Ok(insn));
        assert_eq!(conv.sizes(), sizes);
    }
    for s2 in 8..16 {
        let words = [0x22 | s2 << 12, 1, 1, 0, 1, 64, 1, 0, 0, 0, 0];
        assert_eq!(
            Insn::decode(&golden_bytes(&words)),
            Err(DecodeError::BadOperand)
        );
    }
}

/// Every f16 and bf16 widens exactly as the `half` crate (an independent
/// implementation) widens it; NaNs compared bit for bit too (quiet bit set).
#[test]
fn half_widening_matches_the_half_crate_for_every_value() {
    for h in 0..=u16::MAX {
        let want = ::half::f16::from_bits(h).to_f32();
        assert_eq!(f16_to_f32(h).to_bits(), want.to_bits(), "f16 {h:#06x}");
        let want = ::half::bf16::from_bits(h).to_f32();
        assert_eq!(bf16_to_f32(h).to_bits(), want.to_bits(), "bf16 {h:#06x}");
    }
}

/// Narrowing agrees with `half` on every upper half of an f32 combined
/// with low halves at, just above and just below the f16 and bf16 ties,
/// and on 2^20 pseudo-random f32 bit patterns.
#[test]
fn half_narrowing_matches_the_half_crate() {
    let lows = [
        0u32, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x3001, 0x5000, 0x7fff, 0x8000,
        0x8001, 0xb000, 0xffff,
    ];
    let check = |b: u32| {
        let x = f32::from_bits(b);
        let want = ::half::f16::from_f32(x).to_bits();
        assert_eq!(f32_to_f16(x), want, "f16 of {b:#010x}");
        let want = ::half::bf16::from_f32(x).to_bits();
        assert_eq!(f32_to_bf16(x), want, "bf16 of {b:#010x}");
    };
    for hi in 0..=0xffffu32 {
        for &lo in &lows {
            check(hi << 16 | lo);
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..1 << 20 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        check((state >> 32) as u32);
    }
}

fn pool_i8_sample() -> Insn {
    Insn::PoolI8 {
        op: PoolI8Op::Avg,
        geom: PoolGeom {
            channels: 3,
            in_h: 4,
            in_w: 6,
            out_h: 2,
            out_w: 3,
            kernel: [2, 2],
            stride: [2, 2],
            pad: [0, 0],
        },
        src: 1,
        dst: 100,
        requant: false,
        zp_in: -3,
        zp_out: 5,
        scale_in: 0.5,
        scale_out: 0.25,
    }
}

/// POOL_I8 words written by hand from the spec's table: S2 = 1 (average),
/// w10 zp_in -3 (0xfd) in bits 7:0 and zp_out 5 in 15:8, w11-12 the f32
/// scales 0.5 and 0.25.
#[test]
fn pool_i8_encoding_matches_the_spec() {
    #[rustfmt::skip]
    let words: [u32; 13] = [0x1035, 3, 4, 6, 2, 3, 0x0202_0202, 0, 1, 100, 0x05fd, 0x3f00_0000, 0x3e80_0000];
    let mut want = [0u8; INSN_SIZE];
    for (i, w) in words.iter().enumerate() {
        want[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let insn = pool_i8_sample();
    assert_eq!(insn.encode(), want);
    assert_eq!(Insn::decode(&want), Ok(insn));
    assert!(format!("{insn}").starts_with("pool.i8.Avg c3 4x6 -> 2x3"));
    // Max without requantization: the parameters must be 0; with it (F
    // bit 0) they must be valid scales.
    let Insn::PoolI8 { geom, .. } = insn else {
        unreachable!()
    };
    let max = Insn::PoolI8 {
        op: PoolI8Op::Max,
        geom,
        src: 0,
        dst: 64,
        requant: false,
        zp_in: 0,
        zp_out: 0,
        scale_in: 0.0,
        scale_out: 0.0,
    };
    assert_eq!(Insn::decode(&max.encode()), Ok(max));
    let bad = |f: &dyn Fn(&mut [u8; INSN_SIZE])| {
        let mut b = max.encode();
        f(&mut b);
        Insn::decode(&b)
    };
    // A stray zero point on an unrequantized max.
    assert_eq!(bad(&|b| b[40] = 1), Err(DecodeError::BadOperand));
    // REQUANT with zero scales; then with valid ones it decodes.
    assert_eq!(bad(&|b| b[2] = 1), Err(DecodeError::BadOperand));
    let ok = bad(&|b| {
        b[2] = 1;
        b[44..48].copy_from_slice(&1.0f32.to_bits().to_le_bytes());
        b[48..52].copy_from_slice(&2.0f32.to_bits().to_le_bytes());
    });
    assert!(
        matches!(ok, Ok(Insn::PoolI8 { requant: true, .. })),
        "{ok:?}"
    );
    // The averages take no F bit, need positive finite scales; S2 = 3 and
    // an S1 are undefined.
    let mut avg = pool_i8_sample().encode();
    avg[2] = 1;
    assert_eq!(Insn::decode(&avg), Err(DecodeError::BadOperand));
    for (at, v) in [(44, f32::NAN), (44, -1.0), (48, f32::INFINITY), (48, 0.0)] {
        let mut b = pool_i8_sample().encode();
        b[at..at + 4].copy_from_slice(&v.to_bits().to_le_bytes());
        assert_eq!(Insn::decode(&b), Err(DecodeError::BadOperand), "{v}");
    }
    for byte1 in [0x30, 0x12] {
        let mut b = pool_i8_sample().encode();
        b[1] = byte1;
        assert_eq!(Insn::decode(&b), Err(DecodeError::BadOperand), "{byte1:#x}");
    }
}
