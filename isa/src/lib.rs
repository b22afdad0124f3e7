//! The ONPU instruction set, version 1.0.
//!
//! A command buffer is an array of fixed-size, 64-byte, little-endian
//! instructions (16 32-bit words). Word 0 holds the opcode (bits 0..7) and
//! opcode-specific selector bits; the remaining words hold operands in a
//! per-opcode order. Every word an instruction does not use is reserved and
//! must be zero: the device rejects a non-zero reserved word, so that later
//! versions can give it a meaning.
//!
//! This crate is shared by the device model (which decodes and validates)
//! and libnpu (which encodes): the two can never disagree on an encoding.
//! The normative description is Documentation/hw/npu-hw.rst, section "ISA".

#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

mod fault;
pub use fault::{requantize, Fault};

/// Major and minor version of the ISA described here.
pub const ISA_VERSION_MAJOR: u16 = 1;
pub const ISA_VERSION_MINOR: u16 = 6;
/// The VERSION register value of a device implementing this ISA.
pub const ISA_VERSION: u32 = (ISA_VERSION_MAJOR as u32) << 16 | ISA_VERSION_MINOR as u32;

/// Size of one instruction in bytes.
pub const INSN_SIZE: usize = 64;
const WORDS: usize = INSN_SIZE / 4;

/// Element types the compute engine works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DType {
    F32 = 0,
    I32 = 1,
    I8 = 2,
}

impl DType {
    pub const fn size(self) -> u32 {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I8 => 1,
        }
    }
    fn from_bits(v: u32) -> Option<Self> {
        Some(match v {
            0 => DType::F32,
            1 => DType::I32,
            2 => DType::I8,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::I8 => "i8",
        }
    }
}

/// A 3-D strided byte region: `shape[0]` contiguous bytes per row, `shape[1]`
/// rows `stride[0]` bytes apart, `shape[2]` planes `stride[1]` bytes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Strided {
    pub shape: [u32; 3],
    pub stride: [u32; 2],
}

impl Strided {
    /// A plain contiguous run of `len` bytes.
    pub const fn contiguous(len: u32) -> Self {
        Strided {
            shape: [len, 1, 1],
            stride: [len, len],
        }
    }
    /// `rows` rows of `row_bytes` bytes, `pitch` bytes apart.
    pub const fn rows(row_bytes: u32, rows: u32, pitch: u32) -> Self {
        Strided {
            shape: [row_bytes, rows, 1],
            stride: [pitch, pitch.saturating_mul(rows)],
        }
    }
    /// Total bytes moved.
    pub fn bytes(&self) -> Option<u64> {
        (self.shape[0] as u64)
            .checked_mul(self.shape[1] as u64)?
            .checked_mul(self.shape[2] as u64)
    }
    /// Offset one past the last byte touched, relative to the base, or None on
    /// overflow. Zero-sized shapes touch nothing.
    pub fn extent(&self) -> Option<u64> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        let last_row = (self.shape[1] as u64 - 1).checked_mul(self.stride[0] as u64)?;
        let last_plane = (self.shape[2] as u64 - 1).checked_mul(self.stride[1] as u64)?;
        last_row
            .checked_add(last_plane)?
            .checked_add(self.shape[0] as u64)
    }
}

/// A 2-D tile of elements in SRAM: `rows` x `cols`, rows `ld` elements apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tile {
    pub addr: u32,
    pub ld: u32,
}

/// Elementwise binary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Max = 4,
    Min = 5,
    /// PReLU: `a < 0 ? a * b : a` (f32 only); `b` is the slope, usually a
    /// per-channel vector.
    Prelu = 6,
    // Comparisons and logic: the result is a mask (f32 1.0 where true, +0.0
    // where false) for f32 and i32 operands alike. IEEE: every comparison
    // with a NaN is false except `Ne`; -0 equals +0.
    /// `a == b`.
    Eq = 7,
    /// `a != b`.
    Ne = 8,
    /// `a < b`.
    Lt = 9,
    /// `a <= b`.
    Le = 10,
    /// `a > b`.
    Gt = 11,
    /// `a >= b`.
    Ge = 12,
    /// `a != 0 && b != 0` (an operand is true where it is not zero, so NaN
    /// is true, -0 false).
    And = 13,
    /// `a != 0 || b != 0`.
    Or = 14,
    /// `(a != 0) != (b != 0)`.
    Xor = 15,
}

impl BinaryOp {
    /// Every BINARY operation, in F order (F is the index).
    pub const ALL: [BinaryOp; 16] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Prelu,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    /// The result is a mask (f32 1.0 / +0.0) whatever the operands' dtype.
    pub fn gives_mask(self) -> bool {
        self as u8 >= BinaryOp::Eq as u8
    }
}

/// One operand of SELECT: a tile, a vector or an immediate, by `bcast` (as
/// BINARY's second operand: `tile.addr` alone for a vector, `scalar` for
/// [`Broadcast::Scalar`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SelectOperand {
    pub bcast: Broadcast,
    pub tile: Tile,
    pub scalar: u32,
}

/// How the second operand of a binary op is broadcast over the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Broadcast {
    /// `b` is a full `rows x cols` tile.
    #[default]
    None = 0,
    /// `b` is a vector of `rows` elements, one per row.
    PerRow = 1,
    /// `b` is a vector of `cols` elements, one per column (per channel).
    PerCol = 2,
    /// `b` is the immediate `scalar` (bit pattern of the dtype).
    Scalar = 3,
}

