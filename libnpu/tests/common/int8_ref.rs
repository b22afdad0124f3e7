//! An int8 reference for gemm and conv2d written from
//! Documentation/userspace/kernel-language.rst, independent of the library.
//! The language defines the result as ONNX's QLinearConv/QLinearMatMul do,
//! from the exact real value
//!
//! ```text
//! y = (acc + bias[c]) * s_in * s_w[c] / s_out    (acc: the exact integer sum)
//! q = saturate(round_half_even(y) + zp_out)
//! ```
//!
//! with the scales' product taken in f64 here. The device evaluates the
//! factor and the product in f32 (as onnxruntime does; the language
//! allows that), three roundings of relative error 2^-24 each, so where
//! y lies within `|y| * 2^-21` of a tie either neighbour is accepted.
//! (tests/onnx_ref.rs compares bit for bit with onnxruntime itself.) A
//! relu or clamp after such a result keeps its quantization: relu is
//! `max(q, zp)`, clamp(lo, hi) clamps to
//! `saturate(round_half_even(lo / scale) + zp)` and the same for hi.

use npu::ir::{Graph, Op, Quant, TensorType, UnaryOp};
use npu::reference::TensorData;
use std::collections::HashMap;

/// A value as far as this reference knows it.
enum Val {
    I8(Vec<i8>),
    I32(Vec<i32>),
    /// Per element, the acceptable results (inclusive).
    Bounds(Vec<(i8, i8)>),
    Unknown,
}

/// Compare every graph output this reference covers with `got`.
pub fn check(
    g: &Graph,
    inputs: &HashMap<String, TensorData>,
    got: &HashMap<String, TensorData>,
) -> Result<(), String> {
    let vals = eval(g, inputs);
    for &o in g.outputs() {
        let name = &g.node(o).name;
        let Val::Bounds(want) = &vals[o.0] else {
            continue;
        };
        let Some(TensorData::I8(d)) = got.get(name) else {
            return Err(format!("`{name}`: no int8 device output"));
        };
        if d.len() != want.len() {
            return Err(format!(
                "`{name}`: {} elements, want {}",
                d.len(),
                want.len()
            ));
        }
        for (i, (&q, &(lo, hi))) in d.iter().zip(want).enumerate() {
            if q < lo || q > hi {
                let w = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}..={hi}")
                };
                return Err(format!(
                    "`{name}`[{i}]: device {q}, independent int8 reference {w}"
                ));
            }
        }
    }
    Ok(())
}

/// How many graph outputs [`check`] compares.
pub fn covered_outputs(g: &Graph, inputs: &HashMap<String, TensorData>) -> usize {
    let vals = eval(g, inputs);
    g.outputs()
        .iter()
        .filter(|o| matches!(vals[o.0], Val::Bounds(_)))
        .count()
}

fn per_tensor(ty: &TensorType) -> Option<(f64, i32)> {
    match &ty.quant {
        Some(Quant::PerTensor { scale, zero_point }) => Some((*scale as f64, *zero_point as i32)),
        _ => None,
    }
}

/// The weight scale and zero point of output channel `c`.
fn weight_scale(ty: &TensorType, c: usize) -> Option<(f64, i64)> {
    match &ty.quant {
        Some(Quant::PerTensor { scale, zero_point }) => Some((*scale as f64, *zero_point as i64)),
        Some(Quant::PerChannel { scales, .. }) => scales.get(c).map(|s| (*s as f64, 0)),
        _ => None,
    }
}

fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// The acceptable outputs for accumulator (with bias) `acc` and real
/// multiplier `m`.
fn requant_bounds(acc: i64, m: f64, zp: i32) -> (i8, i8) {
    let y = acc as f64 * m;
    let tol = (acc as f64 * m).abs() * (2f64).powi(-21);
    let q = |v: f64| (round_half_even(v) + zp as f64).clamp(-128.0, 127.0) as i8;
    (q(y - tol), q(y + tol))
}

/// The language's quantize: saturate(round_half_even(x / scale) + zp), in f32.
fn quantize(x: f32, scale: f32, zp: i32) -> i8 {
    let q = (x / scale).round_ties_even();
    (q as f64 + zp as f64).clamp(-128.0, 127.0) as i8
}

