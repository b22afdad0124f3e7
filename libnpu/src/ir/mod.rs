//! The kernel IR: typed tensors and a graph of ops in SSA form.
//!
//! Every op's output type is inferred (and its operands validated) when the
//! op is added, so a [`Graph`] that exists is well typed. Layout conventions:
//! row-major tensors; conv2d and pooling use NCHW activations and KCRS
//! (out channels, in channels per group, rows, cols) filters.

mod movement;
pub mod passes;
mod quant;

pub use movement::{
    linear_taps, nearest_indices, slice_axis, strides, CoordMode, LinearTap, NearestRound, PadMode,
    ResizeMode,
};

pub use quant::{
    i8_to_u8, int8_clamp_bounds, quant_multiplier, quantize_f32, requant_f32, requant_scales,
    u8_to_i8, u8_zero_point,
};

use crate::reference::TensorData;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Element types of tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I8,
    I32,
    /// uint8, for graph inputs and outputs only: ops compute on int8, and
    /// [`Op::SignFlip`] converts at the boundary. Its quantization holds
    /// the zero point of the int8 view (`zp_u8 - 128`, see
    /// [`u8_zero_point`]), so a flip keeps the type's quantization as is.
    U8,
    /// IEEE binary16, for graph inputs, outputs and constants only: ops
    /// compute in f32, and [`Op::Cast`] converts at the boundary (on the
    /// device: CONVERT, npu-hw.rst "Half-precision conversions").
    F16,
    /// bfloat16 (the upper half of an f32), as [`DType::F16`].
    Bf16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::Bf16 => 2,
            DType::I8 | DType::U8 => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I8 => "i8",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }
    /// The 16-bit floating-point storage types, which only [`Op::Cast`]
    /// (and reshape) take.
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::Bf16)
    }
}

/// Affine quantization of an int8 tensor: `real = scale * (q - zero_point)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Quant {
    PerTensor {
        scale: f32,
        zero_point: i8,
    },
    /// One scale and one zero point per index of `axis` (weights: the
    /// output-channel axis; ONNX allows any axis); `zero_points` is empty
    /// when they are all 0 (symmetric), else one per scale.
    PerChannel {
        scales: Vec<f32>,
        axis: usize,
        zero_points: Vec<i8>,
    },
}

impl Quant {
    /// Symmetric per-channel quantization (every zero point 0).
    pub fn per_channel(scales: Vec<f32>, axis: usize) -> Quant {
        Quant::PerChannel {
            scales,
            axis,
            zero_points: vec![],
        }
    }
    /// The per-tensor zero point (0 for per-channel quantization: use
    /// [`Quant::zero_point_of`] there).
    pub fn zero_point(&self) -> i8 {
        match self {
            Quant::PerTensor { zero_point, .. } => *zero_point,
            Quant::PerChannel { .. } => 0,
        }
    }
    /// Zero point of channel `c` (the tensor's when per-tensor).
    pub fn zero_point_of(&self, c: usize) -> i8 {
        match self {
            Quant::PerTensor { zero_point, .. } => *zero_point,
            Quant::PerChannel { zero_points, .. } => zero_points.get(c).copied().unwrap_or(0),
        }
    }
    /// Whether every zero point is 0.
    pub fn symmetric(&self) -> bool {
        match self {
            Quant::PerTensor { zero_point, .. } => *zero_point == 0,
            Quant::PerChannel { zero_points, .. } => zero_points.iter().all(|&z| z == 0),
        }
    }
    /// Scale of channel `c` (the tensor scale when per-tensor).
    pub fn scale(&self, c: usize) -> f32 {
        match self {
            Quant::PerTensor { scale, .. } => *scale,
            Quant::PerChannel { scales, .. } => scales.get(c).copied().unwrap_or(1.0),
        }
    }
}

