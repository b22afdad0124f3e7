//! Quantization arithmetic shared by the CPU reference and the lowering:
//! the int8 gemm/conv2d requantization as ONNX defines it and onnxruntime
//! evaluates it (f32 scale, round half to even), QuantizeLinear, uint8 as
//! shifted int8, and the ISA REQUANT's fixed-point multipliers.

use super::{Quant, TensorType, UnaryOp};

/// Express each real multiplier as `mult / 2^shift` with one shared shift,
/// as precise as an i32 multiplier allows (for REQUANT's fixed-point
/// multiplier, `npu_isa::requantize`).
pub fn quant_multiplier(reals: &[f64]) -> Result<(Vec<i32>, u8), String> {
    let max = reals.iter().cloned().fold(0.0f64, f64::max);
    if !(max > 0.0 && max.is_finite()) {
        return Err(format!(
            "requantization scale {max} must be positive and finite"
        ));
    }
    let mut shift = 62u8;
    while shift > 1 && (max * (1u64 << shift) as f64).round() > i32::MAX as f64 {
        shift -= 1;
    }
    if (max * (1u64 << shift) as f64).round() > i32::MAX as f64 {
        return Err(format!("requantization scale {max} is too large (input scale x weight scale / output scale must be below 2^30)"));
    }
    let mults = reals
        .iter()
        .map(|r| (r * (1u64 << shift) as f64).round() as i32)
        .collect();
    Ok((mults, shift))
}

/// Quantize a real value as ONNX QuantizeLinear does and the device does
/// (divide by the scale in
/// f32, round half to even, add the zero point, saturate).
pub fn quantize_f32(x: f32, scale: f32, zero_point: i8) -> i8 {
    // `as i32` saturates (and maps NaN to 0) like CONVERT f32->i32.
    let q = (x / scale).round_ties_even() as i32;
    (q as i64 + zero_point as i64).clamp(-128, 127) as i8
}

/// Quantized bounds of relu/clamp on an int8 tensor of type `ty`.
pub fn int8_clamp_bounds(op: UnaryOp, ty: &TensorType) -> (i8, i8) {
    let (scale, zp) = match &ty.quant {
        Some(Quant::PerTensor { scale, zero_point }) => (*scale, *zero_point),
        _ => (1.0, 0),
    };
    match op {
        UnaryOp::Relu => (zp, 127),
        UnaryOp::Clamp { lo, hi } => (quantize_f32(lo, scale, zp), quantize_f32(hi, scale, zp)),
        _ => (-128, 127),
    }
}

/// Per output channel, the f32 factor an int8 gemm/conv2d result is
/// requantized with: `(s_in * s_w[c]) / s_out`, evaluated in f32 in this
/// order, as onnxruntime's QLinearConv and QLinearMatMul compute it.
pub fn requant_scales(
    a: &TensorType,
    w: &TensorType,
    out: &TensorType,
    channels: usize,
) -> Result<Vec<f32>, String> {
    let sa = a.quant.as_ref().map(|q| q.scale(0)).unwrap_or(1.0);
    let so = match &out.quant {
        Some(Quant::PerTensor { scale, .. }) => *scale,
        _ => return Err("the result needs per-tensor quantization".into()),
    };
    let wq = w.quant.as_ref();
    (0..channels)
        .map(|c| {
            let s = sa * wq.map(|q| q.scale(c)).unwrap_or(1.0) / so;
            if s > 0.0 && s.is_finite() {
                Ok(s)
            } else {
                Err(format!("requantization scale {s} (input scale x weight scale / output scale) must be positive and finite in f32"))
            }
        })
        .collect()
}

/// The int8 result of one accumulator (the exact sum of
/// `(x - zp_x) * (w - zp_w)` plus the bias, modulo 2^32): the ONNX
/// QLinearConv/QLinearMatMul definition as onnxruntime evaluates it,
/// `saturate(round_half_even(f32(acc) * scale) + zp)`, then clamped to
/// `[lo, hi]` (a fused relu/clamp).
pub fn requant_f32(acc: i32, scale: f32, zero_point: i8, lo: i8, hi: i8) -> i8 {
    // `as i32` saturates like CONVERT f32->i32.
    let r = (acc as f32 * scale).round_ties_even() as i32;
    (r as i64 + zero_point as i64).clamp(lo as i64, hi as i64) as i8
}

/// uint8 tensors run as int8: a u8 value `q` with zero point `zp` is the
/// i8 value `q - 128` with zero point `zp - 128` (the same real value,
/// `scale * (q - zp)`), i.e. each byte with its top bit flipped. Importers
/// convert u8 constants with this at compile time and u8 inputs/outputs at
/// the boundary; every int8 op then computes the u8 op's result exactly.
pub fn u8_to_i8(v: &[u8]) -> Vec<i8> {
    v.iter().map(|&x| (x ^ 0x80) as i8).collect()
}

/// The inverse of [`u8_to_i8`].
pub fn i8_to_u8(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8 ^ 0x80).collect()
}

/// The int8 zero point of a uint8 tensor with zero point `zp`.
pub fn u8_zero_point(zp: u8) -> i8 {
    (zp ^ 0x80) as i8
}
