//! CONVERT between f32 and the 16-bit storage types f16 and bf16, checked
//! against npu-hw.rst's "Half-precision conversions": hand-computed vectors
//! from the spec's rules, then the `half` crate (an independent
//! implementation) over every 16-bit value and a sweep of f32 patterns.

mod common;
use common::*;
use npu_isa::*;

/// Elements converted per run: 16 K x 4 bytes in, 16 K x 4 bytes out.
const CHUNK: usize = 16 * 1024;

/// Run CONVERT `conv` over `src` (packed elements of the source size) as a
/// row of `n` elements, and return the packed destination bytes.
fn convert(conv: Conversion, src: &[u8]) -> Vec<u8> {
    let (ssize, dsize) = conv.sizes();
    let n = src.len() / ssize as usize;
    let mut out = Vec::with_capacity(n * dsize as usize);
    for part in src.chunks(CHUNK * ssize as usize) {
        let mut b = bench();
        let k = (part.len() / ssize as usize) as u32;
        let dst = 128 * 1024;
        let (c, bytes) = run_program(
            &mut b,
            part,
            (k * dsize) as usize,
            &[
                load(IN_VA, 0, part.len() as u32),
                Insn::Convert {
                    conv,
                    rows: 1,
                    cols: k,
                    src: tile(0, k),
                    dst: tile(dst, k),
                    zero_point: 0,
                    scale: 0.0,
                },
                store(OUT_VA, dst, k * dsize),
            ],
        );
        assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
        out.extend(bytes);
    }
    out
}

fn narrow(conv: Conversion, x: &[u32]) -> Vec<u16> {
    let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    convert(conv, &src)
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect()
}

fn widen(conv: Conversion, h: &[u16]) -> Vec<u32> {
    let src: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
    convert(conv, &src)
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
        .collect()
}

/// Check pairs (input bits, expected output bits).
fn check_narrow(conv: Conversion, cases: &[(u32, u16)]) {
    let x: Vec<u32> = cases.iter().map(|c| c.0).collect();
    let got = narrow(conv, &x);
    for (&(x, want), got) in cases.iter().zip(got) {
        assert_eq!(
            got, want,
            "{conv:?} of {x:#010x}: got {got:#06x}, want {want:#06x}"
        );
    }
}

fn check_widen(conv: Conversion, cases: &[(u16, u32)]) {
    let h: Vec<u16> = cases.iter().map(|c| c.0).collect();
    let got = widen(conv, &h);
    for (&(h, want), got) in cases.iter().zip(got) {
        assert_eq!(
            got, want,
            "{conv:?} of {h:#06x}: got {got:#010x}, want {want:#010x}"
        );
    }
}

#[test]
fn f32_to_f16_by_hand() {
    let p2 = |e: i32| 2f32.powi(e).to_bits();
    check_narrow(
        Conversion::F32ToF16,
        &[
            (0x0000_0000, 0x0000),             // +0
            (0x8000_0000, 0x8000),             // -0
            (1f32.to_bits(), 0x3c00),          // 1
            ((-2f32).to_bits(), 0xc000),       // -2
            (65504f32.to_bits(), 0x7bff),      // the largest f16
            (65519.996f32.to_bits(), 0x7bff),  // just below the tie at 65520
            (65520f32.to_bits(), 0x7c00),      // the tie rounds to even: inf
            (1e6f32.to_bits(), 0x7c00),        // overflow
            ((-1e6f32).to_bits(), 0xfc00),     // negative overflow
            (f32::INFINITY.to_bits(), 0x7c00), // inf
            (f32::NEG_INFINITY.to_bits(), 0xfc00),
            (p2(-14), 0x0400),                             // the smallest normal
            (p2(-24), 0x0001),                             // the smallest subnormal
            ((1023.0 * 2f32.powi(-24)).to_bits(), 0x03ff), // the largest subnormal
            (p2(-25), 0x0000),                             // tie between 0 and 2^-24: even 0
            ((1.5 * 2f32.powi(-25)).to_bits(), 0x0001),    // above the tie
            ((3.0 * 2f32.powi(-25)).to_bits(), 0x0002),    // tie between 1 and 2 units: 2
            ((-3.0 * 2f32.powi(-25)).to_bits(), 0x8002),
            (p2(-26), 0x0000),     // below half a unit
            (0x0000_0001, 0x0000), // an f32 subnormal
            (0x8000_0001, 0x8000),
            ((1.0 + 2f32.powi(-11)).to_bits(), 0x3c00), // tie: even 0x3c00
            ((1.0 + 3.0 * 2f32.powi(-11)).to_bits(), 0x3c02), // tie: even 0x3c02
            ((1.0 + 2f32.powi(-11) + 2f32.powi(-20)).to_bits(), 0x3c01), // above
            ((1023.5 * 2f32.powi(-24)).to_bits(), 0x0400), // subnormal rounds up to normal
            (0x7fc0_0000, 0x7e00),                      // quiet NaN
            (0xffc0_0000, 0xfe00),                      // sign kept
            (0x7f80_0001, 0x7e00), // signalling NaN: quieted, low payload dropped
            (0x7fa0_0000, 0x7f00), // payload bit 21 -> f16 payload bit 8
        ],
    );
}