/// Type of a tensor value.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub quant: Option<Quant>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: &[usize]) -> Self {
        TensorType {
            dtype,
            shape: shape.to_vec(),
            quant: None,
        }
    }
    pub fn quantized(shape: &[usize], quant: Quant) -> Self {
        TensorType {
            dtype: DType::I8,
            shape: shape.to_vec(),
            quant: Some(quant),
        }
    }
    /// A uint8 tensor with scale `scale` and (uint8) zero point `zp`.
    pub fn uint8(shape: &[usize], scale: f32, zp: u8) -> Self {
        TensorType {
            dtype: DType::U8,
            shape: shape.to_vec(),
            quant: Some(Quant::PerTensor {
                scale,
                zero_point: u8_zero_point(zp),
            }),
        }
    }
    /// The zero point as the element type reads it (uint8 ones 0..255).
    pub fn zero_point_value(&self) -> i32 {
        let z = self.quant.as_ref().map_or(0, |q| q.zero_point() as i32);
        if self.dtype == DType::U8 {
            z + 128
        } else {
            z
        }
    }
    /// Number of elements. Every type in a [`Graph`] has passed
    /// [`TensorType::checked_bytes`], so this does not overflow there.
    pub fn elems(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size in bytes, or `None` when the element count or the byte count
    /// overflows (shapes come from user text and may be absurd).
    pub fn checked_bytes(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d))
            .filter(|&b| b <= isize::MAX as usize)
    }
    pub fn bytes(&self) -> usize {
        self.elems() * self.dtype.size()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.name())?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")?;
        match &self.quant {
            None => Ok(()),
            Some(Quant::PerTensor { scale, .. }) => {
                write!(f, " q(scale={scale:?}, zp={})", self.zero_point_value())
            }
            Some(Quant::PerChannel {
                scales,
                axis,
                zero_points,
            }) => {
                write!(f, " q(axis={axis}, scales=[")?;
                for (i, s) in scales.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s:?}")?;
                }
                f.write_str("]")?;
                if zero_points.iter().any(|&z| z != 0) {
                    f.write_str(", zps=[")?;
                    for (i, z) in zero_points.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{z}")?;
                    }
                    f.write_str("]")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Index of a value (the output of one node) in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// ONNX PRelu: `a < 0 ? a * b : a`, `b` the slope (broadcast, usually
    /// one per channel).
    Prelu,
    // Comparisons and logic (f32 operands): the result is a mask, an f32
    // tensor of 1.0 (true) and +0.0 (false); ONNX's bool tensors. IEEE
    // rules: a comparison with NaN is false except not_equal; -0 == +0. The
    // logic ops read an operand as true where it is not zero (NaN is true).
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 16] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Prelu,
        BinaryOp::Equal,
        BinaryOp::NotEqual,
        BinaryOp::Less,
        BinaryOp::LessOrEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterOrEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];
    /// The result is a mask (f32 1.0 / +0.0).
    pub fn gives_mask(self) -> bool {
        self.compares() || matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
    /// A comparison (a mask from two ordered values; not the logic ops).
    pub fn compares(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::NotEqual
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
        )
    }
    /// The op computing `op(b, a)` as `mirrored(a, b)`, where there is one
    /// (the commutative ops are their own).
    pub fn mirrored(self) -> Option<BinaryOp> {
        match self {
            BinaryOp::Less => Some(BinaryOp::Greater),
            BinaryOp::LessOrEqual => Some(BinaryOp::GreaterOrEqual),
            BinaryOp::Greater => Some(BinaryOp::Less),
            BinaryOp::GreaterOrEqual => Some(BinaryOp::LessOrEqual),
            op if op.commutative() => Some(op),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Prelu => "prelu",
            BinaryOp::Equal => "equal",
            BinaryOp::NotEqual => "not_equal",
            BinaryOp::Less => "less",
            BinaryOp::LessOrEqual => "less_equal",
            BinaryOp::Greater => "greater",
            BinaryOp::GreaterOrEqual => "greater_equal",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
        }
    }
    pub fn commutative(self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Mul
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Equal
                | BinaryOp::NotEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Relu,
    /// Clamp to `[lo, hi]`, in real (dequantized) units.
    Clamp {
        lo: f32,
        hi: f32,
    },
    Sigmoid,
    Tanh,
    Exp,
    // The f32 functions of UNARY F 7..16 (npu-hw.rst, "UNARY functions"),
    // and reciprocal (F 5). Their parameters are f32.
    Sqrt,
    Reciprocal,
    /// `1 / sqrt(x)` (Sqrt then Reciprocal fuse into it).
    Rsqrt,
    Log,
    Erf,
    /// `x / 2 * (1 + erf(x / sqrt(2)))`.
    Gelu,
    /// `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`.
    GeluTanh,
    /// `x < 0 ? alpha * x : x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `x > 0 ? x : alpha * (e^x - 1)`.
    Elu {
        alpha: f32,
    },
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * clamp(alpha * x + beta, 0, 1)` (ONNX: alpha 1/6, beta 1/2).
    HardSwish {
        alpha: f32,
        beta: f32,
    },
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Clamp { .. } => "clamp",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Log => "log",
            UnaryOp::Erf => "erf",
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::LeakyRelu { .. } => "leaky_relu",
            UnaryOp::Elu { .. } => "elu",
            UnaryOp::HardSigmoid { .. } => "hard_sigmoid",
            UnaryOp::HardSwish { .. } => "hard_swish",
        }
    }
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Mean => "reduce_mean",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average over the window positions inside the input (padding excluded).
    Avg,
}

/// 2-D window geometry shared by conv2d and pooling: `[h, w]` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Default for Window {
    fn default() -> Self {
        Window {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

/// One operation; operands are earlier values.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input, bound by name at run time.
    Input,
    /// A value known at compile time (weights, biases, norms): packed into
    /// the device layout by the compiler and kept in a constant buffer.
    Constant {
        data: Arc<TensorData>,
    },
    /// `op(a)^T? x op(b)^T? + bias`; a is [M,K] (or [K,M] with trans_a), b is
    /// [K,N] (or [N,K] with trans_b), bias is [N] (i32 for int8).
    Gemm {
        a: ValueId,
        b: ValueId,
        bias: Option<ValueId>,
        trans_a: bool,
        trans_b: bool,
    },
    /// NCHW input, KCRS weight (C = in channels / groups), bias [K].
    Conv2d {
        input: ValueId,
        weight: ValueId,
        bias: Option<ValueId>,
        window: Window,
        groups: usize,
    },
    /// Elementwise with numpy broadcasting.
    Binary {
        op: BinaryOp,
        a: ValueId,
        b: ValueId,
    },
    Unary {
        op: UnaryOp,
        x: ValueId,
    },
    /// NCHW pooling with a `kernel` window.
    Pool {
        kind: PoolKind,
        x: ValueId,
        kernel: [usize; 2],
        window: Window,
    },
    Softmax {
        x: ValueId,
        axis: usize,
    },
    /// f32 -> i8 with the result's quantization (round half to even).
    Quantize {
        x: ValueId,
    },
    /// i8 -> f32: `scale * (q - zero_point)`.
    Dequantize {
        x: ValueId,
    },
    /// Same elements, another shape (free: the result aliases `x`).
    Reshape {
        x: ValueId,
        shape: Vec<usize>,
    },
    /// ONNX MatMul for operands of rank >= 2: `a` is `[..., M, K]`, `b` is
    /// `[..., K, N]` (`[..., N, K]` with `trans_b`); the leading (batch)
    /// dimensions broadcast as in numpy, so a 2-D operand is shared by
    /// every batch. f32, or int8 as ONNX QLinearMatMul (per-tensor
    /// operands and result; a non-zero zero point of `a` needs a constant
    /// `b`).
    BatchMatMul {
        a: ValueId,
        b: ValueId,
        trans_b: bool,
    },
    /// ONNX Gather on axis 0: rows of `table` (`[rows, ...]`, f32) picked by
    /// the i32 `indices` (any shape); the result is `indices.shape ++
    /// table.shape[1..]`. A negative index counts from the end; an index
    /// outside `[-rows, rows)` faults the job (INDEX_RANGE).
    Gather {
        table: ValueId,
        indices: ValueId,
    },
    /// ONNX LayerNormalization over the last axis (f32): `(x - mean) /
    /// sqrt(var + epsilon) * scale + bias`, the variance the biased one
    /// (divided by the axis length); `scale` and `bias` are `[d]`.
    LayerNorm {
        x: ValueId,
        scale: ValueId,
        bias: Option<ValueId>,
        epsilon: f32,
    },
    /// Reduce `x` (f32, or i8 through f32) over `axes` (sorted, distinct, at
    /// least one); with
    /// `keepdims` the reduced axes stay as 1s, else they go (a result with
    /// no axis left is `[1]`).
    Reduce {
        kind: ReduceKind,
        x: ValueId,
        axes: Vec<usize>,
        keepdims: bool,
    },
    /// `log(softmax(x))` along `axis`, computed as
    /// `x - max - log(sum(exp(x - max)))` (f32; int8 through f32:
    /// dequantize, this, quantize with the result's quantization, which it
    /// needs).
    LogSoftmax {
        x: ValueId,
        axis: usize,
    },
    /// The operands joined along `axis` (all of one dtype; int8 operands
    /// all with the result's quantization).
    Concat {
        xs: Vec<ValueId>,
        axis: usize,
    },
    /// Result element `i` along axis `d` is `x`'s element `begin[d] + i *
    /// step[d]` (step != 0; a negative one walks backwards); `shape` is the
    /// result's shape. [`slice_axis`] resolves ONNX's starts/ends.
    Slice {
        x: ValueId,
        begin: Vec<usize>,
        step: Vec<i64>,
        shape: Vec<usize>,
    },
    /// Padding: `begin[d]` / `end[d]` elements before / after each axis,
    /// holding `value` (constant mode; in real units: an int8 result holds
    /// its quantized value), the edge element, or the reflection.
    Pad {
        x: ValueId,
        begin: Vec<usize>,
        end: Vec<usize>,
        value: f32,
        mode: PadMode,
    },
    /// Result axis `d` is `x`'s axis `perm[d]`.
    Transpose {
        x: ValueId,
        perm: Vec<usize>,
    },
    /// NCHW `[n, c*b*b, h, w]` -> `[n, c, h*b, w*b]`, channels read
    /// depth-column-row (DCR, ONNX's default) or column-row-depth (CRD).
    DepthToSpace {
        x: ValueId,
        block: usize,
        crd: bool,
    },
    /// NCHW `[n, c, h*b, w*b]` -> `[n, c*b*b, h, w]` (the inverse of DCR).
    SpaceToDepth {
        x: ValueId,
        block: usize,
    },
    /// NCHW resize of the last two axes to `size`; `scale` (output / input,
    /// per axis) is what the coordinate transform divides by.
    Resize {
        x: ValueId,
        size: [usize; 2],
        scale: [f32; 2],
        mode: ResizeMode,
        coord: CoordMode,
    },
    /// uint8 <-> int8 (per-tensor quantized): the same real values, each
    /// byte with its top bit flipped (`q ^ 0x80`); the result has the
    /// other of the two dtypes and the same quantization (which holds the
    /// int8 view's zero point, see [`DType::U8`]). How uint8 graph inputs
    /// and outputs convert, on the device, so that the caller's buffers
    /// hold uint8 bytes.
    SignFlip {
        x: ValueId,
    },
    /// ONNX Where: `cond != 0 ? a : b` per element, the three operands
    /// broadcast together (numpy rules); `cond` is a mask (any f32: true
    /// where not +-0, so NaN is true), `a` and `b` f32, copied unchanged.
    Where {
        cond: ValueId,
        a: ValueId,
        b: ValueId,
    },
    /// f32 <-> f16 or bf16 (ONNX Cast between these): narrowing rounds to
    /// nearest even, widening is exact (npu-hw.rst, "Half-precision
    /// conversions"). How 16-bit floating-point graph inputs, outputs and
    /// constants convert at the boundary; everything else computes in f32.
    Cast {
        x: ValueId,
        to: DType,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Constant { .. } => "constant",
            Op::Gemm { .. } => "gemm",
            Op::Conv2d { .. } => "conv2d",
            Op::Binary { op, .. } => op.name(),
            Op::Unary { op, .. } => op.name(),
            Op::Pool {
                kind: PoolKind::Max,
                ..
            } => "maxpool",
            Op::Pool {
                kind: PoolKind::Avg,
                ..
            } => "avgpool",
            Op::Softmax { .. } => "softmax",
            Op::Reshape { .. } => "reshape",
            Op::Quantize { .. } => "quantize",
            Op::Dequantize { .. } => "dequantize",
            Op::BatchMatMul { .. } => "batch_matmul",
            Op::Gather { .. } => "gather",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Reduce { kind, .. } => kind.name(),
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Transpose { .. } => "transpose",
            Op::DepthToSpace { .. } => "depth_to_space",
            Op::SpaceToDepth { .. } => "space_to_depth",
            Op::Resize { .. } => "resize",
            Op::Where { .. } => "where",
            Op::SignFlip { .. } => "sign_flip",
            Op::Cast { .. } => "cast",
        }
    }
    /// The values this op reads.
    pub fn operands(&self) -> Vec<ValueId> {
        match self {
            Op::Input | Op::Constant { .. } => vec![],
            Op::Gemm { a, b, bias, .. } => {
                [Some(*a), Some(*b), *bias].into_iter().flatten().collect()
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                ..
            } => [Some(*input), Some(*weight), *bias]
                .into_iter()
                .flatten()
                .collect(),
            Op::Binary { a, b, .. } => vec![*a, *b],
            Op::Unary { x, .. }
            | Op::Pool { x, .. }
            | Op::Softmax { x, .. }
            | Op::Reshape { x, .. }
            | Op::Quantize { x }
            | Op::Dequantize { x }
            | Op::Reduce { x, .. }
            | Op::Cast { x, .. }
            | Op::LogSoftmax { x, .. } => vec![*x],
            Op::BatchMatMul { a, b, .. } => vec![*a, *b],
            Op::Gather { table, indices } => vec![*table, *indices],
            Op::LayerNorm { x, scale, bias, .. } => [Some(*x), Some(*scale), *bias]
                .into_iter()
                .flatten()
                .collect(),
            Op::Concat { xs, .. } => xs.clone(),
            Op::Slice { x, .. }
            | Op::Pad { x, .. }
            | Op::Transpose { x, .. }
            | Op::DepthToSpace { x, .. }
            | Op::SpaceToDepth { x, .. }
            | Op::Resize { x, .. }
            | Op::SignFlip { x } => vec![*x],
            Op::Where { cond, a, b } => vec![*cond, *a, *b],
        }
    }
}

