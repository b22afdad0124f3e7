//! Every opcode against a reference computation, through the whole device:
//! ring, MMU, DMA, SRAM, engines, completion record.

mod common;
use common::*;
use npu_device::testbench::Bench;
use npu_isa::*;

#[test]
fn dma_round_trip_with_3d_strides() {
    let mut b = bench();
    // 2 planes x 3 rows x 8 bytes, rows 16 bytes apart, planes 64 apart.
    let input: Vec<u8> = (0..128u8).collect();
    let mem = Strided {
        shape: [8, 3, 2],
        stride: [16, 64],
    };
    let packed = Strided {
        shape: [8, 3, 2],
        stride: [8, 24],
    };
    let (c, out) = run_program(
        &mut b,
        &input,
        48,
        &[
            Insn::DmaLoad {
                va: IN_VA,
                sram: 0,
                mem,
                sram_layout: packed,
            },
            Insn::DmaStore {
                va: OUT_VA,
                sram: 0,
                mem: Strided::contiguous(48),
                sram_layout: Strided::contiguous(48),
            },
        ],
    );
    assert_eq!(c.status, 0);
    let mut want = vec![];
    for p in 0..2 {
        for r in 0..3 {
            let s = p * 64 + r * 16;
            want.extend_from_slice(&input[s..s + 8]);
        }
    }
    assert_eq!(out, want);
    assert!(c.cycles > 0);
}

#[test]
fn fill_and_copy() {
    let mut b = bench();
    let (c, out) = run_program(
        &mut b,
        &[],
        32,
        &[
            Insn::Fill {
                dst: 0,
                len: 16,
                pattern: 0x0403_0201,
            },
            // A known background, so bytes the strided copy must not touch
            // are checked too.
            Insn::Fill {
                dst: 64,
                len: 32,
                pattern: 0xeeee_eeee,
            },
            Insn::Copy {
                src: 0,
                dst: 64,
                src_layout: Strided::rows(2, 4, 4),
                dst_layout: Strided::rows(2, 4, 8),
            },
            Insn::Fill {
                dst: 128,
                len: 32,
                pattern: 0,
            },
            Insn::Copy {
                src: 64,
                dst: 128,
                src_layout: Strided::contiguous(32),
                dst_layout: Strided::contiguous(32),
            },
            store(OUT_VA, 128, 32),
        ],
    );
    assert_eq!(c.status, 0);
    // Rows of 2 bytes taken 4 apart from [1,2,3,4]x4 (always [1,2]) and
    // written 8 apart over the 0xee background.
    let row = [1, 2, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee];
    assert_eq!(out, row.repeat(4));
}

fn ref_matmul(m: usize, n: usize, k: usize, a: &[f32], bm: &[f32], bt: bool) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f32;
            for p in 0..k {
                let bv = if bt { bm[j * k + p] } else { bm[p * n + j] };
                s += a[i * k + p] * bv;
            }
            c[i * n + j] = s;
        }
    }
    c
}

#[test]
fn matmul_f32_plain_transposed_and_accumulating() {
    for &(m, n, k, bt) in &[
        (7usize, 5usize, 9usize, false),
        (16, 16, 16, true),
        (1, 33, 3, false),
    ] {
        let mut b = bench();
        let mut rng = Rng(m as u64 * 31 + n as u64);
        let a: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
        let bm: Vec<f32> = (0..k * n).map(|_| rng.f32()).collect();
        let mut input = f32_bytes(&a);
        input.extend(f32_bytes(&bm));
        let (sa, sb, sc) = (0u32, (m * k * 4) as u32, ((m * k + k * n) * 4) as u32);
        let ldb = if bt { k } else { n } as u32;
        let mm = |acc| Insn::Matmul {
            dtype: DType::F32,
            accumulate: acc,
            transpose_b: bt,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a: tile(sa, k as u32),
            b: tile(sb, ldb),
            c: tile(sc, n as u32),
        };
        let (c, out) = run_program(
            &mut b,
            &input,
            m * n * 4,
            &[
                load(IN_VA, 0, input.len() as u32),
                mm(false),
                mm(true),
                store(OUT_VA, sc, (m * n * 4) as u32),
            ],
        );
        assert_eq!(c.status, 0);
        let want: Vec<f32> = ref_matmul(m, n, k, &a, &bm, bt)
            .iter()
            .map(|x| 2.0 * x)
            .collect();
        assert_close(&bytes_f32(&out), &want, 1e-5);
    }
}

#[test]
fn matmul_int8_to_int32_is_exact() {
    let (m, n, k) = (9usize, 6usize, 37usize);
    let mut b = bench();
    let mut rng = Rng(5);
    let a: Vec<i8> = (0..m * k).map(|_| rng.i8()).collect();
    let bm: Vec<i8> = (0..k * n).map(|_| rng.i8()).collect();
    let mut input: Vec<u8> = a.iter().map(|&x| x as u8).collect();
    input.extend(bm.iter().map(|&x| x as u8));
    let sc = 1024u32;
    let (c, out) = run_program(
        &mut b,
        &input,
        m * n * 4,
        &[
            load(IN_VA, 0, input.len() as u32),
            Insn::Matmul {
                dtype: DType::I8,
                accumulate: false,
                transpose_b: false,
                m: m as u32,
                n: n as u32,
                k: k as u32,
                a: tile(0, k as u32),
                b: tile((m * k) as u32, n as u32),
                c: tile(sc, n as u32),
            },
            store(OUT_VA, sc, (m * n * 4) as u32),
        ],
    );
    assert_eq!(c.status, 0);
    let got = bytes_i32(&out);
    for i in 0..m {
        for j in 0..n {
            let want: i32 = (0..k)
                .map(|p| a[i * k + p] as i32 * bm[p * n + j] as i32)
                .sum();
            assert_eq!(got[i * n + j], want, "({i},{j})");
        }
    }
}

