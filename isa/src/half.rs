//! The normative CONVERT arithmetic between f32 and the 16-bit storage
//! types (npu-hw.rst, "Half-precision conversions"): f16 is IEEE 754
//! binary16, bf16 the upper half of an f32. Narrowing rounds to nearest,
//! ties to even, with gradual underflow (no flush to zero); widening is
//! exact. A NaN stays a NaN of the same sign with its upper payload bits
//! and the quiet bit set.

/// f32 -> f16, round to nearest even; magnitudes from 65520 up become
/// infinity, below 2^-25 (and exactly 2^-25) a signed zero.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return if man == 0 {
            sign | 0x7c00
        } else {
            sign | 0x7e00 | (man >> 13) as u16
        };
    }
    // The f16 biased exponent of a normal result.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    // The significand with its hidden bit, and how many of its low bits
    // the f16 result drops: 13 for a normal, more for a subnormal (whose
    // unit is 2^-24).
    let (sig, shift) = if e >= 1 {
        (man, 13)
    } else if e >= -10 {
        (man | 0x80_0000, (14 - e) as u32)
    } else {
        // Below 2^-25 (f32 subnormals included): rounds to zero.
        return sign;
    };
    let mut h = sig >> shift;
    let rem = sig & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && h & 1 == 1) {
        // A carry out of the mantissa steps the exponent up, to
        // infinity at the top: both are the right rounded value.
        h += 1;
    }
    if e >= 1 {
        h += (e as u32) << 10;
    }
    sign | h as u16
}

/// f16 -> f32, exact.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = (h as u32 & 0x8000) << 16;
    let exp = (h as u32 >> 10) & 0x1f;
    let man = h as u32 & 0x3ff;
    let bits = match (exp, man) {
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | man << 13,
        (0, 0) => sign,
        // A subnormal: man * 2^-24, exact in f32.
        (0, _) => sign | (man as f32 * (1.0 / 16_777_216.0)).to_bits(),
        _ => sign | (exp + 127 - 15) << 23 | man << 13,
    };
    f32::from_bits(bits)
}

/// f32 -> bf16, round to nearest even; values above the largest bf16
/// (from 0x7f7f8000 up in magnitude) become infinity.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    // Adding just under half a unit, plus the kept lsb, rounds ties to
    // even; it cannot overflow u32 for a non-NaN.
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 -> f32, exact.
pub fn bf16_to_f32(h: u16) -> f32 {
    let h = if h & 0x7fff > 0x7f80 { h | 0x40 } else { h };
    f32::from_bits((h as u32) << 16)
}
