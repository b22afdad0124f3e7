//! The CPU reference executor: straightforward loops for every op, the
//! oracle device results are checked against. Int8 gemm/conv2d follow
//! the ONNX QLinearConv/QLinearMatMul definition as onnxruntime evaluates
//! it (`ir::requant_f32`), which the lowering reproduces exactly.

use crate::ir::{
    linear_taps, nearest_indices, quantize_f32, requant_f32, requant_scales, strides, BinaryOp,
    DType, Graph, Op, PadMode, PoolKind, Quant, ReduceKind, ResizeMode, TensorType, UnaryOp,
    ValueId, Window,
};
use std::collections::HashMap;

/// Elements of a tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    /// uint8 graph inputs and outputs (see `DType::U8`).
    U8(Vec<u8>),
    /// f16 graph inputs, outputs and constants, as bit patterns (see
    /// `DType::F16`).
    F16(Vec<u16>),
    /// bf16 ones, as bit patterns.
    Bf16(Vec<u16>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::F16(v) | TensorData::Bf16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I8(_) => DType::I8,
            TensorData::I32(_) => DType::I32,
            TensorData::U8(_) => DType::U8,
            TensorData::F16(_) => DType::F16,
            TensorData::Bf16(_) => DType::Bf16,
        }
    }
    /// Little-endian bytes, the layout in NPU memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|x| *x as u8).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::F16(v) | TensorData::Bf16(v) => {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
        }
    }
    pub fn from_bytes(dtype: DType, b: &[u8]) -> Self {
        let w = |c: &[u8]| [c[0], c[1], c[2], c[3]];
        match dtype {
            DType::F32 => TensorData::F32(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(w(c)))
                    .collect(),
            ),
            DType::I32 => TensorData::I32(
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(w(c)))
                    .collect(),
            ),
            DType::I8 => TensorData::I8(b.iter().map(|x| *x as i8).collect()),
            DType::U8 => TensorData::U8(b.to_vec()),
            DType::F16 => TensorData::F16(half_bits(b)),
            DType::Bf16 => TensorData::Bf16(half_bits(b)),
        }
    }
}

/// Little-endian 2-byte elements.
fn half_bits(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub ty: TensorType,
    pub data: TensorData,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunError {
    #[error("input `{0}` was not given")]
    MissingInput(String),
    #[error(
        "input `{name}` should be {want} with {elems} elements, got {got_dtype} with {got_elems}"
    )]
    BadInput {
        name: String,
        want: String,
        elems: usize,
        got_dtype: &'static str,
        got_elems: usize,
    },
    #[error("{0}")]
    Graph(String),
}