/// Unary (activation) operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UnaryOp {
    Relu = 0,
    /// Clamp to `[lo, hi]` (bit patterns of the dtype).
    Clamp = 1,
    Sigmoid = 2,
    Tanh = 3,
    Exp = 4,
    /// 1/x.
    Recip = 5,
    /// Copy (with the dtype's element size), useful to compact a tile.
    Move = 6,
    // The rest are f32 only; `alpha` and `beta` are the f32 bits in `lo`
    // (w7) and `hi` (w8). Semantics: npu-hw.rst, "Floating point".
    /// Square root, correctly rounded.
    Sqrt = 7,
    /// `1 / sqrt(x)`: the correctly rounded root, then a correctly rounded
    /// division.
    Rsqrt = 8,
    /// Natural logarithm.
    Log = 9,
    /// The error function.
    Erf = 10,
    /// `x < 0 ? alpha * x : x`.
    LeakyRelu = 11,
    /// `x > 0 ? x : alpha * (e^x - 1)`.
    Elu = 12,
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid = 13,
    /// `x * clamp(alpha * x + beta, 0, 1)`.
    HardSwish = 14,
    /// `x / 2 * (1 + erf(x / sqrt(2)))`.
    Gelu = 15,
    /// `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`.
    GeluTanh = 16,
}

impl UnaryOp {
    /// Every UNARY operation, in F order (F is the index).
    pub const ALL: [UnaryOp; 17] = [
        UnaryOp::Relu,
        UnaryOp::Clamp,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Recip,
        UnaryOp::Move,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Log,
        UnaryOp::Erf,
        UnaryOp::LeakyRelu,
        UnaryOp::Elu,
        UnaryOp::HardSigmoid,
        UnaryOp::HardSwish,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
    ];

    /// Defined for f32 only (BAD_OPERAND with another dtype).
    pub fn float_only(self) -> bool {
        !matches!(self, UnaryOp::Relu | UnaryOp::Clamp | UnaryOp::Move)
    }

    /// Runs at the special-function rate of the cost model
    /// (SPECIAL_ELEMS_PER_CYCLE) rather than the vector rate.
    pub fn special(self) -> bool {
        !matches!(
            self,
            UnaryOp::Relu
                | UnaryOp::Clamp
                | UnaryOp::Move
                | UnaryOp::LeakyRelu
                | UnaryOp::HardSigmoid
                | UnaryOp::HardSwish
        )
    }

    /// Takes `alpha` (w7) and, for the hard ones, `beta` (w8) as f32 bits.
    pub fn has_params(self) -> bool {
        matches!(
            self,
            UnaryOp::LeakyRelu | UnaryOp::Elu | UnaryOp::HardSigmoid | UnaryOp::HardSwish
        )
    }
}

/// Reduction operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReduceOp {
    Sum = 0,
    Max = 1,
}

/// Which axis a reduction runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Axis {
    /// Reduce each row over its columns: the result has `rows` elements.
    Cols = 0,
    /// Reduce each column over the rows: the result has `cols` elements.
    Rows = 1,
}

/// Pooling operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PoolOp {
    Max = 0,
    /// Average over the window positions inside the input (padding excluded).
    Avg = 1,
}

/// Operations of POOL_I8 (int8 planes; see [`Insn::PoolI8`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PoolI8Op {
    /// The largest value of the window (positions inside the input), then
    /// with `requant` QuantizeLinear(DequantizeLinear(max)).
    Max = 0,
    /// onnxruntime's QLinearAveragePool: each value dequantized to f32, summed
    /// in row-major order in f32, divided by the count, then
    /// `round_half_even(f32(y / scale_out) + zp_out)`, saturated.
    Avg = 1,
    /// onnxruntime's QLinearGlobalAveragePool: the exact i32 sum of
    /// `q - zp_in`, times `f32(scale_in / f32(scale_out * count))`, rounded
    /// half to even, plus `zp_out`, saturated.
    AvgInt = 2,
}

/// Dtype conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Conversion {
    /// i8 -> i32, subtracting `zero_point`.
    I8ToI32 = 0,
    /// i32 -> f32.
    I32ToF32 = 1,
    /// f32 -> i32, round to nearest even, saturating (NaN -> 0).
    F32ToI32 = 2,
    /// i8 -> f32: `(x - zero_point) * scale`, scale an f32 immediate.
    I8ToF32 = 3,
    /// f32 -> f16 (IEEE binary16), round to nearest even ([`f32_to_f16`]).
    F32ToF16 = 4,
    /// f16 -> f32, exact ([`f16_to_f32`]).
    F16ToF32 = 5,
    /// f32 -> bf16, round to nearest even ([`f32_to_bf16`]).
    F32ToBf16 = 6,
    /// bf16 -> f32, exact ([`bf16_to_f32`]).
    Bf16ToF32 = 7,
}

impl Conversion {
    /// Element sizes in bytes of the source and destination tiles.
    pub const fn sizes(self) -> (u32, u32) {
        match self {
            Conversion::I8ToI32 | Conversion::I8ToF32 => (1, 4),
            Conversion::I32ToF32 | Conversion::F32ToI32 => (4, 4),
            Conversion::F32ToF16 | Conversion::F32ToBf16 => (4, 2),
            Conversion::F16ToF32 | Conversion::Bf16ToF32 => (2, 4),
        }
    }
}

mod half;
pub use half::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