/// One REQUANT over an i32 tile already in `input` at SRAM 0 (multipliers
/// and biases after it), the i8 result read back.
fn run_requant(input: &[u8], rows: u32, cols: u32, insn: impl Fn(Tile, Tile) -> Insn) -> Vec<i8> {
    let mut b = bench();
    let n = (rows * cols) as usize;
    let (c, out) = run_program(
        &mut b,
        input,
        n,
        &[
            load(IN_VA, 0, input.len() as u32),
            insn(tile(0, cols), tile(4096, cols)),
            store(OUT_VA, 4096, n as u32),
        ],
    );
    assert_eq!(c.status, 0, "{c:?}");
    out.iter().map(|&x| x as i8).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Hand-computed from the spec's formula (npu-hw.rst, "The normative
/// REQUANT arithmetic"): v = (x + bias) * mult, r = round half up of
/// v / 2^shift, clamp(r + zp, lo, hi). Ties in both directions, a product
/// that needs 64 bits, and both clamp bounds.
#[test]
fn requant_per_channel_with_bias_hand_computed() {
    // Per channel: mult / 2^31 = 1/4, 1/8, 3/16, 1/2; bias 5, -5, 50, -50.
    let mults = [1 << 29, 1 << 28, 3 << 27, 1 << 30];
    let bias = [5, -5, 50, -50];
    #[rustfmt::skip]
    let acc = [
        5,       -7,  -58,  -153,
        -15,      9,  -50,  i32::MIN,
        i32::MAX, 1,    2,  245,
    ];
    #[rustfmt::skip]
    let want: [i8; 12] = [
        // (5+5)/4 = 2.5 -> 3; (-7-5)/8 = -1.5 -> -1; (-58+50)*3/16 = -1.5 -> -1; (-153-50)/2 = -101.5 -> -101
        6, 2, 2, -98,
        // -10/4 = -2.5 -> -2; 4/8 = 0.5 -> 1; 0 -> 0; (i32::MIN - 50)/2 -> clamped
        1, 4, 3, -100,
        // clamped; -4/8 = -0.5 -> 0; 52*3/16 = 9.75 -> 10; 195/2 = 97.5 -> 98 -> 101 clamped
        100, 3, 13, 100,
    ];
    let mut input = i32_bytes(&acc);
    input.extend(i32_bytes(&mults));
    input.extend(i32_bytes(&bias));
    let got = run_requant(&input, 3, 4, |src, dst| Insn::Requant {
        rows: 3,
        cols: 4,
        src,
        dst,
        mult: 48,
        per_channel: true,
        bias: Some(64),
        shift: 31,
        zero_point: 3,
        lo: -100,
        hi: 100,
    });
    assert_eq!(got, want);
}

/// The shift's extremes, a negative multiplier, and a value whose exact
/// product needs 65 bits ((i32::MIN + i32::MIN) * i32::MIN = 2^63).
#[test]
fn requant_extreme_shifts_and_products_hand_computed() {
    // shift 1, mult 1: x / 2 rounded half up, zp -5.
    let got = run_requant(&i32_bytes(&[-3, 3, 255, -255]), 1, 4, |src, dst| {
        Insn::Requant {
            rows: 1,
            cols: 4,
            src,
            dst,
            mult: 1,
            per_channel: false,
            bias: None,
            shift: 1,
            zero_point: -5,
            lo: -128,
            hi: 127,
        }
    });
    // -1.5 -> -1; 1.5 -> 2; 127.5 -> 128; -127.5 -> -127 -> -132 clamped
    assert_eq!(got, [-6, -3, 123, -128]);
    // shift 62, mult -2^31, zp 7.
    let got = run_requant(
        &i32_bytes(&[i32::MIN, i32::MAX, 1, -1]),
        1,
        4,
        |src, dst| Insn::Requant {
            rows: 1,
            cols: 4,
            src,
            dst,
            mult: i32::MIN as u32,
            per_channel: false,
            bias: None,
            shift: 62,
            zero_point: 7,
            lo: -128,
            hi: 127,
        },
    );
    // 2^62 / 2^62 = 1; -(2^31 - 1) * 2^31 / 2^62 = -1 + 2^-31 -> -1;
    // -2^31 / 2^62 -> 0; 2^31 / 2^62 -> 0
    assert_eq!(got, [8, 6, 7, 7]);
    // Bias i32::MIN on an accumulator of i32::MIN, multiplier -2^31: the
    // exact product is +2^63, so r = 2^63 / 2^62 = 2.
    let mut input = i32_bytes(&[i32::MIN, i32::MIN + 1]);
    input.extend(i32_bytes(&[i32::MIN, i32::MIN]));
    let got = run_requant(&input, 1, 2, |src, dst| Insn::Requant {
        rows: 1,
        cols: 2,
        src,
        dst,
        mult: i32::MIN as u32,
        per_channel: false,
        bias: Some(8),
        shift: 62,
        zero_point: 0,
        lo: -128,
        hi: 127,
    });
    // (2^63 - 2^31) / 2^62 = 2 - 2^-31 -> 2
    assert_eq!(got, [2, 2]);
}

/// gemmlowp/TFLite's fixed-point multiply, written out from their published
/// definitions (gemmlowp fixedpoint.h): SaturatingRoundingDoublingHighMul
/// then RoundingDivideByPOT, both rounding to nearest with ties away from
/// zero. With a Q31 multiplier and right shift `e` this is the spec's
/// formula with shift = 31 + e, except at ties and for double rounding.
fn tflite_multiply_by_quantized_multiplier(x: i32, q31: i32, e: u32) -> i32 {
    let srdhm = if x == i32::MIN && q31 == i32::MIN {
        i32::MAX
    } else {
        let ab = x as i64 * q31 as i64;
        let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        // C++ integer division truncates toward zero.
        ((ab + nudge) / (1i64 << 31)) as i32
    };
    let mask = (1i32 << e) - 1;
    let remainder = srdhm & mask;
    let threshold = (mask >> 1) + (srdhm < 0) as i32;
    (srdhm >> e) + (remainder > threshold) as i32
}

/// Random accumulators and Q31 multipliers through the device against
/// TFLite's arithmetic: equal whenever the exact value is not within
/// TFLite's first rounding (2^30 / 2^(31+e)) of a tie (with e = 0 there is
/// one rounding: only exact ties may differ); never more than 1 apart.
#[test]
fn requant_agrees_with_tflite_away_from_ties() {
    let (rows, cols) = (16u32, 16u32);
    let mut rng = Rng(0x5eed);
    for e in [0u32, 3, 10] {
        let acc: Vec<i32> = (0..rows * cols)
            .map(|_| (rng.next() as i32) >> (rng.next() % 24))
            .collect();
        let mults: Vec<i32> = (0..cols)
            .map(|_| (1 << 30) + (rng.next() % (1 << 30)) as i32)
            .collect();
        let mut input = i32_bytes(&acc);
        let mult_at = input.len() as u32;
        input.extend(i32_bytes(&mults));
        let got = run_requant(&input, rows, cols, |src, dst| Insn::Requant {
            rows,
            cols,
            src,
            dst,
            mult: mult_at,
            per_channel: true,
            bias: None,
            shift: 31 + e as u8,
            zero_point: 0,
            lo: -128,
            hi: 127,
        });
        let mut exact_matches = 0;
        for (i, &x) in acc.iter().enumerate() {
            let m = mults[i % cols as usize];
            let want = tflite_multiply_by_quantized_multiplier(x, m, e).clamp(-128, 127) as i8;
            let den = 1i128 << (31 + e);
            let rem = (x as i128 * m as i128).rem_euclid(den);
            // e = 0 rounds once: only an exact tie can differ.
            let window: i128 = if e == 0 { 0 } else { 1 << 30 };
            let near_tie = (2 * rem - den).abs() <= 2 * window;
            if near_tie {
                assert!(
                    (got[i] as i32 - want as i32).abs() <= 1,
                    "e {e} x {x} mult {m}: device {} tflite {want}",
                    got[i]
                );
            } else {
                assert_eq!(got[i], want, "e {e} x {x} mult {m}");
                exact_matches += 1;
            }
        }
        assert!(
            exact_matches > 150,
            "only {exact_matches} values away from ties"
        );
    }
}

#[test]
fn convert_all_kinds() {
    let mut b = bench();
    let ints: Vec<i8> = vec![-128, -1, 0, 5, 127];
    let floats: Vec<f32> = vec![-2.5, -1.5, 0.5, 1.5, 3e10];
    let mut input: Vec<u8> = ints.iter().map(|&x| x as u8).collect();
    input.resize(8, 0);
    input.extend(f32_bytes(&floats));
    let t = |a| tile(a, 5);
    let (c, out) = run_program(
        &mut b,
        &input,
        60,
        &[
            load(IN_VA, 0, input.len() as u32),
            Insn::Convert {
                conv: Conversion::I8ToI32,
                rows: 1,
                cols: 5,
                src: t(0),
                dst: t(64),
                zero_point: 1,
                scale: 0.0,
            },
            Insn::Convert {
                conv: Conversion::I32ToF32,
                rows: 1,
                cols: 5,
                src: t(64),
                dst: t(128),
                zero_point: 0,
                scale: 0.0,
            },
            Insn::Convert {
                conv: Conversion::F32ToI32,
                rows: 1,
                cols: 5,
                src: t(8),
                dst: t(192),
                zero_point: 0,
                scale: 0.0,
            },
            store(OUT_VA, 64, 20),
            store(OUT_VA + 20, 128, 20),
            store(OUT_VA + 40, 192, 20),
        ],
    );
    assert_eq!(c.status, 0);
    assert_eq!(bytes_i32(&out[0..20]), vec![-129, -2, -1, 4, 126]);
    assert_eq!(
        bytes_f32(&out[20..40]),
        vec![-129.0, -2.0, -1.0, 4.0, 126.0]
    );
    assert_eq!(bytes_i32(&out[40..60]), vec![-2, -2, 0, 2, i32::MAX]);
}

#[test]
fn binary_ops_with_every_broadcast() {
    // Operands chosen so every result is exact in f32; expected values
    // worked out by hand, not with the device's formulas.
    let (rows, cols) = (2u32, 3u32);
    let a: [f32; 6] = [1.0, -2.0, 3.0, 0.5, -4.0, 6.0];
    let full: [f32; 6] = [2.0, 4.0, -1.0, 0.25, 8.0, 2.0];
    let per_row: [f32; 2] = [2.0, -0.5];
    let per_col: [f32; 3] = [4.0, -2.0, 0.5];
    let scalar = 0.25f32;
    let mut input = f32_bytes(&a);
    input.extend(f32_bytes(&full));
    input.extend(f32_bytes(&per_row));
    input.extend(f32_bytes(&per_col));
    let (sa, sf, sr, sc) = (0u32, 24u32, 48u32, 56u32);
    use BinaryOp::*;
    use Broadcast::{None as Full, PerCol, PerRow, Scalar};
    #[rustfmt::skip]
    let cases: [(BinaryOp, Broadcast, [f32; 6]); 24] = [
        (Add, Full,   [3.0, 2.0, 2.0, 0.75, 4.0, 8.0]),
        (Add, PerRow, [3.0, 0.0, 5.0, 0.0, -4.5, 5.5]),
        (Add, PerCol, [5.0, -4.0, 3.5, 4.5, -6.0, 6.5]),
        (Add, Scalar, [1.25, -1.75, 3.25, 0.75, -3.75, 6.25]),
        (Sub, Full,   [-1.0, -6.0, 4.0, 0.25, -12.0, 4.0]),
        (Sub, PerRow, [-1.0, -4.0, 1.0, 1.0, -3.5, 6.5]),
        (Sub, PerCol, [-3.0, 0.0, 2.5, -3.5, -2.0, 5.5]),
        (Sub, Scalar, [0.75, -2.25, 2.75, 0.25, -4.25, 5.75]),
        (Mul, Full,   [2.0, -8.0, -3.0, 0.125, -32.0, 12.0]),
        (Mul, PerRow, [2.0, -4.0, 6.0, -0.25, 2.0, -3.0]),
        (Mul, PerCol, [4.0, 4.0, 1.5, 2.0, 8.0, 3.0]),
        (Mul, Scalar, [0.25, -0.5, 0.75, 0.125, -1.0, 1.5]),
        (Div, Full,   [0.5, -0.5, -3.0, 2.0, -0.5, 3.0]),
        (Div, PerRow, [0.5, -1.0, 1.5, -1.0, 8.0, -12.0]),
        (Div, PerCol, [0.25, 1.0, 6.0, 0.125, 2.0, 12.0]),
        (Div, Scalar, [4.0, -8.0, 12.0, 2.0, -16.0, 24.0]),
        (Max, Full,   [2.0, 4.0, 3.0, 0.5, 8.0, 6.0]),
        (Max, PerRow, [2.0, 2.0, 3.0, 0.5, -0.5, 6.0]),
        (Max, PerCol, [4.0, -2.0, 3.0, 4.0, -2.0, 6.0]),
        (Max, Scalar, [1.0, 0.25, 3.0, 0.5, 0.25, 6.0]),
        (Min, Full,   [1.0, -2.0, -1.0, 0.25, -4.0, 2.0]),
        (Min, PerRow, [1.0, -2.0, 2.0, -0.5, -4.0, -0.5]),
        (Min, PerCol, [1.0, -2.0, 0.5, 0.5, -4.0, 0.5]),
        (Min, Scalar, [0.25, -2.0, 0.25, 0.25, -4.0, 0.25]),
    ];
    for (op, bcast, want) in cases {
        let baddr = match bcast {
            Full => sf,
            PerRow => sr,
            PerCol => sc,
            Scalar => 0,
        };
        let mut b = bench();
        let (c, out) = run_program(
            &mut b,
            &input,
            24,
            &[
                load(IN_VA, 0, input.len() as u32),
                Insn::Binary {
                    op,
                    dtype: DType::F32,
                    bcast,
                    rows,
                    cols,
                    a: tile(sa, cols),
                    b: tile(baddr, cols),
                    out: tile(1024, cols),
                    scalar: scalar.to_bits(),
                },
                store(OUT_VA, 1024, 24),
            ],
        );
        assert_eq!(c.status, 0);
        assert_eq!(bytes_f32(&out), want, "{op:?} {bcast:?}");
    }
}

#[test]
fn binary_i32_wraps_and_divides_by_zero_to_zero() {
    let mut b = bench();
    let a: Vec<i32> = vec![i32::MAX, 7, -7, 5];
    let bb: Vec<i32> = vec![1, 2, 0, -5];
    let mut input: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
    input.extend(bb.iter().flat_map(|v| v.to_le_bytes()));
    let bin = |op, out| Insn::Binary {
        op,
        dtype: DType::I32,
        bcast: Broadcast::None,
        rows: 1,
        cols: 4,
        a: tile(0, 4),
        b: tile(16, 4),
        out: tile(out, 4),
        scalar: 0,
    };
    let (c, out) = run_program(
        &mut b,
        &input,
        32,
        &[
            load(IN_VA, 0, 32),
            bin(BinaryOp::Add, 64),
            bin(BinaryOp::Div, 80),
            store(OUT_VA, 64, 32),
        ],
    );
    assert_eq!(c.status, 0);
    assert_eq!(bytes_i32(&out[..16]), vec![i32::MIN, 9, -7, 0]);
    assert_eq!(bytes_i32(&out[16..]), vec![i32::MAX, 3, 0, -1]);
}

#[test]
fn unary_activations() {
    let x: Vec<f32> = vec![-3.0, -0.5, 0.0, 0.25, 2.0, 4.0];
    // Exact results, and the transcendental ones to f64 precision (from
    // tables, not from the f32 functions the device calls); clamp to [-1, 1].
    #[rustfmt::skip]
    let cases: [(UnaryOp, [f64; 6]); 6] = [
        (UnaryOp::Relu, [0.0, 0.0, 0.0, 0.25, 2.0, 4.0]),
        (UnaryOp::Clamp, [-1.0, -0.5, 0.0, 0.25, 1.0, 1.0]),
        (UnaryOp::Sigmoid, [0.047_425_873_177_566_78, 0.377_540_668_798_145_4, 0.5, 0.562_176_500_885_798_1, 0.880_797_077_977_882_3, 0.982_013_790_037_908_5]),
        (UnaryOp::Tanh, [-0.995_054_753_686_730_5, -0.462_117_157_260_009_74, 0.0, 0.244_918_662_403_709_13, 0.964_027_580_075_816_9, 0.999_329_299_739_067]),
        (UnaryOp::Exp, [0.049_787_068_367_863_944, 0.606_530_659_712_633_4, 1.0, 1.284_025_416_687_741_4, 7.389_056_098_930_65, 54.598_150_033_144_236]),
        (UnaryOp::Recip, [-1.0 / 3.0, -2.0, f64::INFINITY, 4.0, 0.5, 0.25]),
    ];
    for (op, want) in cases {
        let mut b = bench();
        let (c, out) = run_program(
            &mut b,
            &f32_bytes(&x),
            24,
            &[
                load(IN_VA, 0, 24),
                Insn::Unary {
                    op,
                    dtype: DType::F32,
                    rows: 2,
                    cols: 3,
                    src: tile(0, 3),
                    dst: tile(256, 3),
                    lo: (-1.0f32).to_bits(),
                    hi: 1.0f32.to_bits(),
                },
                store(OUT_VA, 256, 24),
            ],
        );
        assert_eq!(c.status, 0, "{op:?}");
        // npu-hw.rst: relu and clamp are exact, recip correctly rounded;
        // exp, tanh and sigmoid within 4 ulps of the exact result.
        let correctly_rounded = matches!(op, UnaryOp::Relu | UnaryOp::Clamp | UnaryOp::Recip);
        for (&g, &w) in bytes_f32(&out).iter().zip(&want) {
            if correctly_rounded || w == 0.0 {
                assert_eq!(g, w as f32, "{op:?}: got {g} want {w}");
            } else {
                let ulp = 2f64.powi(w.abs().log2().floor() as i32 - 23);
                assert!(
                    (g as f64 - w).abs() <= 4.0 * ulp,
                    "{op:?}: got {g} want {w}"
                );
            }
        }
    }
}

#[test]
fn reductions_along_both_axes() {
    let x: Vec<f32> = vec![1.0, -2.0, 3.0, 4.0, 5.0, -6.0];
    let mut b = bench();
    let red = |op, axis, dst| Insn::Reduce {
        op,
        axis,
        dtype: DType::F32,
        rows: 2,
        cols: 3,
        src: tile(0, 3),
        dst,
    };
    let (c, out) = run_program(
        &mut b,
        &f32_bytes(&x),
        40,
        &[
            load(IN_VA, 0, 24),
            red(ReduceOp::Sum, Axis::Cols, 64),
            red(ReduceOp::Max, Axis::Cols, 72),
            red(ReduceOp::Sum, Axis::Rows, 80),
            red(ReduceOp::Max, Axis::Rows, 92),
            store(OUT_VA, 64, 40),
        ],
    );
    assert_eq!(c.status, 0);
    assert_eq!(
        bytes_f32(&out),
        vec![2.0, 3.0, 3.0, 5.0, 5.0, 3.0, -3.0, 4.0, 5.0, 3.0]
    );
}

#[test]
fn pooling_max_and_average_with_padding() {
    // 1 channel, 4x4 input, 3x3 window, stride 2, pad 1 -> 2x2.
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let geom = PoolGeom {
        channels: 1,
        in_h: 4,
        in_w: 4,
        out_h: 2,
        out_w: 2,
        kernel: [3, 3],
        stride: [2, 2],
        pad: [1, 1],
    };
    let mut b = bench();
    let (c, out) = run_program(
        &mut b,
        &f32_bytes(&x),
        32,
        &[
            load(IN_VA, 0, 64),
            Insn::Pool {
                op: PoolOp::Max,
                geom,
                src: 0,
                dst: 128,
            },
            Insn::Pool {
                op: PoolOp::Avg,
                geom,
                src: 0,
                dst: 144,
            },
            store(OUT_VA, 128, 32),
        ],
    );
    assert_eq!(c.status, 0);
    let got = bytes_f32(&out);
    assert_eq!(&got[..4], &[5.0, 7.0, 13.0, 15.0]);
    // Top-left window covers rows 0-1, cols 0-1 (padding excluded); the
    // bottom-right one rows 1-3, cols 1-3.
    assert_eq!(got[4], (0.0 + 1.0 + 4.0 + 5.0) / 4.0);
    assert_eq!(
        got[7],
        (5.0 + 6.0 + 7.0 + 9.0 + 10.0 + 11.0 + 13.0 + 14.0 + 15.0) / 9.0
    );
}

#[test]
fn mark_nop_and_barrier_complete_and_change_nothing() {
    use npu_device::regs::PerfCounter;
    let mut b = bench();
    let prog = [
        Insn::Fill {
            dst: 0,
            len: 16,
            pattern: 0x5a5a_5a5a,
        },
        Insn::Nop,
        Insn::Mark { tag: 1 },
        Insn::Barrier,
        Insn::Nop,
        store(OUT_VA, 0, 16),
    ];
    let (c, out) = run_program(&mut b, &[], 16, &prog);
    assert_eq!(c.status, 0);
    // The SRAM the fill wrote is untouched, and the only memory traffic
    // is the command-buffer fetch (7 instructions with END) and the store.
    assert_eq!(out, vec![0x5a; 16]);
    assert_eq!(b.device.perf(PerfCounter::Instructions), 7);
    assert_eq!(
        b.device.perf(PerfCounter::DmaBytesRead),
        7 * INSN_SIZE as u64
    );
    assert_eq!(b.device.perf(PerfCounter::DmaBytesWritten), 16);
    assert_eq!(b.device.perf(PerfCounter::JobsDone), 1);
}

#[test]
fn double_buffering_beats_serial_schedule() {
    // Four tiles: load, compute, store. Serial: barrier after each step.
    // Double-buffered: the load of tile i+1 goes to the other SRAM slot while
    // tile i computes; the scoreboard lets them overlap.
    let n = 32u32;
    let bytes = n * n * 4;
    let tiles = 4u32;
    let input = vec![0u8; (bytes * tiles) as usize];
    let mm = |slot: u32| Insn::Matmul {
        dtype: DType::F32,
        accumulate: false,
        transpose_b: false,
        m: n,
        n,
        k: n,
        a: tile(slot * 2 * bytes, n),
        b: tile(slot * 2 * bytes, n),
        c: tile(slot * 2 * bytes + bytes, n),
    };
    let mut serial = vec![];
    let mut pipelined = vec![];
    let va = |t: u32| IN_VA + (t * bytes) as u64;
    for t in 0..tiles {
        serial.extend([
            load(va(t), 0, bytes),
            Insn::Barrier,
            mm(0),
            Insn::Barrier,
            store(OUT_VA, bytes, bytes),
            Insn::Barrier,
        ]);
    }
    // The DMA engine runs its queue in order, so the load of tile t+1 is
    // issued before the store of tile t.
    pipelined.push(load(va(0), 0, bytes));
    for t in 0..tiles {
        let slot = t % 2;
        if t + 1 < tiles {
            pipelined.push(load(va(t + 1), (1 - slot) * 2 * bytes, bytes));
        }
        pipelined.extend([
            mm(slot),
            store(
                OUT_VA + (slot * bytes) as u64,
                slot * 2 * bytes + bytes,
                bytes,
            ),
        ]);
    }
    let mut b = bench();
    let (c1, _) = run_program(&mut b, &input, (2 * bytes) as usize, &serial);
    let mut b = bench();
    let (c2, _) = run_program(&mut b, &input, (2 * bytes) as usize, &pipelined);
    assert_eq!((c1.status, c2.status), (0, 0));
    println!(
        "modelled cycles: serial {}, double-buffered {}",
        c1.cycles, c2.cycles
    );
    assert!(
        c2.cycles < c1.cycles,
        "double-buffered {} cycles vs serial {}",
        c2.cycles,
        c1.cycles
    );
}

/// The convolution recipe of the spec ("Expressing a convolution"): FILL a
/// padded tile, load the input into its interior with a 3-D DMA, gather the
/// im2col matrix with strided COPYs, MATMUL with the filter matrix.
#[test]
fn convolution_via_fill_dma_copy_and_matmul() {
    let (c, h, w, k, r, s, stride, pad) = (
        2usize, 5usize, 6usize, 3usize, 3usize, 3usize, 2usize, 1usize,
    );
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let (oh, ow) = ((hp - r) / stride + 1, (wp - s) / stride + 1);
    let mut rng = Rng(77);
    let x: Vec<f32> = (0..c * h * w).map(|_| rng.f32()).collect();
    let wt: Vec<f32> = (0..k * c * r * s).map(|_| rng.f32()).collect(); // [k][c][r][s]
    let mut input = f32_bytes(&x);
    let w_off = input.len() as u32;
    input.extend(f32_bytes(&wt));

    let padded = 0u32; // [c][hp][wp] f32
    let cols = (padded as usize + c * hp * wp * 4) as u32; // im2col [(c,r,s)][oh*ow]
    let wmat = cols + (c * r * s * oh * ow * 4) as u32; // filter [k][c*r*s]
    let out = wmat + (k * c * r * s * 4) as u32; // [k][oh*ow]
    let mut prog = vec![
        Insn::Fill {
            dst: padded,
            len: (c * hp * wp * 4) as u32,
            pattern: 0,
        },
        Insn::DmaLoad {
            va: IN_VA,
            sram: padded + ((pad * wp + pad) * 4) as u32,
            mem: Strided {
                shape: [(w * 4) as u32, h as u32, c as u32],
                stride: [(w * 4) as u32, (h * w * 4) as u32],
            },
            sram_layout: Strided {
                shape: [(w * 4) as u32, h as u32, c as u32],
                stride: [(wp * 4) as u32, (hp * wp * 4) as u32],
            },
        },
        load(IN_VA + w_off as u64, wmat, (k * c * r * s * 4) as u32),
    ];
    for ci in 0..c {
        for ri in 0..r {
            for si in 0..s {
                let row = (ci * r + ri) * s + si;
                prog.push(Insn::Copy {
                    src: padded + ((ci * hp * wp + ri * wp + si) * 4) as u32,
                    dst: cols + (row * oh * ow * 4) as u32,
                    // One 4-byte element per "row", ow of them stride apart,
                    // oh planes stride rows apart.
                    src_layout: Strided {
                        shape: [4, ow as u32, oh as u32],
                        stride: [(stride * 4) as u32, (stride * wp * 4) as u32],
                    },
                    dst_layout: Strided {
                        shape: [4, ow as u32, oh as u32],
                        stride: [4, (ow * 4) as u32],
                    },
                });
            }
        }
    }
    let crs = (c * r * s) as u32;
    prog.push(Insn::Matmul {
        dtype: DType::F32,
        accumulate: false,
        transpose_b: false,
        m: k as u32,
        n: (oh * ow) as u32,
        k: crs,
        a: tile(wmat, crs),
        b: tile(cols, (oh * ow) as u32),
        c: tile(out, (oh * ow) as u32),
    });
    prog.push(store(OUT_VA, out, (k * oh * ow * 4) as u32));
    let mut b = Bench::new(
        npu_device::DeviceConfig {
            sram_size: 64 * 1024,
            contexts: 2,
            ..Default::default()
        },
        16,
    );
    let (cpl, got) = run_program(&mut b, &input, k * oh * ow * 4, &prog);
    assert_eq!(cpl.status, 0);
    let mut want = vec![0f32; k * oh * ow];
    for ko in 0..k {
        for y in 0..oh {
            for xo in 0..ow {
                let mut acc = 0f32;
                for ci in 0..c {
                    for ri in 0..r {
                        for si in 0..s {
                            let iy = (y * stride + ri) as isize - pad as isize;
                            let ix = (xo * stride + si) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += x[(ci * h + iy as usize) * w + ix as usize]
                                    * wt[((ko * c + ci) * r + ri) * s + si];
                            }
                        }
                    }
                }
                want[(ko * oh + y) * ow + xo] = acc;
            }
        }
    }
    assert_close(&bytes_f32(&got), &want, 1e-5);
}