/// Run `graph` on the CPU; returns every graph output by name.
pub fn run(
    graph: &Graph,
    inputs: &HashMap<String, TensorData>,
) -> Result<HashMap<String, Tensor>, RunError> {
    let mut vals: Vec<TensorData> = Vec::with_capacity(graph.nodes().len());
    for node in graph.nodes() {
        let get = |v: &ValueId| &vals[v.0];
        let ty = &node.ty;
        let out = match &node.op {
            Op::Input => {
                let d = inputs
                    .get(&node.name)
                    .ok_or_else(|| RunError::MissingInput(node.name.clone()))?;
                if d.dtype() != ty.dtype || d.len() != ty.elems() {
                    return Err(RunError::BadInput {
                        name: node.name.clone(),
                        want: ty.to_string(),
                        elems: ty.elems(),
                        got_dtype: d.dtype().name(),
                        got_elems: d.len(),
                    });
                }
                d.clone()
            }
            Op::Constant { data } => (**data).clone(),
            Op::Gemm {
                a,
                b,
                bias,
                trans_a,
                trans_b,
            } => {
                let (ta, tb) = (graph.ty(*a), graph.ty(*b));
                let (m, n) = (ty.shape[0], ty.shape[1]);
                let k = if *trans_a { ta.shape[0] } else { ta.shape[1] };
                let ai = |i: usize, p: usize| if *trans_a { p * m + i } else { i * k + p };
                let bi = |p: usize, j: usize| if *trans_b { j * k + p } else { p * n + j };
                match (get(a), get(b)) {
                    (TensorData::F32(av), TensorData::F32(bv)) => {
                        let bias = bias.map(|v| f32s(get(&v)));
                        let mut out = vec![0f32; m * n];
                        for i in 0..m {
                            for j in 0..n {
                                let mut acc = 0f32;
                                for p in 0..k {
                                    acc += av[ai(i, p)] * bv[bi(p, j)];
                                }
                                out[i * n + j] = acc + bias.as_ref().map_or(0.0, |b| b[j]);
                            }
                        }
                        TensorData::F32(out)
                    }
                    (TensorData::I8(av), TensorData::I8(bv)) => {
                        let scales = requant_scales(ta, tb, ty, n).map_err(RunError::Graph)?;
                        let (za, zb) = (zp_of(ta), |c| zp_at(tb, c));
                        let zo = zp_of(ty) as i8;
                        let bias = bias.map(|v| i32s(get(&v)));
                        let mut out = vec![0i8; m * n];
                        for i in 0..m {
                            for j in 0..n {
                                let mut acc = bias.as_ref().map_or(0, |b| b[j]);
                                let zb = zb(j);
                                for p in 0..k {
                                    acc = acc.wrapping_add(
                                        (av[ai(i, p)] as i32 - za) * (bv[bi(p, j)] as i32 - zb),
                                    );
                                }
                                out[i * n + j] = requant_f32(acc, scales[j], zo, -128, 127);
                            }
                        }
                        TensorData::I8(out)
                    }
                    _ => return Err(RunError::Graph(format!("{}: operand types", node.name))),
                }
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                window,
                groups,
            } => conv2d(
                graph,
                ty,
                get(input),
                graph.ty(*input),
                get(weight),
                graph.ty(*weight),
                bias.map(|b| get(&b)),
                window,
                *groups,
            )?,
            Op::Binary { op, a, b } => {
                let (av, bv) = (real(get(a), graph.ty(*a)), real(get(b), graph.ty(*b)));
                let (sa, sb) = (&graph.ty(*a).shape, &graph.ty(*b).shape);
                let out: Vec<f32> = (0..ty.elems())
                    .map(|i| {
                        binary_f32(
                            *op,
                            av[broadcast_index(i, &ty.shape, sa)],
                            bv[broadcast_index(i, &ty.shape, sb)],
                        )
                    })
                    .collect();
                requantized(out, ty)
            }
            Op::Unary { op, x } => match get(x) {
                TensorData::U8(_) | TensorData::F16(_) | TensorData::Bf16(_) => {
                    return Err(RunError::Graph(format!("{}: operand type", node.name)))
                }
                TensorData::F32(v) => {
                    TensorData::F32(v.iter().map(|&x| unary_f32(*op, x)).collect())
                }
                d @ TensorData::I8(_) if !matches!(op, UnaryOp::Relu | UnaryOp::Clamp { .. }) => {
                    requantized(
                        real(d, graph.ty(*x))
                            .iter()
                            .map(|&x| unary_f32(*op, x))
                            .collect(),
                        ty,
                    )
                }
                TensorData::I8(v) => {
                    let (lo, hi) = int8_clamp_bounds(*op, ty);
                    TensorData::I8(v.iter().map(|&x| x.clamp(lo, hi)).collect())
                }
                TensorData::I32(_) => {
                    return Err(RunError::Graph(format!("{}: i32 unary", node.name)))
                }
            },
            Op::Pool {
                kind: PoolKind::Avg,
                x,
                kernel,
                window,
            } if ty.dtype == DType::I8 => {
                let TensorData::I8(q) = get(x) else {
                    return Err(RunError::Graph(format!(
                        "{}: i8 pool of a non-i8 input",
                        node.name
                    )));
                };
                let (
                    Some(Quant::PerTensor {
                        scale: si,
                        zero_point: zi,
                    }),
                    Some(Quant::PerTensor {
                        scale: so,
                        zero_point: zo,
                    }),
                ) = (&graph.ty(*x).quant, &ty.quant)
                else {
                    return Err(RunError::Graph(format!(
                        "{}: int8 pooling needs per-tensor quantization",
                        node.name
                    )));
                };
                TensorData::I8(avg_pool_i8(
                    q,
                    (*si, *zi),
                    (*so, *zo),
                    &graph.ty(*x).shape,
                    &ty.shape,
                    *kernel,
                    window,
                ))
            }
            Op::Pool {
                kind,
                x,
                kernel,
                window,
            } => requantized(
                pool(
                    *kind,
                    &real(get(x), graph.ty(*x)),
                    &graph.ty(*x).shape,
                    &ty.shape,
                    *kernel,
                    window,
                ),
                ty,
            ),
            Op::Softmax { x, axis } => {
                requantized(softmax(&real(get(x), graph.ty(*x)), &ty.shape, *axis), ty)
            }
            Op::Quantize { x } => requantized(f32s(get(x)), ty),
            Op::Dequantize { x } => TensorData::F32(real(get(x), graph.ty(*x))),
            Op::SignFlip { x } => match get(x) {
                TensorData::U8(v) => TensorData::I8(crate::ir::u8_to_i8(v)),
                TensorData::I8(v) => TensorData::U8(crate::ir::i8_to_u8(v)),
                _ => return Err(RunError::Graph(format!("{}: operand type", node.name))),
            },
            Op::Reshape { x, .. } => get(x).clone(),
            // The `half` crate: an implementation independent of the
            // device's (npu_isa's) conversions.
            Op::Cast { x, to } => match (get(x), to) {
                (TensorData::F32(v), DType::F16) => TensorData::F16(
                    v.iter()
                        .map(|&x| half::f16::from_f32(x).to_bits())
                        .collect(),
                ),
                (TensorData::F32(v), DType::Bf16) => TensorData::Bf16(
                    v.iter()
                        .map(|&x| half::bf16::from_f32(x).to_bits())
                        .collect(),
                ),
                (d @ (TensorData::F16(_) | TensorData::Bf16(_)), DType::F32) => {
                    TensorData::F32(real(d, graph.ty(*x)))
                }
                _ => return Err(RunError::Graph(format!("{}: operand type", node.name))),
            },
            Op::BatchMatMul { a, b, trans_b } => {
                let (ta, tb) = (graph.ty(*a), graph.ty(*b));
                let (sa, sb) = (&ta.shape, &tb.shape);
                let r = ty.shape.len();
                let (m, n) = (ty.shape[r - 2], ty.shape[r - 1]);
                let k = sa[sa.len() - 1];
                let batch = &ty.shape[..r - 2];
                let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
                // Element (bi, i, p) of a and (bi, p, j) of b.
                let ai = |bi: usize, i: usize, p: usize| {
                    broadcast_index(bi, batch, ba) * m * k + i * k + p
                };
                let bix = |bi: usize, p: usize, j: usize| {
                    broadcast_index(bi, batch, bb) * k * n
                        + if *trans_b { j * k + p } else { p * n + j }
                };
                let batches = batch.iter().product::<usize>();
                match (get(a), get(b)) {
                    (TensorData::F32(av), TensorData::F32(bv)) => {
                        let mut out = vec![0f32; ty.elems()];
                        for bi in 0..batches {
                            for i in 0..m {
                                for j in 0..n {
                                    let mut acc = 0f32;
                                    for p in 0..k {
                                        acc += av[ai(bi, i, p)] * bv[bix(bi, p, j)];
                                    }
                                    out[(bi * m + i) * n + j] = acc;
                                }
                            }
                        }
                        TensorData::F32(out)
                    }
                    (TensorData::I8(av), TensorData::I8(bv)) => {
                        let scales = requant_scales(ta, tb, ty, n).map_err(RunError::Graph)?;
                        let (za, zb) = (zp_of(ta), zp_of(tb));
                        let zo = zp_of(ty) as i8;
                        let mut out = vec![0i8; ty.elems()];
                        for bi in 0..batches {
                            for i in 0..m {
                                for j in 0..n {
                                    let mut acc = 0i32;
                                    for p in 0..k {
                                        acc = acc.wrapping_add(
                                            (av[ai(bi, i, p)] as i32 - za)
                                                * (bv[bix(bi, p, j)] as i32 - zb),
                                        );
                                    }
                                    out[(bi * m + i) * n + j] =
                                        requant_f32(acc, scales[j], zo, -128, 127);
                                }
                            }
                        }
                        TensorData::I8(out)
                    }
                    _ => return Err(RunError::Graph(format!("{}: operand types", node.name))),
                }
            }
            Op::Gather { table, indices } => {
                let tv = f32s(get(table));
                let rows = graph.ty(*table).shape[0];
                let row = tv.len() / rows;
                let mut out = Vec::with_capacity(ty.elems());
                for &i in &i32s(get(indices)) {
                    let j = if i < 0 {
                        i as i64 + rows as i64
                    } else {
                        i as i64
                    };
                    if j < 0 || j >= rows as i64 {
                        return Err(RunError::Graph(format!(
                            "{}: index {i} is outside the table's {rows} rows",
                            node.name
                        )));
                    }
                    out.extend_from_slice(&tv[j as usize * row..][..row]);
                }
                TensorData::F32(out)
            }
            Op::LayerNorm {
                x,
                scale,
                bias,
                epsilon,
            } => {
                let xv = f32s(get(x));
                let (sv, bv) = (f32s(get(scale)), bias.map(|b| f32s(get(&b))));
                let d = sv.len();
                let mut out = Vec::with_capacity(xv.len());
                for r in xv.chunks(d) {
                    let mean = r.iter().sum::<f32>() / d as f32;
                    let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                    let inv = 1.0 / (var + epsilon).sqrt();
                    for (c, v) in r.iter().enumerate() {
                        let b = bv.as_ref().map_or(0.0, |b| b[c]);
                        out.push((v - mean) * inv * sv[c] + b);
                    }
                }
                TensorData::F32(out)
            }
            Op::Reduce { kind, x, axes, .. } => requantized(
                reduce(
                    *kind,
                    &real(get(x), graph.ty(*x)),
                    &graph.ty(*x).shape,
                    axes,
                ),
                ty,
            ),
            Op::LogSoftmax { x, axis } => requantized(
                log_softmax(&real(get(x), graph.ty(*x)), &ty.shape, *axis),
                ty,
            ),
            Op::Where { cond, a, b } => {
                let (cv, av, bv) = (f32s(get(cond)), f32s(get(a)), f32s(get(b)));
                let at = |v: &ValueId, i: usize| broadcast_index(i, &ty.shape, &graph.ty(*v).shape);
                TensorData::F32(
                    (0..ty.elems())
                        .map(|i| {
                            if cv[at(cond, i)] != 0.0 {
                                av[at(a, i)]
                            } else {
                                bv[at(b, i)]
                            }
                        })
                        .collect(),
                )
            }
            op => movement(graph, op, ty, |v| get(&v)).ok_or_else(|| {
                RunError::Graph(format!("{}: no reference for {}", node.name, op.name()))
            })?,
        };
        vals.push(out);
    }
    Ok(graph
        .outputs()
        .iter()
        .map(|o| {
            (
                graph.node(*o).name.clone(),
                Tensor {
                    ty: graph.ty(*o).clone(),
                    data: vals[o.0].clone(),
                },
            )
        })
        .collect())
}

