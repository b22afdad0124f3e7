//! Data-movement ops: their parameters, type inference and the index maps
//! shared by the reference executor and the lowering.
//!
//! Every op here moves elements without computing on them (resize with
//! linear interpolation aside), so it takes any dtype; an int8 result keeps
//! its operand's quantization.

use super::{Quant, TensorType};

/// What [`super::Op::Pad`] puts in the padding (ONNX Pad's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// The pad value.
    Constant,
    /// The nearest edge element, repeated.
    Edge,
    /// The elements mirrored about the edge element (not repeating it);
    /// each pad at most the axis' size - 1.
    Reflect,
}

impl PadMode {
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Edge => "edge",
            PadMode::Reflect => "reflect",
        }
    }
}

/// How nearest-neighbour resize rounds a source coordinate (ONNX Resize's
/// `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRound {
    /// Halves go down (ONNX's default).
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Interpolation of [`super::Op::Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest(NearestRound),
    /// Bilinear over the last two axes.
    Linear,
}

/// How an output coordinate maps to an input one (ONNX Resize's
/// `coordinate_transformation_mode`); `scale` is output / input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    /// `(x + 0.5) / scale - 0.5`
    HalfPixel,
    /// As half_pixel, but 0 when the output has one element.
    PytorchHalfPixel,
    /// `x * (in - 1) / (out - 1)` (0 when the output has one element).
    AlignCorners,
    /// `x / scale`
    Asymmetric,
    /// `(x + 0.5) / scale`
    TfHalfPixelForNn,
}

impl NearestRound {
    pub fn name(self) -> &'static str {
        match self {
            NearestRound::RoundPreferFloor => "round_prefer_floor",
            NearestRound::RoundPreferCeil => "round_prefer_ceil",
            NearestRound::Floor => "floor",
            NearestRound::Ceil => "ceil",
        }
    }
    pub const ALL: [NearestRound; 4] = [
        NearestRound::RoundPreferFloor,
        NearestRound::RoundPreferCeil,
        NearestRound::Floor,
        NearestRound::Ceil,
    ];
}

impl CoordMode {
    pub fn name(self) -> &'static str {
        match self {
            CoordMode::HalfPixel => "half_pixel",
            CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
            CoordMode::AlignCorners => "align_corners",
            CoordMode::Asymmetric => "asymmetric",
            CoordMode::TfHalfPixelForNn => "tf_half_pixel_for_nn",
        }
    }
    pub const ALL: [CoordMode; 5] = [
        CoordMode::HalfPixel,
        CoordMode::PytorchHalfPixel,
        CoordMode::AlignCorners,
        CoordMode::Asymmetric,
        CoordMode::TfHalfPixelForNn,
    ];
}

/// The source coordinate of output index `x` along one axis, in f32 as
/// onnxruntime computes it.
fn source_coord(x: usize, input: usize, output: usize, scale: f32, coord: CoordMode) -> f32 {
    let xf = x as f32;
    match coord {
        CoordMode::HalfPixel => (xf + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel if output > 1 => (xf + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => 0.0,
        CoordMode::AlignCorners if output > 1 => xf * (input as f32 - 1.0) / (output as f32 - 1.0),
        CoordMode::AlignCorners => 0.0,
        CoordMode::Asymmetric => xf / scale,
        CoordMode::TfHalfPixelForNn => (xf + 0.5) / scale,
    }
}

/// Nearest resize along one axis: the source index of every output index.
pub fn nearest_indices(
    input: usize,
    output: usize,
    scale: f32,
    coord: CoordMode,
    round: NearestRound,
) -> Vec<usize> {
    (0..output)
        .map(|x| {
            let c = source_coord(x, input, output, scale, coord);
            let r = match round {
                NearestRound::RoundPreferFloor if c == c.floor() + 0.5 => c.floor(),
                NearestRound::RoundPreferFloor | NearestRound::RoundPreferCeil => c.round(),
                NearestRound::Floor => c.floor(),
                NearestRound::Ceil => c.ceil(),
            };
            (r.max(0.0) as usize).min(input - 1)
        })
        .collect()
}

/// One output index of a linear resize along one axis: the two source
/// indices and their weights (`w0 * x[i0] + w1 * x[i1]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearTap {
    pub i0: usize,
    pub i1: usize,
    pub w0: f32,
    pub w1: f32,
}

/// Linear resize along one axis (onnxruntime's weights: the source
/// coordinate clamped into the input, 0.5 each where both taps coincide).
pub fn linear_taps(input: usize, output: usize, scale: f32, coord: CoordMode) -> Vec<LinearTap> {
    (0..output)
        .map(|x| {
            let c = source_coord(x, input, output, scale, coord).clamp(0.0, input as f32 - 1.0);
            let i0 = (c as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            if i0 == i1 {
                return LinearTap {
                    i0,
                    i1,
                    w0: 0.5,
                    w1: 0.5,
                };
            }
            LinearTap {
                i0,
                i1,
                w0: (c - i1 as f32).abs(),
                w1: (c - i0 as f32).abs(),
            }
        })
        .collect()
}

/// Row-major element strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The ONNX Slice of one axis of size `dim`: (first index, step, count).
/// `start`/`end` may be negative (counted from the end) or out of range
/// (clamped), as ONNX defines them; `step` must not be 0.
pub fn slice_axis(
    dim: usize,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(usize, i64, usize), String> {
    if step == 0 {
        return Err("a slice step of 0".into());
    }
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (norm(start), norm(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, d - 1), e.clamp(-1, d - 1))
    };
    let count = if step > 0 {
        if e > s {
            (e - s + step - 1) / step
        } else {
            0
        }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok((s.max(0) as usize, step, count as usize))
}

/// Result type of a data-movement op on operand type `x` with result
/// shape `shape`: the operand's dtype and quantization. `out_quant`, when
/// given, must be the operand's (int8 movement does not requantize).
pub fn moved(
    x: &TensorType,
    shape: Vec<usize>,
    out_quant: Option<&Quant>,
) -> Result<TensorType, String> {
    if let Some(q) = out_quant {
        if x.quant.as_ref() != Some(q) {
            return Err(format!(
                "the result's quantization must be the operand's ({}): data movement does not requantize",
                x
            ));
        }
    }
    if shape.is_empty() || shape.contains(&0) {
        return Err(format!("the result {shape:?} would be empty"));
    }
    Ok(TensorType {
        dtype: x.dtype,
        shape,
        quant: x.quant.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_axis_follows_onnx() {
        // numpy: a[1:4], a[-3:], a[::-1], a[4:1:-2], a[10:], a[:-100]
        assert_eq!(slice_axis(5, 1, 4, 1).unwrap(), (1, 1, 3));
        assert_eq!(slice_axis(5, -3, i64::MAX, 1).unwrap(), (2, 1, 3));
        assert_eq!(slice_axis(5, -1, i64::MIN, -1).unwrap(), (4, -1, 5));
        assert_eq!(slice_axis(5, 4, 1, -2).unwrap(), (4, -2, 2));
        assert_eq!(slice_axis(5, 10, 20, 1).unwrap().2, 0);
        assert_eq!(slice_axis(5, 0, -100, 1).unwrap().2, 0);
        assert!(slice_axis(5, 0, 5, 0).is_err());
    }

    #[test]
    fn nearest_and_linear_maps() {
        // 2x upsampling, asymmetric + floor: 0 0 1 1 2 2.
        assert_eq!(
            nearest_indices(3, 6, 2.0, CoordMode::Asymmetric, NearestRound::Floor),
            vec![0, 0, 1, 1, 2, 2]
        );
        // half_pixel 4 -> 2: source coordinates 0.5 and 2.5, halves down.
        assert_eq!(
            nearest_indices(
                4,
                2,
                0.5,
                CoordMode::HalfPixel,
                NearestRound::RoundPreferFloor
            ),
            vec![0, 2]
        );
        // align_corners 3 -> 5: coordinates 0, 0.5, 1, 1.5, 2.
        let t = linear_taps(3, 5, 5.0 / 3.0, CoordMode::AlignCorners);
        assert_eq!((t[1].i0, t[1].i1, t[1].w0, t[1].w1), (0, 1, 0.5, 0.5));
        assert_eq!((t[4].i0, t[4].i1), (2, 2));
    }
}