#[test]
fn f16_to_f32_by_hand() {
    check_widen(
        Conversion::F16ToF32,
        &[
            (0x0000, 0x0000_0000),
            (0x8000, 0x8000_0000),
            (0x3c00, 1f32.to_bits()),
            (0xc000, (-2f32).to_bits()),
            (0x7bff, 65504f32.to_bits()),
            (0x3555, 0.333_251_95f32.to_bits()),
            (0x0001, 2f32.powi(-24).to_bits()),
            (0x8001, (-(2f32.powi(-24))).to_bits()),
            (0x03ff, (1023.0 * 2f32.powi(-24)).to_bits()),
            (0x0400, 2f32.powi(-14).to_bits()),
            (0x7c00, f32::INFINITY.to_bits()),
            (0xfc00, f32::NEG_INFINITY.to_bits()),
            (0x7e00, 0x7fc0_0000),
            (0x7d00, 0x7fe0_0000), // signalling NaN quieted, payload kept
            (0xfc01, 0xffc0_2000),
        ],
    );
}

#[test]
fn f32_to_bf16_by_hand() {
    check_narrow(
        Conversion::F32ToBf16,
        &[
            (0x0000_0000, 0x0000),
            (0x8000_0000, 0x8000),
            (1f32.to_bits(), 0x3f80),
            ((-2f32).to_bits(), 0xc000),
            (0x7f7f_0000, 0x7f7f), // the largest bf16
            (0x7f7f_7fff, 0x7f7f), // below the tie
            (0x7f7f_8000, 0x7f80), // tie, odd lsb: rounds up to inf
            (f32::MAX.to_bits(), 0x7f80),
            (f32::MIN.to_bits(), 0xff80),
            (f32::INFINITY.to_bits(), 0x7f80),
            (0x3f80_8000, 0x3f80), // tie, even lsb: down
            (0x3f81_8000, 0x3f82), // tie, odd lsb: up
            (0x3f80_8001, 0x3f81), // above the tie
            (0x3f80_7fff, 0x3f80), // below
            (0x0001_0000, 0x0001), // the smallest bf16 subnormal
            (0x0000_8000, 0x0000), // tie between 0 and it: even 0
            (0x0001_8000, 0x0002), // tie: even
            (0x0000_ffff, 0x0001), // above the tie
            (0x8000_8000, 0x8000),
            (0x007f_ffff, 0x0080), // the largest f32 subnormal rounds to 2^-126
            (0x7fc0_0000, 0x7fc0), // quiet NaN
            (0x7f80_0001, 0x7fc0), // signalling NaN, payload below bit 16: quieted
            (0xff81_0000, 0xffc1), // sign and upper payload kept
        ],
    );
}

#[test]
fn bf16_to_f32_by_hand() {
    check_widen(
        Conversion::Bf16ToF32,
        &[
            (0x0000, 0x0000_0000),
            (0x8000, 0x8000_0000),
            (0x3f80, 1f32.to_bits()),
            (0x7f7f, 0x7f7f_0000),
            (0x0001, 0x0001_0000),
            (0x7f80, f32::INFINITY.to_bits()),
            (0xff80, f32::NEG_INFINITY.to_bits()),
            (0x7fc0, 0x7fc0_0000),
            (0x7f81, 0x7fc1_0000), // signalling NaN quieted
            (0xff81, 0xffc1_0000),
        ],
    );
}

/// The device widens every 16-bit pattern as the `half` crate does.
#[test]
fn widening_every_value_matches_the_half_crate() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let f16 = widen(Conversion::F16ToF32, &all);
    let bf16 = widen(Conversion::Bf16ToF32, &all);
    for h in all {
        let want = half::f16::from_bits(h).to_f32().to_bits();
        assert_eq!(f16[h as usize], want, "f16 {h:#06x}");
        let want = half::bf16::from_bits(h).to_f32().to_bits();
        assert_eq!(bf16[h as usize], want, "bf16 {h:#06x}");
    }
}