/// Real values of a tensor: f32 as is, i8 as `(q - zp) * scale` computed
/// like the device's CONVERT (i32 subtraction, one f32 multiply).
pub fn real(d: &TensorData, ty: &TensorType) -> Vec<f32> {
    match d {
        TensorData::F32(v) => v.clone(),
        TensorData::I8(v) => match &ty.quant {
            Some(q @ Quant::PerChannel { scales, axis, .. }) => {
                let inner: usize = ty.shape[axis + 1..].iter().product();
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let c = (i / inner) % scales.len();
                        (x as i32 - q.zero_point_of(c) as i32) as f32 * scales[c]
                    })
                    .collect()
            }
            q => {
                let (scale, zp) = match q {
                    Some(Quant::PerTensor { scale, zero_point }) => (*scale, *zero_point as i32),
                    _ => (1.0, 0),
                };
                v.iter().map(|&q| (q as i32 - zp) as f32 * scale).collect()
            }
        },
        TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::U8(v) => real(&TensorData::I8(crate::ir::u8_to_i8(v)), ty),
        TensorData::F16(v) => v
            .iter()
            .map(|&h| half::f16::from_bits(h).to_f32())
            .collect(),
        TensorData::Bf16(v) => v
            .iter()
            .map(|&h| half::bf16::from_bits(h).to_f32())
            .collect(),
    }
}