/// A named value and the op producing it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub ty: TensorType,
}

/// Why a graph could not be built. Each message names the value and says
/// what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("value `{0}` is defined twice; give the second one another name")]
    DuplicateName(String),
    #[error("value id {0} does not exist in this graph")]
    UnknownValue(usize),
    #[error("`{name}` ({op}): {msg}")]
    Invalid {
        name: String,
        op: &'static str,
        msg: String,
    },
    #[error("output `{0}` is listed twice")]
    DuplicateOutput(String),
    #[error("the graph has no outputs; mark at least one value with `output`")]
    NoOutputs,
}

/// A kernel: nodes in definition order (operands always come first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    nodes: Vec<Node>,
    outputs: Vec<ValueId>,
    by_name: HashMap<String, ValueId>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn node(&self, v: ValueId) -> &Node {
        &self.nodes[v.0]
    }
    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.nodes[v.0].ty
    }
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }
    pub fn lookup(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }
    pub fn inputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op == Op::Input)
            .map(|(i, _)| ValueId(i))
    }

    /// Declare an input.
    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<ValueId, GraphError> {
        let err = |msg: String| GraphError::Invalid {
            name: name.to_string(),
            op: "input",
            msg,
        };
        if ty.shape.is_empty() || ty.shape.contains(&0) {
            return Err(err(format!(
                "shape {:?} must have at least one dimension and no zero dimensions",
                ty.shape
            )));
        }
        check_quant(&ty).map_err(&err)?;
        if ty.checked_bytes().is_none() {
            return Err(err(format!(
                "shape {:?} has more elements than fit in memory",
                ty.shape
            )));
        }
        self.push(name, Op::Input, ty)
    }

    /// Declare a constant of type `ty` holding `data` (row-major).
    pub fn constant(
        &mut self,
        name: &str,
        ty: TensorType,
        data: TensorData,
    ) -> Result<ValueId, GraphError> {
        self.constant_shared(name, ty, Arc::new(data))
    }

    /// [`Graph::constant`] with data shared with another graph.
    pub fn constant_shared(
        &mut self,
        name: &str,
        ty: TensorType,
        data: Arc<TensorData>,
    ) -> Result<ValueId, GraphError> {
        let err = |msg: String| GraphError::Invalid {
            name: name.to_string(),
            op: "constant",
            msg,
        };
        if ty.shape.is_empty() || ty.shape.contains(&0) {
            return Err(err(format!(
                "shape {:?} must have at least one dimension and no zero dimensions",
                ty.shape
            )));
        }
        check_quant(&ty).map_err(&err)?;
        if ty.checked_bytes().is_none() {
            return Err(err(format!(
                "shape {:?} has more elements than fit in memory",
                ty.shape
            )));
        }
        if data.dtype() != ty.dtype || data.len() != ty.elems() {
            return Err(err(format!(
                "{ty} needs {} {} values, got {} {}",
                ty.elems(),
                ty.dtype.name(),
                data.len(),
                data.dtype().name()
            )));
        }
        self.push(name, Op::Constant { data }, ty)
    }

    /// The data of a constant value.
    pub fn constant_data(&self, v: ValueId) -> Option<&TensorData> {
        match &self.nodes.get(v.0)?.op {
            Op::Constant { data } => Some(data),
            _ => None,
        }
    }

    /// Add an op; its type is inferred. `out_quant` is the quantization of an
    /// int8 result: required for gemm, conv2d and quantize; elementwise ops,
    /// sigmoid/tanh/exp, pooling and softmax default to their first
    /// operand's; relu and clamp always keep it.
    pub fn add(
        &mut self,
        name: &str,
        op: Op,
        out_quant: Option<Quant>,
    ) -> Result<ValueId, GraphError> {
        for v in op.operands() {
            if v.0 >= self.nodes.len() {
                return Err(GraphError::UnknownValue(v.0));
            }
        }
        let ty = self.infer(name, &op, out_quant)?;
        self.push(name, op, ty)
    }

    /// Mark a value as a graph output.
    pub fn output(&mut self, v: ValueId) -> Result<(), GraphError> {
        if v.0 >= self.nodes.len() {
            return Err(GraphError::UnknownValue(v.0));
        }
        if self.outputs.contains(&v) {
            return Err(GraphError::DuplicateOutput(self.nodes[v.0].name.clone()));
        }
        self.outputs.push(v);
        Ok(())
    }

    /// Checks that only make sense on a finished graph.
    pub fn validate(&self) -> Result<(), GraphError> {
        if self.outputs.is_empty() {
            return Err(GraphError::NoOutputs);
        }
        Ok(())
    }

    /// How many ops read each value (graph outputs count as a reader).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for v in n.op.operands() {
                uses[v.0] += 1;
            }
        }
        for o in &self.outputs {
            uses[o.0] += 1;
        }
        uses
    }

    fn push(&mut self, name: &str, op: Op, ty: TensorType) -> Result<ValueId, GraphError> {
        if self.by_name.contains_key(name) {
            return Err(GraphError::DuplicateName(name.to_string()));
        }
        if ty.checked_bytes().is_none() {
            return Err(GraphError::Invalid {
                name: name.to_string(),
                op: op.name(),
                msg: format!(
                    "the result {:?} has more elements than fit in memory",
                    ty.shape
                ),
            });
        }
        let id = ValueId(self.nodes.len());
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            ty,
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    fn infer(
        &self,
        name: &str,
        op: &Op,
        out_quant: Option<Quant>,
    ) -> Result<TensorType, GraphError> {
        let err = |msg: String| GraphError::Invalid {
            name: name.to_string(),
            op: op.name(),
            msg,
        };
        let t = |v: ValueId| &self.nodes[v.0].ty;
        let nm = |v: ValueId| self.nodes[v.0].name.as_str();
        if !matches!(op, Op::SignFlip { .. } | Op::Reshape { .. }) {
            if let Some(v) = op.operands().into_iter().find(|&v| t(v).dtype == DType::U8) {
                return Err(err(format!(
                    "`{}` is u8: convert it to i8 with sign_flip first (u8 tensors are graph inputs and outputs only)",
                    nm(v)
                )));
            }
        }
        if !matches!(op, Op::Cast { .. } | Op::Reshape { .. }) {
            if let Some(v) = op.operands().into_iter().find(|&v| t(v).dtype.is_half()) {
                return Err(err(format!(
                    "`{}` is {}: convert it to f32 with cast first ({0} tensors are graph inputs, outputs and constants only)",
                    nm(v),
                    t(v).dtype.name()
                )));
            }
        }
        match op {
            Op::Input => Err(err("use Graph::input to declare inputs".into())),
            Op::Cast { x, to } => {
                let tx = t(*x);
                let ok = match (tx.dtype, *to) {
                    (DType::F32, to) => to.is_half(),
                    (from, DType::F32) => from.is_half(),
                    _ => false,
                };
                if !ok {
                    return Err(err(format!(
                        "cast converts f32 to f16 or bf16 and back, not {} to {}",
                        tx.dtype.name(),
                        to.name()
                    )));
                }
                if out_quant.is_some() {
                    return Err(err("a cast result has no quantization".into()));
                }
                Ok(TensorType::new(*to, &tx.shape))
            }
            Op::SignFlip { x } => {
                let tx = t(*x);
                let dtype = match (tx.dtype, &tx.quant) {
                    (DType::I8, Some(Quant::PerTensor { .. })) => DType::U8,
                    (DType::U8, Some(Quant::PerTensor { .. })) => DType::I8,
                    _ => {
                        return Err(err(format!(
                            "sign_flip takes a per-tensor quantized i8 or u8 tensor, got {tx}"
                        )))
                    }
                };
                if out_quant.is_some_and(|q| Some(&q) != tx.quant.as_ref()) {
                    return Err(err("sign_flip keeps its operand's quantization".into()));
                }
                Ok(TensorType {
                    dtype,
                    ..tx.clone()
                })
            }
            Op::Constant { .. } => Err(err("use Graph::constant to declare constants".into())),
            Op::Gemm {
                a,
                b,
                bias,
                trans_a,
                trans_b,
            } => {
                let (ta, tb) = (t(*a), t(*b));
                if ta.shape.len() != 2 || tb.shape.len() != 2 {
                    return Err(err(format!(
                        "operands must be 2-D, got `{}`: {} and `{}`: {}",
                        nm(*a),
                        ta,
                        nm(*b),
                        tb
                    )));
                }
                let (m, ka) = if *trans_a {
                    (ta.shape[1], ta.shape[0])
                } else {
                    (ta.shape[0], ta.shape[1])
                };
                let (kb, n) = if *trans_b {
                    (tb.shape[1], tb.shape[0])
                } else {
                    (tb.shape[0], tb.shape[1])
                };
                if ka != kb {
                    return Err(err(format!(
                        "inner dimensions differ: `{}` gives K={ka}, `{}` gives K={kb}",
                        nm(*a),
                        nm(*b)
                    )));
                }
                let out_shape = [m, n];
                let n_axis = if *trans_b { 0 } else { 1 };
                self.check_mac_types(name, op, *a, *b, *bias, n, n_axis, &out_shape, out_quant)
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                window,
                groups,
            } => {
                let (ti, tw) = (t(*input), t(*weight));
                if ti.shape.len() != 4 || tw.shape.len() != 4 {
                    return Err(err(format!(
                        "input must be NCHW and weight KCRS (4-D), got {} and {}",
                        ti, tw
                    )));
                }
                let (n, c, h, w) = (ti.shape[0], ti.shape[1], ti.shape[2], ti.shape[3]);
                let (k, cg, r, s) = (tw.shape[0], tw.shape[1], tw.shape[2], tw.shape[3]);
                if *groups == 0 || c % groups != 0 || k % groups != 0 {
                    return Err(err(format!("groups={groups} must divide the input channels ({c}) and output channels ({k})")));
                }
                if cg != c / groups {
                    return Err(err(format!("weight has {cg} input channels per group, expected {} (= {c} channels / {groups} groups)", c / groups)));
                }
                let oh = window_out(h, r, window, 0).map_err(&err)?;
                let ow = window_out(w, s, window, 1).map_err(&err)?;
                self.check_mac_types(
                    name,
                    op,
                    *input,
                    *weight,
                    *bias,
                    k,
                    0,
                    &[n, k, oh, ow],
                    out_quant,
                )
            }
            Op::Binary { op: bop, a, b } => {
                let (ta, tb) = (t(*a), t(*b));
                let shape = broadcast_shape(&ta.shape, &tb.shape)
                    .ok_or_else(|| err(format!("shapes {:?} and {:?} do not broadcast (numpy rules: trailing dimensions must be equal or 1)", ta.shape, tb.shape)))?;
                // int8 comparisons: on the real values (ir::passes
                // dequantizes the operands), per-tensor quantized.
                let int8_cmp = bop.gives_mask()
                    && bop.compares()
                    && (ta.dtype, tb.dtype) == (DType::I8, DType::I8)
                    && matches!(ta.quant, Some(Quant::PerTensor { .. }))
                    && matches!(tb.quant, Some(Quant::PerTensor { .. }));
                if int8_cmp {
                    return Ok(TensorType::new(DType::F32, &shape));
                }
                if bop.gives_mask() && (ta.dtype, tb.dtype) != (DType::F32, DType::F32) {
                    return Err(err(format!(
                        "{} takes two f32 operands or (comparisons) two per-tensor quantized i8 ones, got {} and {}",
                        bop.name(),
                        ta,
                        tb
                    )));
                }
                match (ta.dtype, tb.dtype) {
                    (DType::F32, DType::F32) => Ok(TensorType::new(DType::F32, &shape)),
                    (DType::I8, DType::I8) => via_f32(&[ta, tb], &shape, out_quant).map_err(&err),
                    (x, y) => Err(err(format!(
                        "elementwise ops take two f32 or two i8 operands, got {} and {}",
                        x.name(),
                        y.name()
                    ))),
                }
            }
            Op::Quantize { x } => {
                let tx = t(*x);
                match (tx.dtype, out_quant) {
                    (DType::F32, Some(q @ Quant::PerTensor { .. })) => Ok(TensorType::quantized(&tx.shape, q)),
                    // Per channel on any axis (ONNX QuantizeLinear's `axis`).
                    (DType::F32, Some(q @ Quant::PerChannel { .. })) => {
                        let ty = TensorType::quantized(&tx.shape, q);
                        check_quant(&ty).map_err(&err)?;
                        Ok(ty)
                    }
                    (DType::F32, _) => Err(err("quantize needs the result's quantization, e.g. `y: i8 q(scale=0.1, zp=0) = quantize(x)`".into())),
                    (d, _) => Err(err(format!("quantize takes f32, got {}", d.name()))),
                }
            }
            Op::Dequantize { x } => {
                let tx = t(*x);
                match &tx.quant {
                    Some(Quant::PerTensor { .. } | Quant::PerChannel { .. }) => {
                        Ok(TensorType::new(DType::F32, &tx.shape))
                    }
                    _ => Err(err(format!(
                        "dequantize takes a quantized i8 tensor, got {tx}"
                    ))),
                }
            }
            Op::Unary { op: u, x } => {
                let tx = t(*x);
                match (tx.dtype, u) {
                    (DType::F32, _) => Ok(tx.clone()),
                    (DType::I8, UnaryOp::Relu | UnaryOp::Clamp { .. }) => {
                        via_f32(&[tx], &tx.shape, None).map_err(&err)
                    }
                    (DType::I8, _) => via_f32(&[tx], &tx.shape, out_quant).map_err(&err),
                    (d, _) => Err(err(format!(
                        "{} on {} is not supported; unary ops take f32 or i8",
                        u.name(),
                        d.name()
                    ))),
                }
                .and_then(|ty| match u {
                    UnaryOp::Clamp { lo, hi } if lo.is_nan() || hi.is_nan() || lo > hi => {
                        Err(err(format!("clamp needs lo <= hi, got lo={lo} hi={hi}")))
                    }
                    UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha } if !alpha.is_finite() => {
                        Err(err(format!("alpha must be finite, got {alpha}")))
                    }
                    UnaryOp::HardSigmoid { alpha, beta } | UnaryOp::HardSwish { alpha, beta }
                        if !alpha.is_finite() || !beta.is_finite() =>
                    {
                        Err(err(format!(
                            "alpha and beta must be finite, got {alpha} and {beta}"
                        )))
                    }
                    _ => Ok(ty),
                })
            }
            Op::Pool {
                x, kernel, window, ..
            } => {
                let tx = t(*x);
                if tx.dtype == DType::I32 || tx.shape.len() != 4 {
                    return Err(err(format!(
                        "pooling takes an f32 or i8 NCHW tensor, got {}",
                        tx
                    )));
                }
                if window.dilation != [1, 1] {
                    return Err(err("pooling has no dilation".into()));
                }
                for i in 0..2 {
                    if kernel[i] == 0
                        || window.padding[i] >= kernel[i]
                        || kernel[i] > 255
                        || window.stride[i] > 255
                        || window.stride[i] == 0
                    {
                        return Err(err(format!("kernel {kernel:?}, stride {:?}, padding {:?}: need 1 <= kernel, stride <= 255 and padding < kernel", window.stride, window.padding)));
                    }
                }
                let oh = window_out(tx.shape[2], kernel[0], window, 0).map_err(&err)?;
                let ow = window_out(tx.shape[3], kernel[1], window, 1).map_err(&err)?;
                let shape = [tx.shape[0], tx.shape[1], oh, ow];
                if tx.dtype == DType::I8 {
                    return via_f32(&[tx], &shape, out_quant).map_err(&err);
                }
                Ok(TensorType::new(DType::F32, &shape))
            }
            Op::Softmax { x, axis } => {
                let tx = t(*x);
                if *axis >= tx.shape.len() {
                    return Err(err(format!(
                        "axis {axis} is out of range for a {}-D tensor",
                        tx.shape.len()
                    )));
                }
                match tx.dtype {
                    DType::F32 => Ok(tx.clone()),
                    DType::I8 => via_f32(&[tx], &tx.shape, out_quant).map_err(&err),
                    DType::I32 | DType::U8 | DType::F16 | DType::Bf16 => {
                        Err(err(format!("softmax takes f32 or i8, got {tx}")))
                    }
                }
            }
            Op::Reduce {
                x, axes, keepdims, ..
            } => {
                let tx = t(*x);
                if tx.dtype == DType::I32 {
                    return Err(err(format!("reductions take f32 or i8, got {tx}")));
                }
                let r = tx.shape.len();
                if axes.is_empty()
                    || axes.windows(2).any(|w| w[0] >= w[1])
                    || axes.iter().any(|&a| a >= r)
                {
                    return Err(err(format!(
                        "axes {axes:?} must be distinct, sorted and below the rank {r}"
                    )));
                }
                let shape: Vec<usize> = (0..r)
                    .filter_map(|i| match (axes.contains(&i), keepdims) {
                        (false, _) => Some(tx.shape[i]),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect();
                let shape = if shape.is_empty() { vec![1] } else { shape };
                if tx.dtype == DType::I8 {
                    // dequantize -> f32 reduction -> quantize (ir::passes).
                    return via_f32(&[tx], &shape, out_quant).map_err(&err);
                }
                Ok(TensorType::new(DType::F32, &shape))
            }
            Op::LogSoftmax { x, axis } => {
                let tx = t(*x);
                if *axis >= tx.shape.len() {
                    return Err(err(format!(
                        "axis {axis} is out of range for a {}-D tensor",
                        tx.shape.len()
                    )));
                }
                match tx.dtype {
                    DType::F32 => Ok(tx.clone()),
                    // dequantize -> f32 log_softmax -> quantize (ir::passes);
                    // the result (all <= 0) needs its own quantization.
                    DType::I8 => match out_quant {
                        Some(q) => via_f32(&[tx], &tx.shape, Some(q)).map_err(&err),
                        None => Err(err(
                            "an int8 log_softmax needs its result's quantization (its values are <= 0), e.g. `y: i8 q(scale=0.1, zp=127) = log_softmax(x, axis=1)`".into(),
                        )),
                    },
                    _ => Err(err(format!("log_softmax takes f32 or i8, got {tx}"))),
                }
            }
            Op::Reshape { x, shape } => {
                let tx = t(*x);
                let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
                if shape.is_empty() || shape.contains(&0) || product != Some(tx.elems()) {
                    return Err(err(format!(
                        "cannot reshape {:?} ({} elements) to {:?}",
                        tx.shape,
                        tx.elems(),
                        shape
                    )));
                }
                Ok(TensorType {
                    shape: shape.clone(),
                    ..tx.clone()
                })
            }
            Op::BatchMatMul { a, b, trans_b } => {
                let (ta, tb) = (t(*a), t(*b));
                let int8 = ta.dtype == DType::I8 && tb.dtype == DType::I8;
                if !(int8 || ta.dtype == DType::F32 && tb.dtype == DType::F32) {
                    return Err(err(format!(
                        "batch_matmul takes two f32 or two i8 operands, got {} and {}",
                        ta, tb
                    )));
                }
                let (ra, rb) = (ta.shape.len(), tb.shape.len());
                if ra < 2 || rb < 2 {
                    return Err(err(format!(
                        "operands need rank 2 or more, got {:?} and {:?}",
                        ta.shape, tb.shape
                    )));
                }
                let (m, ka) = (ta.shape[ra - 2], ta.shape[ra - 1]);
                let (kb, n) = if *trans_b {
                    (tb.shape[rb - 1], tb.shape[rb - 2])
                } else {
                    (tb.shape[rb - 2], tb.shape[rb - 1])
                };
                if ka != kb {
                    return Err(err(format!(
                        "inner dimensions differ: `{}` {:?} gives K={ka}, `{}` {:?} gives K={kb}",
                        nm(*a),
                        ta.shape,
                        nm(*b),
                        tb.shape
                    )));
                }
                let mut shape = broadcast_shape(&ta.shape[..ra - 2], &tb.shape[..rb - 2])
                    .ok_or_else(|| {
                        err(format!(
                            "batch dimensions {:?} and {:?} do not broadcast",
                            &ta.shape[..ra - 2],
                            &tb.shape[..rb - 2]
                        ))
                    })?;
                shape.extend([m, n]);
                if !int8 {
                    return Ok(TensorType::new(DType::F32, &shape));
                }
                // ONNX QLinearMatMul: per-tensor operands and result.
                if !matches!(ta.quant, Some(Quant::PerTensor { .. }))
                    || !matches!(tb.quant, Some(Quant::PerTensor { .. }))
                {
                    return Err(err(format!(
                        "int8 batch_matmul needs per-tensor quantized operands, got {ta} and {tb}"
                    )));
                }
                match out_quant {
                    Some(q @ Quant::PerTensor { .. }) => {
                        let ty = TensorType::quantized(&shape, q);
                        requant_scales(ta, tb, &ty, n).map_err(&err)?;
                        Ok(ty)
                    }
                    _ => Err(err("an int8 batch_matmul needs its result's per-tensor quantization, e.g. q(scale=0.1, zp=0)".into())),
                }
            }
            Op::Gather { table, indices } => {
                let (tt, ti) = (t(*table), t(*indices));
                if tt.dtype != DType::F32 {
                    return Err(err(format!("the table must be f32, got {tt}")));
                }
                if ti.dtype != DType::I32 {
                    return Err(err(format!("the indices must be i32, got {ti}")));
                }
                if tt.shape[0] > i32::MAX as usize {
                    return Err(err(format!(
                        "a table of {} rows has rows i32 indices cannot name",
                        tt.shape[0]
                    )));
                }
                let mut shape = ti.shape.clone();
                shape.extend_from_slice(&tt.shape[1..]);
                Ok(TensorType::new(DType::F32, &shape))
            }
            Op::LayerNorm {
                x,
                scale,
                bias,
                epsilon,
            } => {
                let tx = t(*x);
                if tx.dtype != DType::F32 {
                    return Err(err(format!("layer_norm takes f32, got {tx}")));
                }
                let d = *tx.shape.last().unwrap_or(&0);
                for v in [Some(*scale), *bias].into_iter().flatten() {
                    let tv = t(v);
                    if tv.dtype != DType::F32 || tv.shape != [d] {
                        return Err(err(format!(
                            "scale and bias must be f32[{d}] (the last axis of `{}`), `{}` is {tv}",
                            nm(*x),
                            nm(v)
                        )));
                    }
                }
                if !(epsilon.is_finite() && *epsilon >= 0.0) {
                    return Err(err(format!(
                        "epsilon must be finite and not negative, got {epsilon}"
                    )));
                }
                Ok(tx.clone())
            }
            Op::Concat { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Transpose { .. }
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. }
            | Op::Resize { .. } => self.infer_movement(op, out_quant.as_ref()).map_err(&err),
            Op::Where { cond, a, b } => {
                let (tc, ta, tb) = (t(*cond), t(*a), t(*b));
                if [tc, ta, tb].iter().any(|t| t.dtype != DType::F32) {
                    return Err(err(format!(
                        "where takes an f32 mask and two f32 values (dequantize int8 ones first), got {tc}, {ta} and {tb}"
                    )));
                }
                let shape = broadcast_shape(&ta.shape, &tb.shape)
                    .and_then(|s| broadcast_shape(&tc.shape, &s))
                    .ok_or_else(|| {
                        err(format!(
                            "shapes {:?}, {:?} and {:?} do not broadcast (numpy rules: trailing dimensions must be equal or 1)",
                            tc.shape, ta.shape, tb.shape
                        ))
                    })?;
                Ok(TensorType::new(DType::F32, &shape))
            }
        }
    }

    /// Result type of a data-movement op.
    fn infer_movement(&self, op: &Op, out_quant: Option<&Quant>) -> Result<TensorType, String> {
        let t = |v: ValueId| &self.nodes[v.0].ty;
        match op {
            Op::Concat { xs, axis } => {
                let first = t(*xs.first().ok_or("concat needs at least one operand")?);
                let r = first.shape.len();
                if *axis >= r {
                    return Err(format!("axis {axis} is out of range for a {r}-D tensor"));
                }
                let mut shape = first.shape.clone();
                shape[*axis] = 0;
                for &v in xs {
                    let tv = t(v);
                    let same_rest = tv.shape.len() == r
                        && (0..r).all(|d| d == *axis || tv.shape[d] == first.shape[d]);
                    if !same_rest {
                        return Err(format!(
                            "`{}` {:?} does not match {:?} outside axis {axis}",
                            self.nodes[v.0].name, tv.shape, first.shape
                        ));
                    }
                    if tv.dtype != first.dtype || tv.quant != first.quant {
                        return Err(format!(
                            "operands must share dtype and quantization: `{}` is {tv}, `{}` is {first}; requantize them to one scale and zero point first",
                            self.nodes[v.0].name, self.nodes[xs[0].0].name
                        ));
                    }
                    shape[*axis] = shape[*axis]
                        .checked_add(tv.shape[*axis])
                        .ok_or("the result is too large")?;
                }
                movement::moved(first, shape, out_quant)
            }
            Op::Slice {
                x,
                begin,
                step,
                shape,
            } => {
                let tx = t(*x);
                let r = tx.shape.len();
                if begin.len() != r || step.len() != r || shape.len() != r {
                    return Err(format!(
                        "begin, step and shape need one entry per axis ({r}), got {}, {} and {}",
                        begin.len(),
                        step.len(),
                        shape.len()
                    ));
                }
                for d in 0..r {
                    let (b, s, n, dim) = (
                        begin[d] as i128,
                        step[d] as i128,
                        shape[d] as i128,
                        tx.shape[d] as i128,
                    );
                    let last = b + (n - 1) * s;
                    if s == 0 || n == 0 || b >= dim || last < 0 || last >= dim {
                        return Err(format!(
                            "axis {d}: {n} elements from {b} in steps of {s} do not lie in 0..{dim} (steps must not be 0)"
                        ));
                    }
                }
                movement::moved(tx, shape.clone(), out_quant)
            }
            Op::Pad {
                x,
                begin,
                end,
                value,
                mode,
            } => {
                let tx = t(*x);
                let r = tx.shape.len();
                if begin.len() != r || end.len() != r {
                    return Err(format!(
                        "begin and end need one entry per axis ({r}), got {} and {}",
                        begin.len(),
                        end.len()
                    ));
                }
                if *mode == PadMode::Reflect && (0..r).any(|d| begin[d].max(end[d]) >= tx.shape[d])
                {
                    return Err(format!(
                        "reflect padding {begin:?} / {end:?} must be smaller than each axis of {:?}",
                        tx.shape
                    ));
                }
                if value.is_nan() && tx.dtype != super::DType::F32 {
                    return Err("an int8 pad value must be a number".into());
                }
                let shape = (0..r)
                    .map(|d| {
                        tx.shape[d]
                            .checked_add(begin[d])
                            .and_then(|s| s.checked_add(end[d]))
                            .ok_or_else(|| format!("axis {d}: the padding is too large"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                movement::moved(tx, shape, out_quant)
            }
            Op::Transpose { x, perm } => {
                let tx = t(*x);
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..tx.shape.len()).collect::<Vec<_>>() {
                    return Err(format!(
                        "perm {perm:?} is not a permutation of the {} axes",
                        tx.shape.len()
                    ));
                }
                movement::moved(tx, perm.iter().map(|&a| tx.shape[a]).collect(), out_quant)
            }
            Op::DepthToSpace { x, block, .. } => {
                let tx = t(*x);
                let b2 = block.checked_mul(*block).filter(|&b| b > 0);
                match (tx.shape.as_slice(), b2) {
                    ([n, c, h, w], Some(b2)) if c % b2 == 0 => {
                        let (h, w) = (h.checked_mul(*block), w.checked_mul(*block));
                        let (h, w) = h.zip(w).ok_or("the result is too large")?;
                        movement::moved(tx, vec![*n, c / b2, h, w], out_quant)
                    }
                    _ => Err(format!(
                        "depth_to_space takes an NCHW tensor whose channels are a multiple of block^2 (block {block} >= 1), got {tx}"
                    )),
                }
            }
            Op::SpaceToDepth { x, block } => {
                let tx = t(*x);
                match tx.shape.as_slice() {
                    [n, c, h, w] if *block > 0 && h % block == 0 && w % block == 0 => {
                        let c = block
                            .checked_mul(*block)
                            .and_then(|b2| c.checked_mul(b2))
                            .ok_or("the result is too large")?;
                        movement::moved(tx, vec![*n, c, h / block, w / block], out_quant)
                    }
                    _ => Err(format!(
                        "space_to_depth takes an NCHW tensor whose height and width are multiples of the block ({block} >= 1), got {tx}"
                    )),
                }
            }
            Op::Resize {
                x,
                size,
                scale,
                mode,
                ..
            } => {
                let tx = t(*x);
                if tx.shape.len() != 4 {
                    return Err(format!("resize takes an NCHW tensor, got {tx}"));
                }
                if scale.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
                    return Err(format!("scales {scale:?} must be positive and finite"));
                }
                if *mode == ResizeMode::Linear && tx.dtype != super::DType::F32 {
                    return Err(format!(
                        "linear resize takes f32 (dequantize int8 first), got {tx}"
                    ));
                }
                movement::moved(
                    tx,
                    vec![tx.shape[0], tx.shape[1], size[0], size[1]],
                    out_quant,
                )
            }
            _ => Err("not a data-movement op".into()),
        }
    }

    /// Operand types of gemm and conv2d: all f32, or i8 x i8 (+ i32 bias)
    /// with quantization and an i8 result.
    #[allow(clippy::too_many_arguments)]
    fn check_mac_types(
        &self,
        name: &str,
        op: &Op,
        a: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        channels: usize,
        w_channel_axis: usize,
        out_shape: &[usize],
        out_quant: Option<Quant>,
    ) -> Result<TensorType, GraphError> {
        let err = |msg: String| GraphError::Invalid {
            name: name.to_string(),
            op: op.name(),
            msg,
        };
        let (ta, tw) = (&self.nodes[a.0].ty, &self.nodes[w.0].ty);
        let tb = bias.map(|b| &self.nodes[b.0].ty);
        if let Some(tb) = tb {
            if tb.shape != [channels] {
                return Err(err(format!(
                    "bias must have shape [{channels}] (one per output channel), got {:?}",
                    tb.shape
                )));
            }
        }
        match (ta.dtype, tw.dtype) {
            (DType::F32, DType::F32) => {
                if let Some(tb) = tb {
                    if tb.dtype != DType::F32 {
                        return Err(err(format!(
                            "an f32 op takes an f32 bias, got {}",
                            tb.dtype.name()
                        )));
                    }
                }
                Ok(TensorType::new(DType::F32, out_shape))
            }
            (DType::I8, DType::I8) => {
                if !matches!(ta.quant, Some(Quant::PerTensor { .. })) {
                    return Err(err("the int8 activation needs per-tensor quantization, e.g. q(scale=0.02, zp=-3)".into()));
                }
                match &tw.quant {
                    Some(Quant::PerTensor { .. }) => {}
                    Some(Quant::PerChannel { scales, axis, .. }) if *axis == w_channel_axis && scales.len() == channels => {}
                    _ => {
                        return Err(err(format!(
                            "the int8 weight needs per-tensor quantization or per-channel scales on axis {w_channel_axis} ({channels} of them)"
                        )))
                    }
                }
                if let Some(tb) = tb {
                    if tb.dtype != DType::I32 {
                        return Err(err(format!("an int8 op takes an i32 bias (scale = input scale x weight scale), got {}", tb.dtype.name())));
                    }
                }
                match out_quant {
                    Some(q @ Quant::PerTensor { .. }) => {
                        let ty = TensorType::quantized(out_shape, q);
                        // Reject scales the fixed-point multiplier cannot express now
                        // rather than at lowering time.
                        requant_scales(ta, tw, &ty, channels).map_err(&err)?;
                        Ok(ty)
                    }
                    _ => Err(err("an int8 result needs its per-tensor quantization, e.g. `x: i8 q(scale=0.1, zp=0) = ...`".into())),
                }
            }
            (x, y) => Err(err(format!(
                "operands must both be f32 or both i8, got {} and {}",
                x.name(),
                y.name()
            ))),
        }
    }
}

/// Result type of an int8 op computed through f32 (dequantize, compute,
/// requantize): per-tensor quantized operands; the result takes `out_quant`,
/// or the first operand's quantization.
fn via_f32(
    operands: &[&TensorType],
    shape: &[usize],
    out_quant: Option<Quant>,
) -> Result<TensorType, String> {
    for t in operands {
        if !matches!(t.quant, Some(Quant::PerTensor { .. })) {
            return Err(format!("int8 operands of elementwise ops, pooling and softmax need per-tensor quantization, got {t}"));
        }
    }
    let q = match out_quant.or_else(|| operands.first().and_then(|t| t.quant.clone())) {
        Some(q @ Quant::PerTensor { .. }) => q,
        _ => return Err(
            "the int8 result needs per-tensor quantization, e.g. `y: i8 q(scale=0.1, zp=0) = ...`"
                .into(),
        ),
    };
    Ok(TensorType::quantized(shape, q))
}

fn check_quant(ty: &TensorType) -> Result<(), String> {
    match (&ty.quant, ty.dtype) {
        (None, DType::I8 | DType::U8) => Err(format!(
            "an {} tensor needs quantization parameters, e.g. q(scale=0.02, zp=0)",
            ty.dtype.name()
        )),
        (Some(Quant::PerChannel { .. }), DType::U8) => {
            Err("a u8 tensor needs per-tensor quantization".into())
        }
        (Some(_), DType::F32 | DType::I32 | DType::F16 | DType::Bf16) => Err(format!(
            "only i8 tensors carry quantization parameters, not {}",
            ty.dtype.name()
        )),
        (Some(Quant::PerTensor { scale, .. }), _) if !(*scale > 0.0 && scale.is_finite()) => {
            Err(format!("scale {scale} must be positive and finite"))
        }
        (
            Some(Quant::PerChannel {
                scales,
                axis,
                zero_points,
            }),
            _,
        ) => {
            if *axis >= ty.shape.len() || scales.len() != ty.shape[*axis] {
                return Err(format!("per-channel quantization needs one scale per index of axis {axis}: {} scales for shape {:?}", scales.len(), ty.shape));
            }
            if !zero_points.is_empty() && zero_points.len() != scales.len() {
                return Err(format!(
                    "{} zero points for {} scales: give one per scale (or none when all are 0)",
                    zero_points.len(),
                    scales.len()
                ));
            }
            match scales.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
                Some(s) => Err(format!("scale {s} must be positive and finite")),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Output size of a sliding window along dimension `d` (0 = h, 1 = w).
fn window_out(input: usize, kernel: usize, w: &Window, d: usize) -> Result<usize, String> {
    if w.stride[d] == 0 || w.dilation[d] == 0 || kernel == 0 {
        return Err(format!(
            "stride {:?}, dilation {:?} and kernel sizes must be at least 1",
            w.stride, w.dilation
        ));
    }
    // Checked: the sizes come from user text and may be absurd.
    let too_big = || {
        format!(
            "the window (kernel {kernel}, dilation {:?}, padding {:?}) is too large",
            w.dilation, w.padding
        )
    };
    let span = (kernel - 1)
        .checked_mul(w.dilation[d])
        .and_then(|x| x.checked_add(1))
        .ok_or_else(too_big)?;
    let padded = w.padding[d]
        .checked_mul(2)
        .and_then(|p| p.checked_add(input))
        .ok_or_else(too_big)?;
    if padded < span {
        return Err(format!("the window ({span} wide with dilation) is larger than the padded input ({padded}); add padding or use a smaller kernel"));
    }
    Ok((padded - span) / w.stride[d] + 1)
}

/// Numpy broadcasting of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}