/// Geometry of a 2-D pooling over `channels` planes of `in_h x in_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PoolGeom {
    pub channels: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub kernel: [u8; 2],
    pub stride: [u8; 2],
    pub pad: [u8; 2],
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Insn {
    Nop,
    /// End of the command buffer: the job completes.
    End,
    /// Wait until every engine is idle.
    Barrier,
    /// A no-op carrying a tag, for tracing and host-side fault injection.
    Mark {
        tag: u32,
    },
    /// NPU memory -> SRAM.
    DmaLoad {
        va: u64,
        sram: u32,
        mem: Strided,
        sram_layout: Strided,
    },
    /// SRAM -> NPU memory.
    DmaStore {
        va: u64,
        sram: u32,
        mem: Strided,
        sram_layout: Strided,
    },
    /// SRAM -> SRAM strided copy (both layouts share `shape`).
    Copy {
        src: u32,
        dst: u32,
        src_layout: Strided,
        dst_layout: Strided,
    },
    /// Fill `len` bytes of SRAM (a multiple of 4) with a 32-bit pattern.
    Fill {
        dst: u32,
        len: u32,
        pattern: u32,
    },
    /// `c (+)= a[m,k] * b[k,n]` (b transposed: `b[n,k]`). f32 x f32 -> f32,
    /// i8 x i8 -> i32.
    Matmul {
        dtype: DType,
        accumulate: bool,
        transpose_b: bool,
        m: u32,
        n: u32,
        k: u32,
        a: Tile,
        b: Tile,
        c: Tile,
    },
    /// i32 -> i8: `clamp(rshift_round((x + bias[c]) * mult, shift) + zp, lo, hi)`.
    Requant {
        rows: u32,
        cols: u32,
        src: Tile,
        dst: Tile,
        /// Multiplier: an immediate when `per_channel` is false, else the SRAM
        /// address of `cols` i32 multipliers.
        mult: u32,
        per_channel: bool,
        /// SRAM address of `cols` i32 biases, if any.
        bias: Option<u32>,
        shift: u8,
        zero_point: i8,
        lo: i8,
        hi: i8,
    },
    Convert {
        conv: Conversion,
        rows: u32,
        cols: u32,
        src: Tile,
        dst: Tile,
        zero_point: i32,
        scale: f32,
    },
    Binary {
        op: BinaryOp,
        dtype: DType,
        bcast: Broadcast,
        rows: u32,
        cols: u32,
        a: Tile,
        b: Tile,
        out: Tile,
        scalar: u32,
    },
    Unary {
        op: UnaryOp,
        dtype: DType,
        rows: u32,
        cols: u32,
        src: Tile,
        dst: Tile,
        lo: u32,
        hi: u32,
    },
    /// Reduce a tile; the result is a contiguous vector at `dst`.
    Reduce {
        op: ReduceOp,
        axis: Axis,
        dtype: DType,
        rows: u32,
        cols: u32,
        src: Tile,
        dst: u32,
    },
    /// 2-D pooling of f32 planes, planar layout `[c][h][w]` (planes packed).
    Pool {
        op: PoolOp,
        geom: PoolGeom,
        src: u32,
        dst: u32,
    },
    /// 2-D pooling of i8 planes `[c][h][w]` (planes packed) into i8 planes,
    /// the geometry as POOL's. `requant` (Max only; the averages always
    /// requantize) maps the result from (`scale_in`, `zp_in`) to
    /// (`scale_out`, `zp_out`); without it the four are 0.
    PoolI8 {
        op: PoolI8Op,
        geom: PoolGeom,
        src: u32,
        dst: u32,
        requant: bool,
        zp_in: i8,
        zp_out: i8,
        scale_in: f32,
        scale_out: f32,
    },
    /// Indexed rows, NPU memory -> SRAM (an embedding lookup): for each i
    /// below `count`, table row `index[i]` (`row_bytes` bytes at
    /// `va + index[i] * table_stride`) goes to `sram + i * sram_stride`.
    /// The indices are i32s in SRAM at `indices`; one outside
    /// `[0, table_rows)` (after adding `table_rows` to a negative one with
    /// `wrap_negative`, ONNX Gather's rule) ends the job with
    /// [`Fault::IndexRange`] before any row moves.
    Gather {
        wrap_negative: bool,
        va: u64,
        sram: u32,
        row_bytes: u32,
        count: u32,
        table_rows: u32,
        table_stride: u32,
        indices: u32,
        sram_stride: u32,
    },
    /// `cond ? a : b` per element: `out[i] = cond[i] != 0.0 ? a[i] : b[i]`,
    /// `cond` read as f32 (a mask: true where not +-0, so NaN is true);
    /// `a`, `b` and `out` are `dtype` (f32 or i32), copied bit for bit.
    /// Each operand broadcasts as BINARY's second operand does.
    Select {
        dtype: DType,
        rows: u32,
        cols: u32,
        cond: SelectOperand,
        a: SelectOperand,
        b: SelectOperand,
        out: Tile,
    },
}

/// Opcode numbers (word 0, bits 0..7).
pub mod opcode {
    pub const NOP: u8 = 0x00;
    pub const END: u8 = 0x01;
    pub const BARRIER: u8 = 0x02;
    pub const MARK: u8 = 0x03;
    pub const DMA_LOAD: u8 = 0x10;
    pub const DMA_STORE: u8 = 0x11;
    pub const COPY: u8 = 0x12;
    pub const FILL: u8 = 0x13;
    pub const GATHER: u8 = 0x14;
    pub const MATMUL: u8 = 0x20;
    pub const REQUANT: u8 = 0x21;
    pub const CONVERT: u8 = 0x22;
    pub const BINARY: u8 = 0x30;
    pub const UNARY: u8 = 0x31;
    pub const REDUCE: u8 = 0x32;
    pub const POOL: u8 = 0x33;
    pub const SELECT: u8 = 0x34;
    pub const POOL_I8: u8 = 0x35;
}

/// Why an instruction could not be decoded. Both map to fault codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    BadOpcode(u8),
    /// A selector, flag or reserved field holds a value this version rejects.
    BadOperand,
}

impl DecodeError {
    pub fn fault(self) -> Fault {
        match self {
            DecodeError::BadOpcode(_) => Fault::BadOpcode,
            DecodeError::BadOperand => Fault::BadOperand,
        }
    }
}