/// f32 results as a tensor of type `ty`: unchanged for f32, quantized for i8.
fn requantized(v: Vec<f32>, ty: &TensorType) -> TensorData {
    match &ty.quant {
        Some(Quant::PerTensor { scale, zero_point }) if ty.dtype == DType::I8 => TensorData::I8(
            v.iter()
                .map(|&x| quantize_f32(x, *scale, *zero_point))
                .collect(),
        ),
        Some(q @ Quant::PerChannel { scales, axis, .. }) if ty.dtype == DType::I8 => {
            let inner: usize = ty.shape[axis + 1..].iter().product();
            TensorData::I8(
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let c = (i / inner) % scales.len();
                        quantize_f32(x, scales[c], q.zero_point_of(c))
                    })
                    .collect(),
            )
        }
        _ => TensorData::F32(v),
    }
}

/// Zero point of a per-tensor quantized type (0 otherwise).
fn zp_of(t: &TensorType) -> i32 {
    t.quant.as_ref().map_or(0, |q| q.zero_point() as i32)
}

/// Zero point of channel `c` of a quantized type.
fn zp_at(t: &TensorType, c: usize) -> i32 {
    t.quant.as_ref().map_or(0, |q| q.zero_point_of(c) as i32)
}

fn f32s(d: &TensorData) -> Vec<f32> {
    match d {
        TensorData::F32(v) => v.clone(),
        _ => vec![],
    }
}
fn i32s(d: &TensorData) -> Vec<i32> {
    match d {
        TensorData::I32(v) => v.clone(),
        _ => vec![],
    }
}

/// Quantized bounds of relu/clamp (shared with the lowering).
pub use crate::ir::int8_clamp_bounds;