/// The device narrows as the `half` crate does: every upper half of an f32
/// with a low half at a bf16 tie (0x8000), an f16 tie (0x1000 and 0x3000)
/// and just above one, and pseudo-random patterns.
#[test]
fn narrowing_matches_the_half_crate() {
    let mut x: Vec<u32> = Vec::new();
    for hi in 0..=0xffffu32 {
        for lo in [0x0000, 0x1000, 0x3000, 0x3001, 0x8000, 0x8001] {
            x.push(hi << 16 | lo);
        }
    }
    let mut rng = Rng(0x0001_5f16_bf16);
    x.extend((0..CHUNK * 4).map(|_| (rng.next() >> 32) as u32));
    let f16 = narrow(Conversion::F32ToF16, &x);
    let bf16 = narrow(Conversion::F32ToBf16, &x);
    for (i, &b) in x.iter().enumerate() {
        let v = f32::from_bits(b);
        assert_eq!(f16[i], half::f16::from_f32(v).to_bits(), "f16 of {b:#010x}");
        assert_eq!(
            bf16[i],
            half::bf16::from_f32(v).to_bits(),
            "bf16 of {b:#010x}"
        );
    }
}

/// 2-byte tiles: rows `ld` elements apart, 2-byte alignment, SRAM bounds.
#[test]
fn half_tiles_use_two_byte_elements() {
    let mut b = bench();
    // A 2 x 3 f16 tile with ld 4 (8 bytes per row) at SRAM 2 (2-byte aligned).
    let h: [u16; 8] = [
        0x3c00, 0x4000, 0x4200, 0xffff, 0x4400, 0x4500, 0x4600, 0xffff,
    ];
    let input: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (c, out) = run_program(
        &mut b,
        &input,
        24,
        &[
            load(IN_VA, 2, 16),
            Insn::Convert {
                conv: Conversion::F16ToF32,
                rows: 2,
                cols: 3,
                src: tile(2, 4),
                dst: tile(64, 3),
                zero_point: 0,
                scale: 0.0,
            },
            // And back to bf16 with ld 5 at 130, then to f32 again.
            Insn::Convert {
                conv: Conversion::F32ToBf16,
                rows: 2,
                cols: 3,
                src: tile(64, 3),
                dst: tile(130, 5),
                zero_point: 0,
                scale: 0.0,
            },
            Insn::Convert {
                conv: Conversion::Bf16ToF32,
                rows: 2,
                cols: 3,
                src: tile(130, 5),
                dst: tile(64, 3),
                zero_point: 0,
                scale: 0.0,
            },
            store(OUT_VA, 64, 24),
        ],
    );
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    assert_eq!(bytes_f32(&out), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    let sram = 256 * 1024;
    let bad = [
        // An odd address for a 2-byte element.
        (
            Conversion::F16ToF32,
            tile(1, 4),
            tile(64, 4),
            Fault::BadOperand,
        ),
        (
            Conversion::F32ToBf16,
            tile(0, 4),
            tile(65, 4),
            Fault::BadOperand,
        ),
        // ld < cols with more than one row.
        (
            Conversion::F32ToF16,
            tile(0, 4),
            tile(64, 3),
            Fault::BadOperand,
        ),
        // The last 2-byte row ends 2 bytes past the SRAM.
        (
            Conversion::F32ToF16,
            tile(0, 4),
            tile(sram - 14, 4),
            Fault::SramRange,
        ),
        (
            Conversion::Bf16ToF32,
            tile(sram - 14, 4),
            tile(0, 4),
            Fault::SramRange,
        ),
    ];
    for (conv, src, dst, want) in bad {
        let mut b = bench();
        let (c, _) = run_program(
            &mut b,
            &[],
            0,
            &[Insn::Convert {
                conv,
                rows: 2,
                cols: 4,
                src,
                dst,
                zero_point: 0,
                scale: 0.0,
            }],
        );
        assert_eq!(c.fault(), Some(want), "{conv:?} {src:?} {dst:?}");
    }
    // Exactly at the end is fine.
    let mut b = bench();
    let (c, _) = run_program(
        &mut b,
        &[],
        0,
        &[Insn::Convert {
            conv: Conversion::F32ToF16,
            rows: 2,
            cols: 4,
            src: tile(0, 4),
            dst: tile(sram - 16, 4),
            zero_point: 0,
            scale: 0.0,
        }],
    );
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
}