// Word-0 layout: opcode [7:0], then selectors.
const SEL1_SHIFT: u32 = 8; // dtype / op
const SEL2_SHIFT: u32 = 12; // broadcast / axis / conversion
const FLAG_SHIFT: u32 = 16; // flags [23:16]
const FLAG_ACCUMULATE: u32 = 1 << FLAG_SHIFT;
const FLAG_TRANSPOSE_B: u32 = 2 << FLAG_SHIFT;
const FLAG_PER_CHANNEL: u32 = 1 << FLAG_SHIFT;
const FLAG_BIAS: u32 = 2 << FLAG_SHIFT;
const FLAG_WRAP_NEGATIVE: u32 = 1 << FLAG_SHIFT;
// SELECT's broadcast modes: 2 bits each in F (cond, a, b from bit 0).
const SELECT_BCAST_SHIFT: [u32; 3] = [FLAG_SHIFT, FLAG_SHIFT + 2, FLAG_SHIFT + 4];

struct Enc([u32; WORDS]);

impl Enc {
    fn new(op: u8, sel: u32) -> Self {
        let mut w = [0u32; WORDS];
        w[0] = op as u32 | sel;
        Enc(w)
    }
    fn u64(mut self, i: usize, v: u64) -> Self {
        self.0[i] = v as u32;
        self.0[i + 1] = (v >> 32) as u32;
        self
    }
    fn strided(mut self, i: usize, s: &Strided) -> Self {
        self.0[i..i + 3].copy_from_slice(&s.shape);
        self.0[i + 3..i + 5].copy_from_slice(&s.stride);
        self
    }
    fn set(mut self, i: usize, v: u32) -> Self {
        self.0[i] = v;
        self
    }
    fn tile(self, i: usize, t: &Tile) -> Self {
        self.set(i, t.addr).set(i + 1, t.ld)
    }
}

fn sel(a: u8, b: u8) -> u32 {
    (a as u32) << SEL1_SHIFT | (b as u32) << SEL2_SHIFT
}