pub fn binary_f32(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Prelu => {
            if a < 0.0 {
                a * b
            } else {
                a
            }
        }
        BinaryOp::Equal => mask(a == b),
        BinaryOp::NotEqual => mask(a != b),
        BinaryOp::Less => mask(a < b),
        BinaryOp::LessOrEqual => mask(a <= b),
        BinaryOp::Greater => mask(a > b),
        BinaryOp::GreaterOrEqual => mask(a >= b),
        BinaryOp::And => mask(a != 0.0 && b != 0.0),
        BinaryOp::Or => mask(a != 0.0 || b != 0.0),
        BinaryOp::Xor => mask((a != 0.0) != (b != 0.0)),
    }
}

/// A mask element: 1.0 where true, +0.0 where false.
fn mask(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn unary_f32(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Clamp { lo, hi } => x.max(lo).min(hi),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Erf => libm::erf(x as f64) as f32,
        UnaryOp::Gelu => {
            let x = x as f64;
            (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
        }
        UnaryOp::GeluTanh => {
            let x = x as f64;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            (0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())) as f32
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x < 0.0 {
                alpha * x
            } else {
                x
            }
        }
        UnaryOp::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                (alpha as f64 * (x as f64).exp_m1()) as f32
            }
        }
        UnaryOp::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        UnaryOp::HardSwish { alpha, beta } => x * (alpha * x + beta).clamp(0.0, 1.0),
    }
}

/// `kind` over `axes` of `x` (row-major `shape`); the result row-major over
/// the kept axes. Sums in f64.
pub fn reduce(kind: ReduceKind, x: &[f32], shape: &[usize], axes: &[usize]) -> Vec<f32> {
    let kept: Vec<usize> = (0..shape.len())
        .map(|i| if axes.contains(&i) { 1 } else { shape[i] })
        .collect();
    let n: usize = kept.iter().product();
    let count = x.len() / n.max(1);
    let mut acc: Vec<f64> = vec![
        match kind {
            ReduceKind::Max => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
            _ => 0.0,
        };
        n
    ];
    for (i, &v) in x.iter().enumerate() {
        // The output index: the coordinates with the reduced ones at 0.
        let (mut rest, mut o, mut stride) = (i, 0, 1);
        for d in (0..shape.len()).rev() {
            let c = rest % shape[d];
            rest /= shape[d];
            if !axes.contains(&d) {
                o += c * stride;
            }
            stride *= kept[d];
        }
        let v = v as f64;
        acc[o] = match kind {
            ReduceKind::Sum | ReduceKind::Mean => acc[o] + v,
            ReduceKind::Max => acc[o].max(v),
            ReduceKind::Min => acc[o].min(v),
        };
    }
    acc.iter()
        .map(|&a| match kind {
            ReduceKind::Mean => (a / count as f64) as f32,
            _ => a as f32,
        })
        .collect()
}

/// Index into a (broadcast) operand of shape `src` for flat output index `i`.
fn broadcast_index(mut i: usize, out: &[usize], src: &[usize]) -> usize {
    let mut idx = 0;
    let mut mul = 1;
    for d in (0..out.len()).rev() {
        let coord = i % out[d];
        i /= out[d];
        let sd = d as isize - (out.len() - src.len()) as isize;
        if sd >= 0 {
            let n = src[sd as usize];
            if n != 1 {
                idx += coord * mul;
            }
            mul *= n;
        }
    }
    idx
}

/// Called with (output index, output channel, (input index, weight index) taps).
type TapVisitor<'a> = dyn FnMut(usize, usize, &[(usize, usize)]) + 'a;