#[test]
fn memory_side_stride_zero_broadcasts_a_row() {
    let mut b = bench();
    let row: Vec<u8> = (1..=8).collect();
    let (c, out) = run_program(
        &mut b,
        &row,
        32,
        &[
            Insn::DmaLoad {
                va: IN_VA,
                sram: 0,
                mem: Strided {
                    shape: [8, 4, 1],
                    stride: [0, 0],
                },
                sram_layout: Strided {
                    shape: [8, 4, 1],
                    stride: [8, 32],
                },
            },
            store(OUT_VA, 0, 32),
        ],
    );
    assert_eq!(c.status, 0);
    assert_eq!(out, row.repeat(4));
}

#[test]
fn binary_i32_min_divided_by_minus_one_is_zero() {
    let mut b = bench();
    let input: Vec<u8> = [i32::MIN, -1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let div = Insn::Binary {
        op: BinaryOp::Div,
        dtype: DType::I32,
        bcast: Broadcast::None,
        rows: 1,
        cols: 1,
        a: tile(0, 1),
        b: tile(4, 1),
        out: tile(16, 1),
        scalar: 0,
    };
    let (c, out) = run_program(
        &mut b,
        &input,
        4,
        &[load(IN_VA, 0, 8), div, store(OUT_VA, 16, 4)],
    );
    assert_eq!(c.status, 0);
    assert_eq!(bytes_i32(&out), vec![0]);
}

#[test]
fn short_strided_rows_across_pages_move_as_one_by_one() {
    // (row bytes, rows, planes, memory row stride, memory plane stride):
    // element gathers over several pages, overlapping rows (stride below
    // the row), interleaved planes, rows straddling pages, 1-byte rows.
    let cases = [
        (4u32, 600u32, 3u32, 8u32, 4800u32),
        (4, 100, 5, 2, 4000),
        (4, 300, 4, 12, 4),
        (12, 200, 2, 20, 4103),
        (1, 1000, 2, 3, 5000),
    ];
    let input: Vec<u8> = (0..16384u32).map(|i| (i * 7 + i / 251) as u8).collect();
    for (n, rows, planes, ms0, ms1) in cases {
        let mut b = bench();
        let packed_len = n * rows * planes;
        let mem = Strided {
            shape: [n, rows, planes],
            stride: [ms0, ms1],
        };
        let packed = Strided {
            shape: [n, rows, planes],
            stride: [n, n * rows],
        };
        let scatter_at = packed_len.next_multiple_of(4096) + 4096 - 3;
        let out_len = scatter_at as usize + 16384;
        let (c, out) = run_program(
            &mut b,
            &input,
            out_len,
            &[
                Insn::DmaLoad {
                    va: IN_VA,
                    sram: 0,
                    mem,
                    sram_layout: packed,
                },
                store(OUT_VA, 0, packed_len),
                Insn::DmaStore {
                    va: OUT_VA + scatter_at as u64,
                    sram: 0,
                    mem,
                    sram_layout: packed,
                },
            ],
        );
        assert_eq!(c.fault(), Some(Fault::Ok), "{n}x{rows}x{planes}");
        // Row by row, as the spec orders them: planes outer, rows inner,
        // the later row winning.
        let (n, rows, planes) = (n as usize, rows as usize, planes as usize);
        let mut gathered = Vec::new();
        let mut scattered = vec![0u8; 16384];
        for p in 0..planes {
            for r in 0..rows {
                let m = p * ms1 as usize + r * ms0 as usize;
                let row = &input[m..m + n];
                gathered.extend_from_slice(row);
                scattered[m..m + n].copy_from_slice(row);
            }
        }
        assert_eq!(
            &out[..gathered.len()],
            &gathered[..],
            "{n}x{rows}x{planes} load"
        );
        assert_eq!(
            &out[scatter_at as usize..],
            &scattered[..],
            "{n}x{rows}x{planes} store"
        );
    }
}

#[test]
fn small_k_matmul_in_place_and_through_a_copy_agree() {
    // k of 1 to 8 (the device's direct kernel), rows longer than its block
    // of columns, leading dimensions past the columns. The second program
    // writes C over B (so the device copies its operands first): the same
    // bits, which are the GEMM crate's.
    for &(m, n, k) in &[
        (4usize, 1300usize, 3usize),
        (3, 700, 1),
        (2, 40, 8),
        (9, 17, 5),
    ] {
        let (lda, ldb, ldc) = (k + 2, n + 7, n + 3);
        let mut rng = Rng(m as u64 * 131 + n as u64 + k as u64);
        let a: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
        let bm: Vec<f32> = (0..k * n).map(|_| rng.f32()).collect();
        let mut input = vec![0f32; m * lda + k * ldb];
        for i in 0..m {
            input[i * lda..i * lda + k].copy_from_slice(&a[i * k..(i + 1) * k]);
        }
        for p in 0..k {
            let at = m * lda + p * ldb;
            input[at..at + n].copy_from_slice(&bm[p * n..(p + 1) * n]);
        }
        let input = f32_bytes(&input);
        let (sa, sb) = (0u32, (m * lda * 4) as u32);
        let apart = input.len().next_multiple_of(64) as u32;
        let c_len = (((m - 1) * ldc + n) * 4) as u32;
        let mm = |c: u32, acc: bool| Insn::Matmul {
            dtype: DType::F32,
            accumulate: acc,
            transpose_b: false,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a: tile(sa, lda as u32),
            b: tile(sb, ldb as u32),
            c: tile(c, ldc as u32),
        };
        let mut outs = Vec::new();
        for (c_at, twice) in [(apart, false), (sb, false), (apart, true)] {
            let mut prog = vec![load(IN_VA, 0, input.len() as u32), mm(c_at, false)];
            if twice {
                prog.push(mm(c_at, true));
            }
            prog.push(store(OUT_VA, c_at, c_len));
            let (c, out) = run_program(&mut bench(), &input, c_len as usize, &prog);
            assert_eq!(c.fault(), Some(Fault::Ok), "{m}x{n}x{k}");
            let packed: Vec<f32> = (0..m)
                .flat_map(|i| bytes_f32(&out[i * ldc * 4..(i * ldc + n) * 4]))
                .collect();
            outs.push(packed);
        }
        let want = ref_matmul(m, n, k, &a, &bm, false);
        let doubled: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
        assert_close(&outs[0], &want, 1e-5);
        assert_close(&outs[2], &doubled, 1e-5);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&outs[0]), bits(&outs[1]), "{m}x{n}x{k}");
        // And the bits of the GEMM crate the device uses for larger k (so
        // a model's outputs do not depend on which kernel ran).
        let mut crate_c = vec![0f32; m * n];
        for beta in [0.0, 1.0] {
            // SAFETY: dense row-major operands of the sizes given.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    bm.as_ptr(),
                    n as isize,
                    1,
                    beta,
                    crate_c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            };
            let device = if beta == 0.0 { &outs[0] } else { &outs[2] };
            assert_eq!(bits(device), bits(&crate_c), "{m}x{n}x{k}, beta {beta}");
        }
    }
}

