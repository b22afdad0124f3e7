//! Fixed-point requantization parameters, shared by the CPU reference and
//! the lowering so both apply the very same integers (and so agree bit for
//! bit with the ISA's REQUANT, `npu_isa::requantize`).

use super::{Quant, TensorType};

/// What a REQUANT instruction needs for an int8 gemm/conv2d result.
#[derive(Clone, Debug, PartialEq)]
pub struct RequantParams {
    /// One multiplier per output channel (all equal when per-tensor).
    pub mults: Vec<i32>,
    pub per_channel: bool,
    pub shift: u8,
    pub zero_point: i8,
}

/// Express each real multiplier as `mult / 2^shift` with one shared shift,
/// as precise as an i32 multiplier allows.
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

/// Requantization of `a x w -> out` with `channels` output channels.
pub fn requant_params(
    a: &TensorType,
    w: &TensorType,
    out: &TensorType,
    channels: usize,
) -> Result<RequantParams, String> {
    let sa = a.quant.as_ref().map(|q| q.scale(0)).unwrap_or(1.0) as f64;
    let (so, zp) = match &out.quant {
        Some(Quant::PerTensor { scale, zero_point }) => (*scale as f64, *zero_point),
        _ => return Err("the result needs per-tensor quantization".into()),
    };
    let per_channel = matches!(w.quant, Some(Quant::PerChannel { .. }));
    let wq = w.quant.as_ref();
    let reals: Vec<f64> = (0..channels)
        .map(|c| sa * wq.map(|q| q.scale(c)).unwrap_or(1.0) as f64 / so)
        .collect();
    let (mults, shift) = quant_multiplier(&reals)?;
    Ok(RequantParams {
        mults,
        per_channel,
        shift,
        zero_point: zp,
    })
}

/// Quantize a real value the way the device does (multiply by 1/scale in
/// f32, round half to even, add the zero point, saturate).
pub fn quantize_f32(x: f32, scale: f32, zero_point: i8) -> i8 {
    // `as i32` saturates (and maps NaN to 0) like CONVERT f32->i32.
    let q = (x * (1.0 / scale)).round_ties_even() as i32;
    (q as i64 + zero_point as i64).clamp(-128, 127) as i8
}