#[allow(clippy::too_many_arguments)]
fn conv2d(
    graph: &Graph,
    ty: &TensorType,
    x: &TensorData,
    tx: &TensorType,
    w: &TensorData,
    tw: &TensorType,
    bias: Option<&TensorData>,
    win: &Window,
    groups: usize,
) -> Result<TensorData, RunError> {
    let _ = graph;
    let (n, c, h, wd) = (tx.shape[0], tx.shape[1], tx.shape[2], tx.shape[3]);
    let (k, cg, r, s) = (tw.shape[0], tw.shape[1], tw.shape[2], tw.shape[3]);
    let (oh, ow) = (ty.shape[2], ty.shape[3]);
    let kg = k / groups;
    // Calls f(out index, channel k, taps) with (input index, weight index) pairs.
    let mut taps = Vec::with_capacity(cg * r * s);
    let mut each = |f: &mut TapVisitor| {
        for b in 0..n {
            for ko in 0..k {
                let g = ko / kg;
                for y in 0..oh {
                    for xo in 0..ow {
                        taps.clear();
                        for ci in 0..cg {
                            for ri in 0..r {
                                for si in 0..s {
                                    let iy = (y * win.stride[0] + ri * win.dilation[0]) as isize
                                        - win.padding[0] as isize;
                                    let ix = (xo * win.stride[1] + si * win.dilation[1]) as isize
                                        - win.padding[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        let xi = ((b * c + g * cg + ci) * h + iy as usize) * wd
                                            + ix as usize;
                                        taps.push((xi, ((ko * cg + ci) * r + ri) * s + si));
                                    }
                                }
                            }
                        }
                        f(((b * k + ko) * oh + y) * ow + xo, ko, &taps);
                    }
                }
            }
        }
    };
    match (x, w) {
        (TensorData::F32(xv), TensorData::F32(wv)) => {
            let bias = bias.map(f32s);
            let mut out = vec![0f32; ty.elems()];
            each(&mut |o, ko, taps| {
                let acc: f32 = taps.iter().map(|&(xi, wi)| xv[xi] * wv[wi]).sum();
                out[o] = acc + bias.as_ref().map_or(0.0, |b| b[ko]);
            });
            Ok(TensorData::F32(out))
        }
        (TensorData::I8(xv), TensorData::I8(wv)) => {
            let scales = requant_scales(tx, tw, ty, k).map_err(RunError::Graph)?;
            let (zx, zo) = (zp_of(tx), zp_of(ty) as i8);
            let bias = bias.map(i32s);
            let mut out = vec![0i8; ty.elems()];
            // Padding taps are left out: they hold the real value 0.
            each(&mut |o, ko, taps| {
                let b = bias.as_ref().map_or(0, |b| b[ko]);
                let zw = zp_at(tw, ko);
                let acc = taps.iter().fold(b, |acc, &(xi, wi)| {
                    acc.wrapping_add((xv[xi] as i32 - zx) * (wv[wi] as i32 - zw))
                });
                out[o] = requant_f32(acc, scales[ko], zo, -128, 127);
            });
            Ok(TensorData::I8(out))
        }
        _ => Err(RunError::Graph("conv2d: operand types".into())),
    }
}

fn pool(
    kind: PoolKind,
    x: &[f32],
    ishape: &[usize],
    oshape: &[usize],
    kernel: [usize; 2],
    win: &Window,
) -> Vec<f32> {
    let (nc, h, w) = (ishape[0] * ishape[1], ishape[2], ishape[3]);
    let (oh, ow) = (oshape[2], oshape[3]);
    let mut out = Vec::with_capacity(nc * oh * ow);
    for p in 0..nc {
        for y in 0..oh {
            for xo in 0..ow {
                let (mut acc, mut cnt) = (
                    if kind == PoolKind::Max {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    },
                    0usize,
                );
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let iy = (y * win.stride[0] + ky) as isize - win.padding[0] as isize;
                        let ix = (xo * win.stride[1] + kx) as isize - win.padding[1] as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let v = x[(p * h + iy as usize) * w + ix as usize];
                            acc = if kind == PoolKind::Max {
                                acc.max(v)
                            } else {
                                acc + v
                            };
                            cnt += 1;
                        }
                    }
                }
                out.push(if kind == PoolKind::Avg {
                    acc / cnt.max(1) as f32
                } else {
                    acc
                });
            }
        }
    }
    out
}

/// int8 average pooling as onnxruntime's QLinearAveragePool computes it
/// (contrib_ops/cpu/quantization/qlinear_pool.cc): a window covering the
/// whole plane without padding goes to its QLinearGlobalAveragePool (MLAS:
/// the exact integer sum of `q - zp_x`, times `f32(s_x / f32(s_y * n))`,
/// rounded half to even, plus `zp_y`); any other window dequantizes each
/// value to f32, sums them in row-major order in f32, divides by the count
/// of positions inside the input, and rounds `f32(y / s_y) + zp_y` (the
/// zero point added in f32, before the rounding) half to even.
fn avg_pool_i8(
    q: &[i8],
    (sx, zx): (f32, i8),
    (sy, zy): (f32, i8),
    ishape: &[usize],
    oshape: &[usize],
    kernel: [usize; 2],
    win: &Window,
) -> Vec<i8> {
    let (nc, h, w) = (ishape[0] * ishape[1], ishape[2], ishape[3]);
    let (oh, ow) = (oshape[2], oshape[3]);
    let global = kernel == [h, w] && win.padding == [0, 0];
    let sat = |v: f32| v.round_ties_even().clamp(-128.0, 127.0) as i8;
    let mut out = Vec::with_capacity(nc * oh * ow);
    for p in 0..nc {
        for y in 0..oh {
            for xo in 0..ow {
                let mut inside = Vec::new();
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let iy = (y * win.stride[0] + ky) as isize - win.padding[0] as isize;
                        let ix = (xo * win.stride[1] + kx) as isize - win.padding[1] as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            inside.push(
                                q[(p * h + iy as usize) * w + ix as usize] as i32 - zx as i32,
                            );
                        }
                    }
                }
                let n = inside.len().max(1) as f32;
                out.push(if global {
                    let acc: i32 = inside.iter().sum();
                    let scale = sx / (sy * n);
                    let r = (acc as f32 * scale).round_ties_even();
                    (r + zy as f32).clamp(-128.0, 127.0) as i8
                } else {
                    let sum = inside.iter().fold(0f32, |a, &d| a + d as f32 * sx);
                    sat(sum / n / sy + zy as f32)
                });
            }
        }
    }
    out
}