/// IEEE 754-2019 maximumNumber, as npu-hw.rst defines max: a NaN loses to
/// a number, +0 is above -0.
fn maximum_number(x: f32, y: f32) -> f32 {
    if x.is_nan() {
        y
    } else if y.is_nan() || x > y || (x == y && y.is_sign_negative()) {
        x
    } else {
        y
    }
}

#[test]
fn pooling_matches_the_spec_bit_for_bit_on_many_geometries() {
    // Windows inside the rows and clipped by padding at both edges, strides
    // 1 to 3, wide rows; values with NaNs, signed zeros and infinities. The
    // reference is the spec's: max folds maximumNumber from -inf (an
    // all-NaN window gives -inf), average adds the window's elements in
    // row-major order, padding excluded, then divides once by the count.
    let mut rng = Rng(0x5eed);
    let special = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY];
    for case in 0..60 {
        let kernel = [rng.range(1, 4) as u8, rng.range(1, 5) as u8];
        let stride = [rng.range(1, 3) as u8, rng.range(1, 3) as u8];
        let pad = [
            rng.range(0, kernel[0] as usize - 1) as u8,
            rng.range(0, kernel[1] as usize - 1) as u8,
        ];
        let (ih, iw) = (rng.range(1, 9), rng.range(1, 40));
        let channels = rng.range(1, 3);
        let out = |i: usize, k: u8, s: u8, p: u8| {
            (i + 2 * p as usize >= k as usize)
                .then(|| (i + 2 * p as usize - k as usize) / s as usize + 1)
        };
        let (Some(oh), Some(ow)) = (
            out(ih, kernel[0], stride[0], pad[0]),
            out(iw, kernel[1], stride[1], pad[1]),
        ) else {
            continue;
        };
        let x: Vec<f32> = (0..channels * ih * iw)
            .map(|_| {
                if rng.range(0, 9) == 0 {
                    special[rng.range(0, 4)]
                } else {
                    rng.f32() * 100.0
                }
            })
            .collect();
        let geom = PoolGeom {
            channels: channels as u32,
            in_h: ih as u32,
            in_w: iw as u32,
            out_h: oh as u32,
            out_w: ow as u32,
            kernel,
            stride,
            pad,
        };
        let n_out = channels * oh * ow;
        let dst = (x.len() * 4).next_multiple_of(64) as u32;
        let (c, got) = run_program(
            &mut bench(),
            &f32_bytes(&x),
            n_out * 8,
            &[
                load(IN_VA, 0, (x.len() * 4) as u32),
                Insn::Pool {
                    op: PoolOp::Max,
                    geom,
                    src: 0,
                    dst,
                },
                Insn::Pool {
                    op: PoolOp::Avg,
                    geom,
                    src: 0,
                    dst: dst + (n_out * 4) as u32,
                },
                store(OUT_VA, dst, (n_out * 8) as u32),
            ],
        );
        assert_eq!(c.fault(), Some(Fault::Ok), "case {case}: {geom:?}");
        let mut want_max = Vec::new();
        let mut want_avg = Vec::new();
        for ch in 0..channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut m, mut sum, mut count) = (f32::NEG_INFINITY, 0f32, 0u32);
                    for ky in 0..kernel[0] as usize {
                        for kx in 0..kernel[1] as usize {
                            let y = (oy * stride[0] as usize + ky).checked_sub(pad[0] as usize);
                            let xx = (ox * stride[1] as usize + kx).checked_sub(pad[1] as usize);
                            if let (Some(y), Some(xx)) = (y, xx) {
                                if y < ih && xx < iw {
                                    let v = x[(ch * ih + y) * iw + xx];
                                    m = maximum_number(m, v);
                                    sum += v;
                                    count += 1;
                                }
                            }
                        }
                    }
                    want_max.push(m.to_bits());
                    want_avg.push(if count > 0 {
                        (sum / count as f32).to_bits()
                    } else {
                        0
                    });
                }
            }
        }
        // Any NaN is the NaN (the spec does not fix its payload).
        let canon = |b: u32| {
            if f32::from_bits(b).is_nan() {
                u32::MAX
            } else {
                b
            }
        };
        let want_max: Vec<u32> = want_max.into_iter().map(canon).collect();
        let want_avg: Vec<u32> = want_avg.into_iter().map(canon).collect();
        let bits: Vec<u32> = bytes_f32(&got).iter().map(|v| canon(v.to_bits())).collect();
        assert_eq!(&bits[..n_out], &want_max[..], "case {case} max: {geom:?}");
        assert_eq!(
            &bits[n_out..],
            &want_avg[..],
            "case {case} average: {geom:?}"
        );
    }
}