fn eval(g: &Graph, inputs: &HashMap<String, TensorData>) -> Vec<Val> {
    let mut vals: Vec<Val> = Vec::with_capacity(g.nodes().len());
    for node in g.nodes() {
        let ty = &node.ty;
        let v = match &node.op {
            Op::Input => match inputs.get(&node.name) {
                Some(TensorData::I8(v)) => Val::I8(v.clone()),
                Some(TensorData::I32(v)) => Val::I32(v.clone()),
                _ => Val::Unknown,
            },
            Op::Gemm {
                a,
                b,
                bias,
                trans_a,
                trans_b,
            } => {
                let (Val::I8(av), Val::I8(bv)) = (&vals[a.0], &vals[b.0]) else {
                    vals.push(Val::Unknown);
                    continue;
                };
                let bias = match bias.map(|v| &vals[v.0]) {
                    None => None,
                    Some(Val::I32(b)) => Some(b.as_slice()),
                    Some(_) => {
                        vals.push(Val::Unknown);
                        continue;
                    }
                };
                gemm(g.ty(*a), av, g.ty(*b), bv, bias, ty, *trans_a, *trans_b)
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                window,
                groups,
            } => {
                let (Val::I8(xv), Val::I8(wv)) = (&vals[input.0], &vals[weight.0]) else {
                    vals.push(Val::Unknown);
                    continue;
                };
                let bias = match bias.map(|v| &vals[v.0]) {
                    None => None,
                    Some(Val::I32(b)) => Some(b.as_slice()),
                    Some(_) => {
                        vals.push(Val::Unknown);
                        continue;
                    }
                };
                conv2d(
                    g.ty(*input),
                    xv,
                    g.ty(*weight),
                    wv,
                    bias,
                    ty,
                    window,
                    *groups,
                )
            }
            Op::Unary { op, x } => match (&vals[x.0], per_tensor(g.ty(*x))) {
                (Val::Bounds(b), Some((scale, zp))) if ty.quant == g.ty(*x).quant => {
                    let (qlo, qhi) = match op {
                        UnaryOp::Relu => (zp as i8, 127),
                        UnaryOp::Clamp { lo, hi } => (
                            quantize(*lo, scale as f32, zp),
                            quantize(*hi, scale as f32, zp),
                        ),
                        _ => {
                            vals.push(Val::Unknown);
                            continue;
                        }
                    };
                    Val::Bounds(
                        b.iter()
                            .map(|&(l, h)| (l.clamp(qlo, qhi), h.clamp(qlo, qhi)))
                            .collect(),
                    )
                }
                _ => Val::Unknown,
            },
            Op::Reshape { x, .. } => match &vals[x.0] {
                Val::Bounds(b) => Val::Bounds(b.clone()),
                _ => Val::Unknown,
            },
            _ => Val::Unknown,
        };
        vals.push(v);
    }
    vals
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    ta: &TensorType,
    a: &[i8],
    tb: &TensorType,
    b: &[i8],
    bias: Option<&[i32]>,
    ty: &TensorType,
    trans_a: bool,
    trans_b: bool,
) -> Val {
    let (Some((s_in, zp_a)), Some((s_out, zp_out))) = (per_tensor(ta), per_tensor(ty)) else {
        return Val::Unknown;
    };
    let (m, n) = (ty.shape[0], ty.shape[1]);
    let k = if trans_a { ta.shape[0] } else { ta.shape[1] };
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let Some((s_w, zp_w)) = weight_scale(tb, j) else {
                return Val::Unknown;
            };
            let mut acc = 0i64;
            for p in 0..k {
                let x = if trans_a { a[p * m + i] } else { a[i * k + p] };
                let w = if trans_b { b[j * k + p] } else { b[p * n + j] };
                acc += (x as i64 - zp_a as i64) * (w as i64 - zp_w);
            }
            acc += bias.map_or(0, |b| b[j] as i64);
            out.push(requant_bounds(acc, s_in * s_w / s_out, zp_out));
        }
    }
    Val::Bounds(out)
}

#[allow(clippy::too_many_arguments)]
fn conv2d(
    tx: &TensorType,
    x: &[i8],
    tw: &TensorType,
    w: &[i8],
    bias: Option<&[i32]>,
    ty: &TensorType,
    win: &npu::ir::Window,
    groups: usize,
) -> Val {
    let (Some((s_in, zp_x)), Some((s_out, zp_out))) = (per_tensor(tx), per_tensor(ty)) else {
        return Val::Unknown;
    };
    let [n, c, h, wd] = [tx.shape[0], tx.shape[1], tx.shape[2], tx.shape[3]];
    let [k, cg, r, s] = [tw.shape[0], tw.shape[1], tw.shape[2], tw.shape[3]];
    let [oh, ow] = [ty.shape[2], ty.shape[3]];
    let k_per_group = k / groups;
    let mut out = Vec::with_capacity(n * k * oh * ow);
    for img in 0..n {
        for ko in 0..k {
            let Some((s_w, zp_w)) = weight_scale(tw, ko) else {
                return Val::Unknown;
            };
            let first_channel = (ko / k_per_group) * cg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0i64;
                    for ci in 0..cg {
                        for ry in 0..r {
                            for sx in 0..s {
                                // Input row/column of this tap; padding reads as zero.
                                let iy = (oy * win.stride[0] + ry * win.dilation[0]) as i64
                                    - win.padding[0] as i64;
                                let ix = (ox * win.stride[1] + sx * win.dilation[1]) as i64
                                    - win.padding[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xi = ((img * c + first_channel + ci) * h + iy as usize) * wd
                                    + ix as usize;
                                let wi = ((ko * cg + ci) * r + ry) * s + sx;
                                acc += (x[xi] as i64 - zp_x as i64) * (w[wi] as i64 - zp_w);
                            }
                        }
                    }
                    acc += bias.map_or(0, |b| b[ko] as i64);
                    out.push(requant_bounds(acc, s_in * s_w / s_out, zp_out));
                }
            }
        }
    }
    Val::Bounds(out)
}