/// `x - max - ln(sum(exp(x - max)))` along `axis`, in f64.
fn log_softmax(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out = vec![0f32; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let idx = |j: usize| (o * len + j) * inner + i;
            let m = (0..len)
                .map(|j| x[idx(j)] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..len).map(|j| (x[idx(j)] as f64 - m).exp()).sum();
            for j in 0..len {
                out[idx(j)] = (x[idx(j)] as f64 - m - sum.ln()) as f32;
            }
        }
    }
    out
}

fn softmax(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out = vec![0f32; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let idx = |j: usize| (o * len + j) * inner + i;
            let m = (0..len)
                .map(|j| x[idx(j)])
                .fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..len).map(|j| (x[idx(j)] - m).exp()).sum();
            for j in 0..len {
                out[idx(j)] = (x[idx(j)] - m).exp() * (1.0 / sum);
            }
        }
    }
    out
}

/// Multi-index of flat index `i` in `shape`.
fn unflatten(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn flatten(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// For every element of a data-movement op's result (shape `out`), the
/// flat index of the operand element (shape `x`) it holds, or None for
/// padding: the ops' definitions, one element at a time.
fn sources(op: &Op, x: &[usize], out: &[usize]) -> Vec<Option<usize>> {
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let o = unflatten(i, out);
            let src: Option<Vec<usize>> = match op {
                Op::Slice { begin, step, .. } => Some(
                    (0..o.len())
                        .map(|d| (begin[d] as i64 + o[d] as i64 * step[d]) as usize)
                        .collect(),
                ),
                Op::Pad { begin, mode, .. } => (0..o.len())
                    .map(|d| {
                        let i = o[d] as i64 - begin[d] as i64;
                        let n = x[d] as i64;
                        let i = match mode {
                            PadMode::Constant => i,
                            PadMode::Edge => i.clamp(0, n - 1),
                            // ONNX reflect: -1 -> 1, n -> n - 2.
                            PadMode::Reflect if i < 0 => -i,
                            PadMode::Reflect if i >= n => 2 * (n - 1) - i,
                            PadMode::Reflect => i,
                        };
                        (0..n).contains(&i).then_some(i as usize)
                    })
                    .collect(),
                Op::Transpose { perm, .. } => {
                    let mut s = vec![0; o.len()];
                    for (d, &p) in perm.iter().enumerate() {
                        s[p] = o[d];
                    }
                    Some(s)
                }
                Op::DepthToSpace { block: b, crd, .. } => {
                    // ONNX: DCR reshapes to [n, b, b, c', h, w], CRD to
                    // [n, c', b, b, h, w] before the transpose.
                    let (c, h, w) = (o[1], o[2], o[3]);
                    let (by, bx) = (h % b, w % b);
                    let cin = if *crd {
                        c * b * b + by * b + bx
                    } else {
                        (by * b + bx) * out[1] + c
                    };
                    Some(vec![o[0], cin, h / b, w / b])
                }
                Op::SpaceToDepth { block: b, .. } => {
                    let c_in = x[1];
                    let (c, h, w) = (o[1], o[2], o[3]);
                    let (blk, ci) = (c / c_in, c % c_in);
                    Some(vec![o[0], ci, h * b + blk / b, w * b + blk % b])
                }
                Op::Resize {
                    size,
                    scale,
                    mode: ResizeMode::Nearest(round),
                    coord,
                    ..
                } => {
                    let hy = nearest_indices(x[2], size[0], scale[0], *coord, *round);
                    let wx = nearest_indices(x[3], size[1], scale[1], *coord, *round);
                    Some(vec![o[0], o[1], hy[o[2]], wx[o[3]]])
                }
                _ => None,
            };
            src.map(|s| flatten(&s, x))
        })
        .collect()
}