#[test]
fn global_average_pooling_matches_the_spec_on_many_planes() {
    // One output per plane (the window covers the plane, padding
    // included), over up to 20 planes: the device may sum several planes
    // side by side; each plane's sum must still be its elements added in
    // row-major order from +0, then divided once by the count (npu-hw.rst).
    let mut rng = Rng(0x61b);
    let special = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY];
    for case in 0..40 {
        let (ih, iw) = (rng.range(1, 8), rng.range(1, 13));
        let pad = [rng.range(0, 2) as u8, rng.range(0, 2) as u8];
        let kernel = [ih as u8 + 2 * pad[0], iw as u8 + 2 * pad[1]];
        let channels = rng.range(1, 21);
        let x: Vec<f32> = (0..channels * ih * iw)
            .map(|_| {
                if rng.range(0, 19) == 0 {
                    special[rng.range(0, 4)]
                } else {
                    // Magnitudes far apart, so that the order of the sum shows.
                    rng.f32() * [1.0, 1e4, 1e-4][rng.range(0, 2)]
                }
            })
            .collect();
        let geom = PoolGeom {
            channels: channels as u32,
            in_h: ih as u32,
            in_w: iw as u32,
            out_h: 1,
            out_w: 1,
            kernel,
            stride: [1, 1],
            pad,
        };
        let dst = (x.len() * 4).next_multiple_of(64) as u32;
        let (c, got) = run_program(
            &mut bench(),
            &f32_bytes(&x),
            channels * 4,
            &[
                load(IN_VA, 0, (x.len() * 4) as u32),
                Insn::Pool {
                    op: PoolOp::Avg,
                    geom,
                    src: 0,
                    dst,
                },
                store(OUT_VA, dst, (channels * 4) as u32),
            ],
        );
        assert_eq!(c.fault(), Some(Fault::Ok), "case {case}: {geom:?}");
        let canon = |v: f32| if v.is_nan() { u32::MAX } else { v.to_bits() };
        let want: Vec<u32> = x
            .chunks(ih * iw)
            .map(|plane| {
                let sum = plane.iter().fold(0f32, |s, &v| s + v);
                canon(sum / (ih * iw) as f32)
            })
            .collect();
        let bits: Vec<u32> = bytes_f32(&got).iter().map(|&v| canon(v)).collect();
        assert_eq!(bits, want, "case {case}: {geom:?}");
    }
}