impl Insn {
    /// Encode into the 64-byte wire format.
    pub fn encode(&self) -> [u8; INSN_SIZE] {
        use opcode::*;
        let e = match *self {
            Insn::Nop => Enc::new(NOP, 0),
            Insn::End => Enc::new(END, 0),
            Insn::Barrier => Enc::new(BARRIER, 0),
            Insn::Mark { tag } => Enc::new(MARK, 0).set(1, tag),
            Insn::DmaLoad {
                va,
                sram,
                mem,
                sram_layout,
            } => Enc::new(DMA_LOAD, 0)
                .u64(1, va)
                .set(3, sram)
                .strided(4, &mem)
                .set(9, sram_layout.stride[0])
                .set(10, sram_layout.stride[1]),
            Insn::DmaStore {
                va,
                sram,
                mem,
                sram_layout,
            } => Enc::new(DMA_STORE, 0)
                .u64(1, va)
                .set(3, sram)
                .strided(4, &mem)
                .set(9, sram_layout.stride[0])
                .set(10, sram_layout.stride[1]),
            Insn::Copy {
                src,
                dst,
                src_layout,
                dst_layout,
            } => Enc::new(COPY, 0)
                .set(1, src)
                .set(2, dst)
                .strided(3, &src_layout)
                .set(8, dst_layout.stride[0])
                .set(9, dst_layout.stride[1]),
            Insn::Fill { dst, len, pattern } => {
                Enc::new(FILL, 0).set(1, dst).set(2, len).set(3, pattern)
            }
            Insn::Matmul {
                dtype,
                accumulate,
                transpose_b,
                m,
                n,
                k,
                a,
                b,
                c,
            } => {
                let mut s = sel(dtype as u8, 0);
                if accumulate {
                    s |= FLAG_ACCUMULATE;
                }
                if transpose_b {
                    s |= FLAG_TRANSPOSE_B;
                }
                Enc::new(MATMUL, s)
                    .set(1, m)
                    .set(2, n)
                    .set(3, k)
                    .tile(4, &a)
                    .tile(6, &b)
                    .tile(8, &c)
            }
            Insn::Requant {
                rows,
                cols,
                src,
                dst,
                mult,
                per_channel,
                bias,
                shift,
                zero_point,
                lo,
                hi,
            } => {
                let mut s = 0;
                if per_channel {
                    s |= FLAG_PER_CHANNEL;
                }
                if bias.is_some() {
                    s |= FLAG_BIAS;
                }
                let packed = shift as u32
                    | (zero_point as u8 as u32) << 8
                    | (lo as u8 as u32) << 16
                    | (hi as u8 as u32) << 24;
                Enc::new(REQUANT, s)
                    .set(1, rows)
                    .set(2, cols)
                    .tile(3, &src)
                    .tile(5, &dst)
                    .set(7, mult)
                    .set(8, bias.unwrap_or(0))
                    .set(9, packed)
            }
            Insn::Convert {
                conv,
                rows,
                cols,
                src,
                dst,
                zero_point,
                scale,
            } => Enc::new(CONVERT, sel(0, conv as u8))
                .set(1, rows)
                .set(2, cols)
                .tile(3, &src)
                .tile(5, &dst)
                .set(7, zero_point as u32)
                .set(8, scale.to_bits()),
            Insn::Binary {
                op,
                dtype,
                bcast,
                rows,
                cols,
                a,
                b,
                out,
                scalar,
            } => Enc::new(
                BINARY,
                sel(dtype as u8, bcast as u8) | (op as u32) << FLAG_SHIFT,
            )
            .set(1, rows)
            .set(2, cols)
            .tile(3, &a)
            .tile(5, &b)
            .tile(7, &out)
            .set(9, scalar),
            Insn::Unary {
                op,
                dtype,
                rows,
                cols,
                src,
                dst,
                lo,
                hi,
            } => Enc::new(UNARY, sel(dtype as u8, 0) | (op as u32) << FLAG_SHIFT)
                .set(1, rows)
                .set(2, cols)
                .tile(3, &src)
                .tile(5, &dst)
                .set(7, lo)
                .set(8, hi),
            Insn::Reduce {
                op,
                axis,
                dtype,
                rows,
                cols,
                src,
                dst,
            } => Enc::new(
                REDUCE,
                sel(dtype as u8, axis as u8) | (op as u32) << FLAG_SHIFT,
            )
            .set(1, rows)
            .set(2, cols)
            .tile(3, &src)
            .set(5, dst),
            Insn::Pool { op, geom, src, dst } => {
                let g = &geom;
                Enc::new(POOL, sel(0, op as u8))
                    .set(1, g.channels)
                    .set(2, g.in_h)
                    .set(3, g.in_w)
                    .set(4, g.out_h)
                    .set(5, g.out_w)
                    .set(
                        6,
                        u32::from_le_bytes([g.kernel[0], g.kernel[1], g.stride[0], g.stride[1]]),
                    )
                    .set(7, u32::from_le_bytes([g.pad[0], g.pad[1], 0, 0]))
                    .set(8, src)
                    .set(9, dst)
            }
            Insn::PoolI8 {
                op,
                geom: g,
                src,
                dst,
                requant,
                zp_in,
                zp_out,
                scale_in,
                scale_out,
            } => Enc::new(POOL_I8, sel(0, op as u8) | (requant as u32) << FLAG_SHIFT)
                .set(1, g.channels)
                .set(2, g.in_h)
                .set(3, g.in_w)
                .set(4, g.out_h)
                .set(5, g.out_w)
                .set(
                    6,
                    u32::from_le_bytes([g.kernel[0], g.kernel[1], g.stride[0], g.stride[1]]),
                )
                .set(7, u32::from_le_bytes([g.pad[0], g.pad[1], 0, 0]))
                .set(8, src)
                .set(9, dst)
                .set(10, u32::from_le_bytes([zp_in as u8, zp_out as u8, 0, 0]))
                .set(11, scale_in.to_bits())
                .set(12, scale_out.to_bits()),
            Insn::Gather {
                wrap_negative,
                va,
                sram,
                row_bytes,
                count,
                table_rows,
                table_stride,
                indices,
                sram_stride,
            } => {
                let mut s = sel(DType::I32 as u8, 0);
                if wrap_negative {
                    s |= FLAG_WRAP_NEGATIVE;
                }
                Enc::new(GATHER, s)
                    .u64(1, va)
                    .set(3, sram)
                    .set(4, row_bytes)
                    .set(5, count)
                    .set(6, table_rows)
                    .set(7, table_stride)
                    .set(8, indices)
                    .set(9, sram_stride)
            }
            Insn::Select {
                dtype,
                rows,
                cols,
                cond,
                a,
                b,
                out,
            } => {
                let mut s = sel(dtype as u8, 0);
                for (x, shift) in [cond, a, b].iter().zip(SELECT_BCAST_SHIFT) {
                    s |= (x.bcast as u32) << shift;
                }
                Enc::new(SELECT, s)
                    .set(1, rows)
                    .set(2, cols)
                    .tile(3, &cond.tile)
                    .tile(5, &a.tile)
                    .tile(7, &b.tile)
                    .tile(9, &out)
                    .set(11, cond.scalar)
                    .set(12, a.scalar)
                    .set(13, b.scalar)
            }
        };
        let mut out = [0u8; INSN_SIZE];
        for (i, w) in e.0.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decode one instruction. Checks opcodes, selectors and reserved fields;
    /// ranges against the SRAM size are the executor's business.
    pub fn decode(bytes: &[u8; INSN_SIZE]) -> Result<Insn, DecodeError> {
        let mut w = [0u32; WORDS];
        for (i, c) in bytes.chunks_exact(4).enumerate() {
            w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        let op = w[0] as u8;
        let s1 = (w[0] >> SEL1_SHIFT) & 0xf;
        let s2 = (w[0] >> SEL2_SHIFT) & 0xf;
        let flags = w[0] >> FLAG_SHIFT;
        // Words used by each opcode; everything else must be zero.
        let used_words = |n: usize, w0_mask: u32| -> Result<(), DecodeError> {
            if w[0] & !(0xff | w0_mask) != 0 || w[n..].iter().any(|&x| x != 0) {
                Err(DecodeError::BadOperand)
            } else {
                Ok(())
            }
        };
        let u64_at = |i: usize| w[i] as u64 | (w[i + 1] as u64) << 32;
        let strided = |i: usize| Strided {
            shape: [w[i], w[i + 1], w[i + 2]],
            stride: [w[i + 3], w[i + 4]],
        };
        let tile = |i: usize| Tile {
            addr: w[i],
            ld: w[i + 1],
        };
        let dtype = |v: u32| DType::from_bits(v).ok_or(DecodeError::BadOperand);
        let broadcast = |v: u32| match v {
            0 => Ok(Broadcast::None),
            1 => Ok(Broadcast::PerRow),
            2 => Ok(Broadcast::PerCol),
            3 => Ok(Broadcast::Scalar),
            _ => Err(DecodeError::BadOperand),
        };
        const SEL_MASK: u32 = 0xff << SEL1_SHIFT;
        use opcode::*;
        Ok(match op {
            NOP => {
                used_words(1, 0)?;
                Insn::Nop
            }
            END => {
                used_words(1, 0)?;
                Insn::End
            }
            BARRIER => {
                used_words(1, 0)?;
                Insn::Barrier
            }
            MARK => {
                used_words(2, 0)?;
                Insn::Mark { tag: w[1] }
            }
            DMA_LOAD | DMA_STORE => {
                used_words(11, 0)?;
                let mem = strided(4);
                let sram_layout = Strided {
                    shape: mem.shape,
                    stride: [w[9], w[10]],
                };
                if op == DMA_LOAD {
                    Insn::DmaLoad {
                        va: u64_at(1),
                        sram: w[3],
                        mem,
                        sram_layout,
                    }
                } else {
                    Insn::DmaStore {
                        va: u64_at(1),
                        sram: w[3],
                        mem,
                        sram_layout,
                    }
                }
            }
            COPY => {
                used_words(10, 0)?;
                let src_layout = strided(3);
                Insn::Copy {
                    src: w[1],
                    dst: w[2],
                    src_layout,
                    dst_layout: Strided {
                        shape: src_layout.shape,
                        stride: [w[8], w[9]],
                    },
                }
            }
            FILL => {
                used_words(4, 0)?;
                Insn::Fill {
                    dst: w[1],
                    len: w[2],
                    pattern: w[3],
                }
            }
            MATMUL => {
                used_words(10, SEL_MASK | FLAG_ACCUMULATE | FLAG_TRANSPOSE_B)?;
                let dtype = match dtype(s1)? {
                    DType::I32 => return Err(DecodeError::BadOperand),
                    d => d,
                };
                if s2 != 0 {
                    return Err(DecodeError::BadOperand);
                }
                Insn::Matmul {
                    dtype,
                    accumulate: w[0] & FLAG_ACCUMULATE != 0,
                    transpose_b: w[0] & FLAG_TRANSPOSE_B != 0,
                    m: w[1],
                    n: w[2],
                    k: w[3],
                    a: tile(4),
                    b: tile(6),
                    c: tile(8),
                }
            }
            REQUANT => {
                used_words(10, FLAG_PER_CHANNEL | FLAG_BIAS)?;
                let has_bias = w[0] & FLAG_BIAS != 0;
                if !has_bias && w[8] != 0 {
                    return Err(DecodeError::BadOperand);
                }
                let [shift, zp, lo, hi] = w[9].to_le_bytes();
                if shift == 0 || shift > 62 || (lo as i8) > (hi as i8) {
                    return Err(DecodeError::BadOperand);
                }
                Insn::Requant {
                    rows: w[1],
                    cols: w[2],
                    src: tile(3),
                    dst: tile(5),
                    mult: w[7],
                    per_channel: w[0] & FLAG_PER_CHANNEL != 0,
                    bias: has_bias.then_some(w[8]),
                    shift,
                    zero_point: zp as i8,
                    lo: lo as i8,
                    hi: hi as i8,
                }
            }
            CONVERT => {
                used_words(9, SEL_MASK)?;
                let conv = match s2 {
                    0 => Conversion::I8ToI32,
                    1 => Conversion::I32ToF32,
                    2 => Conversion::F32ToI32,
                    3 => Conversion::I8ToF32,
                    4 => Conversion::F32ToF16,
                    5 => Conversion::F16ToF32,
                    6 => Conversion::F32ToBf16,
                    7 => Conversion::Bf16ToF32,
                    _ => return Err(DecodeError::BadOperand),
                };
                if s1 != 0 {
                    return Err(DecodeError::BadOperand);
                }
                Insn::Convert {
                    conv,
                    rows: w[1],
                    cols: w[2],
                    src: tile(3),
                    dst: tile(5),
                    zero_point: w[7] as i32,
                    scale: f32::from_bits(w[8]),
                }
            }
            BINARY => {
                used_words(10, SEL_MASK | 0xff << FLAG_SHIFT)?;
                let op = *BinaryOp::ALL
                    .get(flags as usize)
                    .ok_or(DecodeError::BadOperand)?;
                let bcast = broadcast(s2)?;
                let dtype = match dtype(s1)? {
                    DType::I8 => return Err(DecodeError::BadOperand),
                    DType::I32 if op == BinaryOp::Prelu => return Err(DecodeError::BadOperand),
                    d => d,
                };
                Insn::Binary {
                    op,
                    dtype,
                    bcast,
                    rows: w[1],
                    cols: w[2],
                    a: tile(3),
                    b: tile(5),
                    out: tile(7),
                    scalar: w[9],
                }
            }
            UNARY => {
                used_words(9, (0xf << SEL1_SHIFT) | 0xff << FLAG_SHIFT)?;
                let op = *UnaryOp::ALL
                    .get(flags as usize)
                    .ok_or(DecodeError::BadOperand)?;
                let dtype = dtype(s1)?;
                if (op.float_only() && dtype != DType::F32)
                    || (dtype == DType::I8 && op != UnaryOp::Move)
                {
                    return Err(DecodeError::BadOperand);
                }
                Insn::Unary {
                    op,
                    dtype,
                    rows: w[1],
                    cols: w[2],
                    src: tile(3),
                    dst: tile(5),
                    lo: w[7],
                    hi: w[8],
                }
            }
            REDUCE => {
                used_words(6, SEL_MASK | 0xff << FLAG_SHIFT)?;
                let op = match flags {
                    0 => ReduceOp::Sum,
                    1 => ReduceOp::Max,
                    _ => return Err(DecodeError::BadOperand),
                };
                let axis = match s2 {
                    0 => Axis::Cols,
                    1 => Axis::Rows,
                    _ => return Err(DecodeError::BadOperand),
                };
                let dtype = match dtype(s1)? {
                    DType::I8 => return Err(DecodeError::BadOperand),
                    d => d,
                };
                Insn::Reduce {
                    op,
                    axis,
                    dtype,
                    rows: w[1],
                    cols: w[2],
                    src: tile(3),
                    dst: w[5],
                }
            }
            POOL => {
                used_words(10, SEL_MASK)?;
                let op = match s2 {
                    0 => PoolOp::Max,
                    1 => PoolOp::Avg,
                    _ => return Err(DecodeError::BadOperand),
                };
                let [kh, kw, sh, sw] = w[6].to_le_bytes();
                let [ph, pw, r0, r1] = w[7].to_le_bytes();
                if s1 != 0 || r0 != 0 || r1 != 0 {
                    return Err(DecodeError::BadOperand);
                }
                Insn::Pool {
                    op,
                    geom: PoolGeom {
                        channels: w[1],
                        in_h: w[2],
                        in_w: w[3],
                        out_h: w[4],
                        out_w: w[5],
                        kernel: [kh, kw],
                        stride: [sh, sw],
                        pad: [ph, pw],
                    },
                    src: w[8],
                    dst: w[9],
                }
            }
            POOL_I8 => {
                used_words(13, SEL_MASK | 1 << FLAG_SHIFT)?;
                let op = match s2 {
                    0 => PoolI8Op::Max,
                    1 => PoolI8Op::Avg,
                    2 => PoolI8Op::AvgInt,
                    _ => return Err(DecodeError::BadOperand),
                };
                let requant = w[0] & 1 << FLAG_SHIFT != 0;
                let [kh, kw, sh, sw] = w[6].to_le_bytes();
                let [ph, pw, r0, r1] = w[7].to_le_bytes();
                let [zi, zo, r2, r3] = w[10].to_le_bytes();
                let (si, so) = (f32::from_bits(w[11]), f32::from_bits(w[12]));
                let scale_ok = |x: f32| x > 0.0 && x.is_finite();
                // The averages always requantize (F bit 0 is Max's alone);
                // an unused requantization is all zeros.
                let params_ok = match (op, requant) {
                    (PoolI8Op::Max, false) => w[10] == 0 && w[11] == 0 && w[12] == 0,
                    (PoolI8Op::Max, true) => scale_ok(si) && scale_ok(so),
                    (_, false) => scale_ok(si) && scale_ok(so),
                    (_, true) => false,
                };
                if s1 != 0 || r0 != 0 || r1 != 0 || r2 != 0 || r3 != 0 || !params_ok {
                    return Err(DecodeError::BadOperand);
                }
                Insn::PoolI8 {
                    op,
                    geom: PoolGeom {
                        channels: w[1],
                        in_h: w[2],
                        in_w: w[3],
                        out_h: w[4],
                        out_w: w[5],
                        kernel: [kh, kw],
                        stride: [sh, sw],
                        pad: [ph, pw],
                    },
                    src: w[8],
                    dst: w[9],
                    requant,
                    zp_in: zi as i8,
                    zp_out: zo as i8,
                    scale_in: si,
                    scale_out: so,
                }
            }
            GATHER => {
                used_words(10, SEL_MASK | FLAG_WRAP_NEGATIVE)?;
                // Indices are i32 (S1 = 1); S2 is reserved.
                if s1 != DType::I32 as u32 || s2 != 0 {
                    return Err(DecodeError::BadOperand);
                }
                Insn::Gather {
                    wrap_negative: w[0] & FLAG_WRAP_NEGATIVE != 0,
                    va: u64_at(1),
                    sram: w[3],
                    row_bytes: w[4],
                    count: w[5],
                    table_rows: w[6],
                    table_stride: w[7],
                    indices: w[8],
                    sram_stride: w[9],
                }
            }
            SELECT => {
                used_words(14, (0xf << SEL1_SHIFT) | 0x3f << FLAG_SHIFT)?;
                let dtype = match dtype(s1)? {
                    DType::I8 => return Err(DecodeError::BadOperand),
                    d => d,
                };
                let operand = |i: usize, word: usize| -> Result<SelectOperand, DecodeError> {
                    Ok(SelectOperand {
                        bcast: broadcast((w[0] >> SELECT_BCAST_SHIFT[i]) & 3)?,
                        tile: tile(3 + 2 * i),
                        scalar: w[word],
                    })
                };
                Insn::Select {
                    dtype,
                    rows: w[1],
                    cols: w[2],
                    cond: operand(0, 11)?,
                    a: operand(1, 12)?,
                    b: operand(2, 13)?,
                    out: tile(9),
                }
            }
            other => return Err(DecodeError::BadOpcode(other)),
        })
    }
}

/// Encode a sequence of instructions into a command buffer.
pub fn assemble(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * INSN_SIZE);
    for i in insns {
        out.extend_from_slice(&i.encode());
    }
    out
}

/// Decode a whole command buffer (for disassembly); stops at the first error.
pub fn disassemble(buf: &[u8]) -> Vec<Result<Insn, DecodeError>> {
    let mut out = Vec::new();
    for chunk in buf.chunks(INSN_SIZE) {
        match <&[u8; INSN_SIZE]>::try_from(chunk) {
            Ok(c) => {
                let r = Insn::decode(c);
                let stop = r.is_err();
                out.push(r);
                if stop {
                    break;
                }
            }
            Err(_) => {
                out.push(Err(DecodeError::BadOperand));
                break;
            }
        }
    }
    out
}

fn fmt_strided(f: &mut fmt::Formatter<'_>, s: &Strided) -> fmt::Result {
    write!(
        f,
        "[{}x{}x{} /{} /{}]",
        s.shape[0], s.shape[1], s.shape[2], s.stride[0], s.stride[1]
    )
}

fn fmt_tile(f: &mut fmt::Formatter<'_>, t: &Tile) -> fmt::Result {
    write!(f, "s:{:#x}/{}", t.addr, t.ld)
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Insn::Nop => write!(f, "nop"),
            Insn::End => write!(f, "end"),
            Insn::Barrier => write!(f, "barrier"),
            Insn::Mark { tag } => write!(f, "mark {tag}"),
            Insn::DmaLoad {
                va,
                sram,
                mem,
                sram_layout,
            } => {
                write!(f, "dma.load s:{sram:#x}")?;
                fmt_strided(f, sram_layout)?;
                write!(f, " <- va:{va:#x}")?;
                fmt_strided(f, mem)
            }
            Insn::DmaStore {
                va,
                sram,
                mem,
                sram_layout,
            } => {
                write!(f, "dma.store va:{va:#x}")?;
                fmt_strided(f, mem)?;
                write!(f, " <- s:{sram:#x}")?;
                fmt_strided(f, sram_layout)
            }
            Insn::Copy {
                src,
                dst,
                src_layout,
                dst_layout,
            } => {
                write!(f, "copy s:{dst:#x}")?;
                fmt_strided(f, dst_layout)?;
                write!(f, " <- s:{src:#x}")?;
                fmt_strided(f, src_layout)
            }
            Insn::Fill { dst, len, pattern } => {
                write!(f, "fill s:{dst:#x} len {len} = {pattern:#010x}")
            }
            Insn::Matmul {
                dtype,
                accumulate,
                transpose_b,
                m,
                n,
                k,
                a,
                b,
                c,
            } => {
                write!(
                    f,
                    "matmul.{}{}{} {m}x{n}x{k} ",
                    dtype.name(),
                    if *accumulate { ".acc" } else { "" },
                    if *transpose_b { ".bt" } else { "" }
                )?;
                fmt_tile(f, c)?;
                f.write_str(" <- ")?;
                fmt_tile(f, a)?;
                f.write_str(", ")?;
                fmt_tile(f, b)
            }
            Insn::Requant {
                rows,
                cols,
                src,
                dst,
                mult,
                per_channel,
                bias,
                shift,
                zero_point,
                lo,
                hi,
            } => {
                write!(f, "requant {rows}x{cols} ")?;
                fmt_tile(f, dst)?;
                f.write_str(" <- ")?;
                fmt_tile(f, src)?;
                if *per_channel {
                    write!(f, " mult s:{mult:#x}[]")?;
                } else {
                    write!(f, " mult {}", *mult as i32)?;
                }
                if let Some(b) = bias {
                    write!(f, " bias s:{b:#x}[]")?;
                }
                write!(f, " >>{shift} zp {zero_point} [{lo},{hi}]")
            }
            Insn::Convert {
                conv,
                rows,
                cols,
                src,
                dst,
                zero_point,
                scale,
            } => {
                write!(f, "convert.{conv:?} {rows}x{cols} ")?;
                fmt_tile(f, dst)?;
                f.write_str(" <- ")?;
                fmt_tile(f, src)?;
                write!(f, " zp {zero_point} scale {scale}")
            }
            Insn::Binary {
                op,
                dtype,
                bcast,
                rows,
                cols,
                a,
                b,
                out,
                scalar,
            } => {
                write!(f, "{:?}.{} {rows}x{cols} ", op, dtype.name())?;
                fmt_tile(f, out)?;
                f.write_str(" <- ")?;
                fmt_tile(f, a)?;
                match bcast {
                    Broadcast::Scalar => write!(f, ", #{scalar:#x}"),
                    Broadcast::None => {
                        f.write_str(", ")?;
                        fmt_tile(f, b)
                    }
                    other => write!(f, ", s:{:#x} ({other:?})", b.addr),
                }
            }
            Insn::Unary {
                op,
                dtype,
                rows,
                cols,
                src,
                dst,
                lo,
                hi,
            } => {
                write!(f, "{:?}.{} {rows}x{cols} ", op, dtype.name())?;
                fmt_tile(f, dst)?;
                f.write_str(" <- ")?;
                fmt_tile(f, src)?;
                if *op == UnaryOp::Clamp {
                    write!(f, " [{lo:#x},{hi:#x}]")?;
                } else if op.has_params() {
                    let (alpha, beta) = (f32::from_bits(*lo), f32::from_bits(*hi));
                    write!(f, " alpha {alpha} beta {beta}")?;
                }
                Ok(())
            }
            Insn::Reduce {
                op,
                axis,
                dtype,
                rows,
                cols,
                src,
                dst,
            } => {
                write!(
                    f,
                    "reduce.{op:?}.{} along {axis:?} {rows}x{cols} s:{dst:#x} <- ",
                    dtype.name()
                )?;
                fmt_tile(f, src)
            }
            Insn::Pool {
                op,
                geom: g,
                src,
                dst,
            } => write!(
                f,
                "pool.{op:?} c{} {}x{} -> {}x{} k{}x{} s{}x{} p{}x{} s:{dst:#x} <- s:{src:#x}",
                g.channels,
                g.in_h,
                g.in_w,
                g.out_h,
                g.out_w,
                g.kernel[0],
                g.kernel[1],
                g.stride[0],
                g.stride[1],
                g.pad[0],
                g.pad[1]
            ),
            Insn::Gather {
                wrap_negative,
                va,
                sram,
                row_bytes,
                count,
                table_rows,
                table_stride,
                indices,
                sram_stride,
            } => write!(
                f,
                "gather{} s:{sram:#x}[{count}x{row_bytes} /{sram_stride}] <- va:{va:#x}[{table_rows} rows /{table_stride}] by s:{indices:#x}",
                if *wrap_negative { ".wrap" } else { "" }
            ),
            Insn::PoolI8 {
                op,
                geom: g,
                src,
                dst,
                requant,
                zp_in,
                zp_out,
                scale_in,
                scale_out,
            } => {
                write!(
                    f,
                    "pool.i8.{op:?} c{} {}x{} -> {}x{} k{}x{} s{}x{} p{}x{} s:{dst:#x} <- s:{src:#x}",
                    g.channels,
                    g.in_h,
                    g.in_w,
                    g.out_h,
                    g.out_w,
                    g.kernel[0],
                    g.kernel[1],
                    g.stride[0],
                    g.stride[1],
                    g.pad[0],
                    g.pad[1],
                )?;
                if *requant || *op != PoolI8Op::Max {
                    write!(f, " q({scale_in}, {zp_in}) -> q({scale_out}, {zp_out})")?;
                }
                Ok(())
            }
            Insn::Select {
                dtype,
                rows,
                cols,
                cond,
                a,
                b,
                out,
            } => {
                write!(f, "select.{} {rows}x{cols} ", dtype.name())?;
                fmt_tile(f, out)?;
                f.write_str(" <- ")?;
                for (i, x) in [cond, a, b].into_iter().enumerate() {
                    f.write_str(["", " ? ", " : "][i])?;
                    match x.bcast {
                        Broadcast::Scalar => write!(f, "#{:#x}", x.scalar)?,
                        Broadcast::None => fmt_tile(f, &x.tile)?,
                        other => write!(f, "s:{:#x} ({other:?})", x.tile.addr)?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