/// The elements of `d` at `src` (`fill`, in real units, where None).
fn gather(d: &TensorData, src: &[Option<usize>], fill: f32, ty: &TensorType) -> TensorData {
    match d {
        TensorData::F32(v) => {
            TensorData::F32(src.iter().map(|s| s.map_or(fill, |i| v[i])).collect())
        }
        TensorData::I32(v) => TensorData::I32(
            src.iter()
                .map(|s| s.map_or(fill as i32, |i| v[i]))
                .collect(),
        ),
        TensorData::I8(v) => {
            let (scale, zp) = match &ty.quant {
                Some(Quant::PerTensor { scale, zero_point }) => (*scale, *zero_point),
                _ => (1.0, 0),
            };
            let q = quantize_f32(fill, scale, zp);
            TensorData::I8(src.iter().map(|s| s.map_or(q, |i| v[i])).collect())
        }
        // The IR moves no u8 tensor (they are graph inputs and outputs).
        TensorData::U8(v) => TensorData::U8(src.iter().map(|s| s.map_or(0, |i| v[i])).collect()),
        TensorData::F16(v) => TensorData::F16(src.iter().map(|s| s.map_or(0, |i| v[i])).collect()),
        TensorData::Bf16(v) => {
            TensorData::Bf16(src.iter().map(|s| s.map_or(0, |i| v[i])).collect())
        }
    }
}

/// Operands (data, shape) joined along `axis`.
fn concat(parts: &[(&TensorData, &[usize])], axis: usize) -> TensorData {
    let outer: usize = parts[0].1[..axis].iter().product();
    macro_rules! join {
        ($variant:ident) => {{
            let mut v = Vec::new();
            for o in 0..outer {
                for (d, shape) in parts {
                    let TensorData::$variant(d) = d else {
                        unreachable!()
                    };
                    let inner: usize = shape[axis..].iter().product();
                    v.extend_from_slice(&d[o * inner..(o + 1) * inner]);
                }
            }
            TensorData::$variant(v)
        }};
    }
    match parts[0].0 {
        TensorData::F32(_) => join!(F32),
        TensorData::I8(_) => join!(I8),
        TensorData::I32(_) => join!(I32),
        TensorData::U8(_) => join!(U8),
        TensorData::F16(_) => join!(F16),
        TensorData::Bf16(_) => join!(Bf16),
    }
}

/// Bilinear resize of the last two axes, onnxruntime's weights.
fn resize_linear(
    x: &[f32],
    shape: &[usize],
    size: [usize; 2],
    scale: [f32; 2],
    coord: crate::ir::CoordMode,
) -> Vec<f32> {
    let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3]);
    let ty = linear_taps(h, size[0], scale[0], coord);
    let tx = linear_taps(w, size[1], scale[1], coord);
    let st = strides(&[planes, h, w]);
    let mut out = Vec::with_capacity(planes * size[0] * size[1]);
    for p in 0..planes {
        for a in &ty {
            for b in &tx {
                let at = |i: usize, j: usize| x[p * st[0] + i * st[1] + j];
                out.push(
                    at(a.i0, b.i0) * a.w0 * b.w0
                        + at(a.i0, b.i1) * a.w0 * b.w1
                        + at(a.i1, b.i0) * a.w1 * b.w0
                        + at(a.i1, b.i1) * a.w1 * b.w1,
                );
            }
        }
    }
    out
}

/// The value of data-movement op `op` (result type `ty`) whose operands'
/// values `get` gives; None for any other op. (Also the compiler's
/// constant folding of movement ops on constants.)
pub(crate) fn movement<'a>(
    graph: &Graph,
    op: &Op,
    ty: &TensorType,
    get: impl Fn(ValueId) -> &'a TensorData,
) -> Option<TensorData> {
    Some(match op {
        Op::Concat { xs, axis } => {
            let parts: Vec<(&TensorData, &[usize])> = xs
                .iter()
                .map(|v| (get(*v), graph.ty(*v).shape.as_slice()))
                .collect();
            concat(&parts, *axis)
        }
        Op::Resize {
            x,
            size,
            scale,
            mode: ResizeMode::Linear,
            coord,
        } => TensorData::F32(resize_linear(
            &f32s(get(*x)),
            &graph.ty(*x).shape,
            *size,
            *scale,
            *coord,
        )),
        Op::Slice { x, .. }
        | Op::Pad { x, .. }
        | Op::Transpose { x, .. }
        | Op::DepthToSpace { x, .. }
        | Op::SpaceToDepth { x, .. }
        | Op::Resize { x, .. } => {
            let src = sources(op, &graph.ty(*x).shape, &ty.shape);
            let fill = match op {
                Op::Pad { value, .. } => *value,
                _ => 0.0,
            };
            gather(get(*x), &src, fill, ty)
        }
        _ => return None,
    })
}