#[test]
fn depthwise_mul_add_chains_over_wide_rows_compute_what_the_instructions_do() {
    // As above, with rows of whole and partial blocks of 64 columns (the
    // device may keep a block's accumulators in registers across the taps):
    // acc and tmp as the instructions one by one leave them, and the
    // columns between cols and ld untouched.
    let special = [f32::NAN, -0.0, f32::INFINITY, 1e-40, 3e38, -3e38];
    for (rows, cols, taps) in [
        (3usize, 64usize, 2usize),
        (2, 133, 25),
        (4, 200, 9),
        (1, 191, 64),
    ] {
        let ld = cols + 3;
        let mut rng = Rng((cols * 131 + taps) as u64);
        let xw = rows * ld + taps; // one band: tap t reads it from word t
        let mut x: Vec<f32> = (0..xw).map(|_| rng.f32() * 4.0).collect();
        for v in &special {
            x[rng.range(0, xw - 1)] = *v;
        }
        let w: Vec<f32> = (0..taps * rows).map(|_| rng.f32()).collect();
        let acc0: Vec<f32> = (0..rows * ld).map(|_| rng.f32()).collect();
        let (sx, sw) = (0u32, (xw * 4).next_multiple_of(64) as u32);
        let sacc = sw + (w.len() * 4).next_multiple_of(64) as u32;
        let stmp = sacc + (rows * ld * 4) as u32;
        let mut input = f32_bytes(&x);
        input.resize(sw as usize, 0);
        input.extend(f32_bytes(&w));
        input.resize(sacc as usize, 0);
        input.extend(f32_bytes(&acc0));
        // tmp starts as 7.0 everywhere, so that stray writes show.
        input.extend(f32_bytes(&vec![7.0; rows * ld]));
        let mut prog = vec![load(IN_VA, 0, input.len() as u32)];
        for t in 0..taps {
            for (op, bcast, a, b, out) in [
                (
                    BinaryOp::Mul,
                    Broadcast::PerRow,
                    tile(sx + 4 * t as u32, ld as u32),
                    tile(sw + (4 * t * rows) as u32, 0),
                    tile(stmp, ld as u32),
                ),
                (
                    BinaryOp::Add,
                    Broadcast::None,
                    tile(sacc, ld as u32),
                    tile(stmp, ld as u32),
                    tile(sacc, ld as u32),
                ),
            ] {
                prog.push(Insn::Binary {
                    op,
                    dtype: DType::F32,
                    bcast,
                    rows: rows as u32,
                    cols: cols as u32,
                    a,
                    b,
                    out,
                    scalar: 0,
                });
            }
        }
        let out_len = 2 * rows * ld * 4;
        prog.push(store(OUT_VA, sacc, out_len as u32));
        let (c, out) = run_program(&mut bench(), &input, out_len, &prog);
        assert_eq!(c.fault(), Some(Fault::Ok), "{cols} cols, {taps} taps");
        // One by one, in f32, as the spec's BINARY mul and add round.
        let mut acc = acc0.clone();
        let mut tmp = vec![7.0f32; rows * ld];
        for t in 0..taps {
            for r in 0..rows {
                for j in 0..cols {
                    tmp[r * ld + j] = x[t + r * ld + j] * w[t * rows + r];
                    acc[r * ld + j] += tmp[r * ld + j];
                }
            }
        }
        let canon = |v: f32| if v.is_nan() { u32::MAX } else { v.to_bits() };
        let got: Vec<u32> = bytes_f32(&out).into_iter().map(canon).collect();
        let want: Vec<u32> = acc.iter().chain(&tmp).map(|&v| canon(v)).collect();
        for r in 0..2 * rows {
            assert_eq!(
                got[r * ld..(r + 1) * ld],
                want[r * ld..(r + 1) * ld],
                "{cols} cols, {taps} taps, row {r}"
            );
        }
    }
}

#[test]
fn depthwise_mul_add_chains_compute_what_the_instructions_do() {
    use npu_device::regs::PerfCounter;
    // `taps` pairs of MUL tmp <- x_t * w_t (per row) and ADD acc <- acc +
    // tmp, as libnpu lowers a depthwise convolution: the device may run a
    // chain in one pass, so acc and tmp must hold what the instructions,
    // one by one, leave there. Also: more pairs than one pass takes, a
    // pair whose x overlaps acc (not chained: it reads acc as the earlier
    // taps left it), and a pair with an operand past the SRAM (the fault
    // at its offset).
    let (rows, cols, ld) = (5usize, 37usize, 40usize);
    let special = [f32::NAN, -0.0, f32::INFINITY, 1e-40, 3e38];
    for (taps, overlap_at, bad_at) in [
        (9usize, None, None),
        (70, None, None),
        (6, Some(3), None),
        (5, None, Some(2)),
    ] {
        let mut rng = Rng(taps as u64 * 7 + 1);
        let xw = rows * ld + taps; // one band: tap t reads it from word t
        let mut x: Vec<f32> = (0..xw).map(|_| rng.f32() * 4.0).collect();
        x[17] = special[taps % 5];
        let w: Vec<f32> = (0..taps * rows).map(|_| rng.f32()).collect();
        let acc0: Vec<f32> = (0..rows * ld).map(|_| rng.f32()).collect();
        let (sx, sw) = (0u32, (xw * 4).next_multiple_of(64) as u32);
        let sacc = sw + (w.len() * 4).next_multiple_of(64) as u32;
        let stmp = sacc + (rows * ld * 4) as u32;
        let mut input = f32_bytes(&x);
        input.resize(sw as usize, 0);
        input.extend(f32_bytes(&w));
        input.resize(sacc as usize, 0);
        input.extend(f32_bytes(&acc0));
        let mut prog = vec![load(IN_VA, 0, input.len() as u32)];
        for t in 0..taps {
            let xa = if overlap_at == Some(t) {
                sacc
            } else {
                sx + 4 * t as u32
            };
            let wa = if bad_at == Some(t) {
                1 << 30
            } else {
                sw + (4 * t * rows) as u32
            };
            prog.push(Insn::Binary {
                op: BinaryOp::Mul,
                dtype: DType::F32,
                bcast: Broadcast::PerRow,
                rows: rows as u32,
                cols: cols as u32,
                a: tile(xa, ld as u32),
                b: tile(wa, 0),
                out: tile(stmp, ld as u32),
                scalar: 0,
            });
            prog.push(Insn::Binary {
                op: BinaryOp::Add,
                dtype: DType::F32,
                bcast: Broadcast::None,
                rows: rows as u32,
                cols: cols as u32,
                a: tile(sacc, ld as u32),
                b: tile(stmp, ld as u32),
                out: tile(sacc, ld as u32),
                scalar: 0,
            });
        }
        let out_len = 2 * rows * ld * 4;
        prog.push(store(OUT_VA, sacc, out_len as u32));
        let mut b = bench();
        let (c, out) = run_program(&mut b, &input, out_len, &prog);
        // One by one, in f32, as the spec's BINARY mul and add round.
        let mut acc = acc0.clone();
        let mut tmp = vec![0f32; rows * ld];
        for t in 0..taps.min(bad_at.unwrap_or(usize::MAX)) {
            for r in 0..rows {
                for j in 0..cols {
                    let xv = if overlap_at == Some(t) {
                        acc[r * ld + j]
                    } else {
                        x[t + r * ld + j]
                    };
                    tmp[r * ld + j] = xv * w[t * rows + r];
                    acc[r * ld + j] += tmp[r * ld + j];
                }
            }
        }
        if let Some(t) = bad_at {
            assert_eq!(c.fault(), Some(Fault::SramRange));
            assert_eq!(c.fault_addr, ((1 + 2 * t) * INSN_SIZE) as u64);
            continue;
        }
        assert_eq!(c.fault(), Some(Fault::Ok), "{taps} taps");
        let canon = |v: f32| if v.is_nan() { u32::MAX } else { v.to_bits() };
        let got: Vec<u32> = bytes_f32(&out).into_iter().map(canon).collect();
        let mut want: Vec<u32> = acc.iter().map(|&v| canon(v)).collect();
        want.extend(tmp.iter().map(|&v| canon(v)));
        // Only the tiles' columns are defined (the rest of each ld).
        for r in 0..2 * rows {
            assert_eq!(
                got[r * ld..r * ld + cols],
                want[r * ld..r * ld + cols],
                "{taps} taps, row {r}"
            );
        }
        // Every instruction counted, every one fetched once.
        let insns = prog.len() as u64 + 1;
        assert_eq!(b.device.perf(PerfCounter::Instructions), insns);
        assert_eq!(
            b.device.perf(PerfCounter::DmaBytesRead),
            insns * INSN_SIZE as u64 + input.len() as u64
        );
    }
}
