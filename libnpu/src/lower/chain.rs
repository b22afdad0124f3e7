//! Elementwise chains: a run of f32 elementwise ops computed on one SRAM
//! tile without writing the values between them back to memory.
//!
//! A chain starts at a *root* value (register 0: the accumulator of the
//! gemm/conv2d producing it, or a tile loaded from memory) and takes, in
//! graph order, ops whose operands are values of the chain or one-element
//! f32 constants (BINARY's immediate): unary ops, binary ops with a scalar,
//! and binary ops of two chain values (HardSwish as exporters write it,
//! `x * clip(x + 3, 0, 6) / 6`; SiLU `x * sigmoid(x)`). On the output tile
//! of a direct conv2d (channels as rows), also binary ops with a
//! per-channel operand, a constant or a computed value (`[C,1,1]`, `[1,C,1,1]`,
//! `[N,C,1,1]`: a scale or shift after an activation), BINARY
//! with its per-row broadcast of the tile's channels' values. Every chain value
//! but the last is read only inside the chain and is not a graph output, so
//! only the last one is stored. Each op is the instruction a separate pass
//! would run (UNARY, BINARY), on the same elements, so the bits are those
//! of the unfused ops. The values live in *registers*, tiles of the root's
//! shape, reused once their last reader has run.

use super::emit::Emitter;
use crate::ir::{BinaryOp, DType, Graph, Op, ValueId};
use npu_isa::{self as isa, Broadcast, Insn, Tile};

/// Longest chain taken (ops); longer runs are split into several chains.
const MAX_OPS: usize = 16;

/// Most registers a chain may use (the root's included).
pub const MAX_REGS: u8 = 4;

/// The second operand of a chain's binary op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    Reg(u8),
    /// A one-element constant: BINARY's scalar immediate.
    Imm(f32),
    /// The chain's per-channel operand `i` (`Chain::chans`): one value
    /// per row of the tile (BINARY's per-row broadcast).
    Chan(u8),
}

/// One op of a chain, on registers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EwOp {
    Unary {
        op: crate::ir::UnaryOp,
        x: u8,
        out: u8,
    },
    /// `out = a op b`, negated after when `negate` (a scalar minus a
    /// value is computed as `-(value - scalar)`, which is exact).
    Binary {
        op: BinaryOp,
        a: u8,
        b: Arg,
        out: u8,
        negate: bool,
    },
}

/// A chain, ready to emit on register tiles.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub ops: Vec<EwOp>,
    /// Registers used, register 0 (the root) included.
    pub regs: u8,
    /// The register holding the result.
    pub out: u8,
    /// The graph values it computes, in order; the last is the result.
    pub nodes: Vec<ValueId>,
    /// Per-channel operands (`Arg::Chan`), each a value (or constant) of
    /// C or N x C elements for the root's `[N, C, H, W]`.
    pub chans: Vec<ValueId>,
}

/// The one-element f32 constant `v`, if it is one.
pub fn scalar(g: &Graph, v: ValueId) -> Option<f32> {
    match g.constant_data(v) {
        Some(crate::reference::TensorData::F32(d)) if d.len() == 1 => Some(d[0]),
        _ => None,
    }
}

/// Whether f32 `v` broadcasts per channel over the `[N, C, H, W]` root:
/// `[C, 1, 1]`, `[1, C, 1, 1]` or `[N, C, 1, 1]` (numpy broadcasting: a
/// `[C]` would broadcast along W; a one-element constant is a scalar
/// instead).
pub fn per_channel(g: &Graph, v: ValueId, root: ValueId) -> bool {
    let (ty, out) = (g.ty(v), &g.ty(root).shape);
    let mut p = vec![1; 4usize.saturating_sub(ty.shape.len())];
    p.extend_from_slice(&ty.shape);
    ty.dtype == DType::F32
        && out.len() == 4
        && p.len() == 4
        && (p[0] == 1 || p[0] == out[0])
        && p[1] == out[1]
        && p[2..] == [1, 1]
        && scalar(g, v).is_none()
}

/// Whether node `n` can join a chain whose values are `members`: f32 of
/// the root's shape, every operand a member, a scalar constant, or (with
/// `channels`: on a tile whose rows are the root's channels) a per-channel
/// value: a constant, or a value computed before `channels` (the step's
/// node, so in memory when the step runs).
fn joins(
    g: &Graph,
    n: ValueId,
    root: ValueId,
    members: &[ValueId],
    channels: Option<ValueId>,
) -> bool {
    let ty = g.ty(n);
    if ty.dtype != DType::F32 || ty.shape != g.ty(root).shape {
        return false;
    }
    let member = |v: ValueId| members.contains(&v);
    let ready = |v: ValueId| g.constant_data(v).is_some() || channels.is_some_and(|s| v.0 < s.0);
    let other = |v: ValueId| {
        scalar(g, v).is_some() || (channels.is_some() && ready(v) && per_channel(g, v, root))
    };
    match g.node(n).op {
        Op::Unary { x, .. } => member(x),
        Op::Binary { op, a, b } => match (member(a), member(b)) {
            (true, true) => true,
            (true, false) => other(b),
            // A first operand that is not a member: swapped (mirrored, or
            // sub negated).
            (false, true) => other(a) && (op.mirrored().is_some() || op == BinaryOp::Sub),
            (false, false) => false,
        },
        _ => false,
    }
}

/// The root of a chain that starts at elementwise node `v` on a loaded
/// tile: its operand of the result's shape (the other one of a binary op
/// may be a scalar or per-channel operand, even when it comes first).
pub fn loaded_root(g: &Graph, v: ValueId) -> ValueId {
    match g.node(v).op {
        Op::Binary { a, b, .. }
            if g.ty(a).shape != g.ty(v).shape && g.ty(b).shape == g.ty(v).shape =>
        {
            b
        }
        Op::Binary { a, b, .. } if scalar(g, a).is_some() => b,
        ref op => op.operands()[0],
    }
}

/// Readers of every value (a node reading a value twice is listed once).
pub fn readers(g: &Graph) -> Vec<Vec<ValueId>> {
    let mut r = vec![Vec::new(); g.nodes().len()];
    for (i, n) in g.nodes().iter().enumerate() {
        let mut ops = n.op.operands();
        ops.dedup();
        for v in ops {
            if !r[v.0].contains(&ValueId(i)) {
                r[v.0].push(ValueId(i));
            }
        }
    }
    r
}

/// The longest chain from `root` whose first candidates are `seeds` (the
/// root's readers, or one of them), or None. `root_stored`: the root is in
/// memory (a loaded tile; other ops may read it too); otherwise it is the
/// tile of a fused producer and every reader of it must be in the chain.
/// `channels`: the step's node, when the tile's rows are the root's
/// channels (a direct conv2d's output), so per-channel operands may join.
pub fn find(
    g: &Graph,
    readers: &[Vec<ValueId>],
    root: ValueId,
    seeds: &[ValueId],
    root_stored: bool,
    channels: Option<ValueId>,
) -> Option<Chain> {
    if g.ty(root).dtype != DType::F32 {
        return None;
    }
    let is_output = |v: ValueId| g.outputs().contains(&v);
    // Candidates in graph order: readers of the members so far.
    let mut members = vec![root];
    let mut nodes: Vec<ValueId> = Vec::new();
    let mut pending: std::collections::BTreeSet<usize> = seeds.iter().map(|v| v.0).collect();
    while let Some(c) = pending.pop_first() {
        if nodes.len() == MAX_OPS {
            break;
        }
        let c = ValueId(c);
        if !joins(g, c, root, &members, channels) {
            continue;
        }
        members.push(c);
        nodes.push(c);
        pending.extend(readers[c.0].iter().map(|v| v.0));
    }
    // The longest prefix in which every value but the last is read only
    // inside the chain (and is not an output).
    let closed = |k: usize| {
        let inside = |v: &ValueId| *v == root || nodes[..k].contains(v);
        let escapes = |v: ValueId| is_output(v) || !readers[v.0].iter().all(inside);
        (root_stored || !escapes(root)) && nodes[..k - 1].iter().all(|&v| !escapes(v))
    };
    let k = (1..=nodes.len()).rev().find(|&k| closed(k))?;
    nodes.truncate(k);
    allocate(g, root, nodes)
}

/// Registers for the chain's values: the root in 0, each result in the
/// register of an operand read for the last time (in place), else the
/// lowest free one. None when it needs more than MAX_REGS.
fn allocate(g: &Graph, root: ValueId, nodes: Vec<ValueId>) -> Option<Chain> {
    let last = *nodes.last()?;
    let operands = |n: ValueId| -> Vec<ValueId> {
        let mut v = g.node(n).op.operands();
        v.dedup();
        v
    };
    // Position of the last op reading each value (the result: never dies).
    let dies_at = |v: ValueId| -> Option<usize> {
        if v == last {
            return None;
        }
        nodes.iter().rposition(|&n| operands(n).contains(&v))
    };
    let mut reg_of: Vec<(ValueId, u8)> = vec![(root, 0)];
    let mut free: Vec<u8> = Vec::new();
    let mut regs = 1u8;
    let mut ops = Vec::with_capacity(nodes.len());
    let mut chans: Vec<ValueId> = Vec::new();
    // A non-member operand: the scalar immediate, or a per-channel one.
    let mut arg = |v: ValueId| -> Option<Arg> {
        if let Some(x) = scalar(g, v) {
            return Some(Arg::Imm(x));
        }
        let i = match chans.iter().position(|&c| c == v) {
            Some(i) => i,
            None => {
                chans.push(v);
                chans.len() - 1
            }
        };
        Some(Arg::Chan(u8::try_from(i).ok()?))
    };
    for (i, &n) in nodes.iter().enumerate() {
        let reg = |v: ValueId| reg_of.iter().find(|(x, _)| *x == v).map(|(_, r)| *r);
        // Operands read for the last time free their registers first.
        let mut dying: Vec<u8> = operands(n)
            .into_iter()
            .filter(|&v| dies_at(v) == Some(i))
            .filter_map(reg)
            .collect();
        dying.sort();
        let (a_v, b_v) = match g.node(n).op {
            Op::Unary { x, .. } => (x, None),
            Op::Binary { a, b, .. } => (a, Some(b)),
            _ => return None,
        };
        free.extend(dying.iter().copied());
        free.sort();
        free.dedup();
        let out = if free.is_empty() {
            regs += 1;
            regs - 1
        } else {
            free.remove(0)
        };
        if regs > MAX_REGS {
            return None;
        }
        let op = match g.node(n).op {
            Op::Unary { op, .. } => EwOp::Unary {
                op,
                x: reg(a_v)?,
                out,
            },
            Op::Binary { op, .. } => {
                let b_v = b_v?;
                match (reg(a_v), reg(b_v)) {
                    (Some(a), Some(b)) => EwOp::Binary {
                        op,
                        a,
                        b: Arg::Reg(b),
                        out,
                        negate: false,
                    },
                    (Some(a), None) => EwOp::Binary {
                        op,
                        a,
                        b: arg(b_v)?,
                        out,
                        negate: false,
                    },
                    (None, Some(b)) => {
                        let imm = arg(a_v)?;
                        match op.mirrored() {
                            Some(m) => EwOp::Binary {
                                op: m,
                                a: b,
                                b: imm,
                                out,
                                negate: false,
                            },
                            None => EwOp::Binary {
                                op,
                                a: b,
                                b: imm,
                                out,
                                negate: true,
                            },
                        }
                    }
                    (None, None) => return None,
                }
            }
            _ => return None,
        };
        ops.push(op);
        reg_of.retain(|(v, _)| dies_at(*v) != Some(i));
        reg_of.push((n, out));
    }
    let out = reg_of.iter().find(|(v, _)| *v == last)?.1;
    Some(Chain {
        ops,
        regs,
        out,
        nodes,
        chans,
    })
}

/// The ISA's BINARY function for `op`.
pub fn isa_binary(op: BinaryOp) -> isa::BinaryOp {
    match op {
        BinaryOp::Add => isa::BinaryOp::Add,
        BinaryOp::Sub => isa::BinaryOp::Sub,
        BinaryOp::Mul => isa::BinaryOp::Mul,
        BinaryOp::Div => isa::BinaryOp::Div,
        BinaryOp::Max => isa::BinaryOp::Max,
        BinaryOp::Min => isa::BinaryOp::Min,
        BinaryOp::Prelu => isa::BinaryOp::Prelu,
        BinaryOp::Equal => isa::BinaryOp::Eq,
        BinaryOp::NotEqual => isa::BinaryOp::Ne,
        BinaryOp::Less => isa::BinaryOp::Lt,
        BinaryOp::LessOrEqual => isa::BinaryOp::Le,
        BinaryOp::Greater => isa::BinaryOp::Gt,
        BinaryOp::GreaterOrEqual => isa::BinaryOp::Ge,
        BinaryOp::And => isa::BinaryOp::And,
        BinaryOp::Or => isa::BinaryOp::Or,
        BinaryOp::Xor => isa::BinaryOp::Xor,
    }
}

impl Chain {
    /// The chain's instructions on `rows x cols` tiles, register `i` being
    /// `regs[i]` (all laid out alike); the result is in `regs[self.out]`.
    /// `chans[i]`: the SRAM address of per-channel operand `i`'s values for
    /// the tile's rows.
    pub fn emit(&self, e: &mut Emitter, rows: u32, cols: u32, regs: &[Tile], chans: &[u32]) {
        for op in &self.ops {
            match *op {
                EwOp::Unary { op, x, out } => e.push(super::ops::unary_insn(
                    op,
                    rows,
                    cols,
                    regs[x as usize],
                    regs[out as usize],
                )),
                EwOp::Binary {
                    op,
                    a,
                    b,
                    out,
                    negate,
                } => {
                    let (bt, bcast, imm) = match b {
                        Arg::Reg(r) => (regs[r as usize], Broadcast::None, 0),
                        Arg::Imm(x) => (regs[a as usize], Broadcast::Scalar, x.to_bits()),
                        Arg::Chan(i) => (
                            Tile {
                                addr: chans[i as usize],
                                ld: 0,
                            },
                            Broadcast::PerRow,
                            0,
                        ),
                    };
                    let o = regs[out as usize];
                    e.push(Insn::Binary {
                        op: isa_binary(op),
                        dtype: isa::DType::F32,
                        bcast,
                        rows,
                        cols,
                        a: regs[a as usize],
                        b: bt,
                        out: o,
                        scalar: imm,
                    });
                    if negate {
                        e.push(Insn::Binary {
                            op: isa::BinaryOp::Mul,
                            dtype: isa::DType::F32,
                            bcast: Broadcast::Scalar,
                            rows,
                            cols,
                            a: o,
                            b: o,
                            out: o,
                            scalar: (-1.0f32).to_bits(),
                        });
                    }
                }
            }
        }
    }
}

/// A chain on its own: the root's elements (`shape`) stream from `x` in
/// chunks, each loaded once, run through the chain on the SRAM tile, and
/// its result stored to `out` (one load and one store per chunk, whatever
/// the chain's length). `chans`: where the chain's per-channel operands
/// are (with per-image values); then the tiles are channels x pixels.
pub fn lower(
    e: &mut Emitter,
    chain: &Chain,
    x: super::plan::Loc,
    out: super::plan::Loc,
    shape: &[usize],
    chans: &[(super::plan::Loc, bool)],
) -> Result<(), String> {
    let n: usize = shape.iter().product();
    if !chans.is_empty() {
        return lower_channels(e, chain, x, out, shape, chans);
    }
    let nb = e.nbuf();
    let mut size = n.min(16384);
    let regs = loop {
        e.sram_reset();
        let slots: Result<Vec<_>, ()> = (0..chain.regs)
            .map(|_| e.sram_alloc(size as u64 * 4, nb))
            .collect();
        if let Ok(s) = slots {
            break s;
        }
        if size == 1 {
            return Err("one element per register does not fit".into());
        }
        size = size.div_ceil(2);
    };
    let chunk = |i: usize| {
        let o = i * size;
        (o, size.min(n - o))
    };
    e.pipeline(
        n.div_ceil(size),
        |e, i, slot| {
            let (o, l) = chunk(i);
            let b = (l * 4) as u32;
            e.load(
                x,
                (o * 4) as u64,
                regs[0].at(slot),
                isa::Strided::contiguous(b),
                isa::Strided::contiguous(b),
            );
            Ok(())
        },
        |e, i, slot| {
            let (o, l) = chunk(i);
            let tiles: Vec<Tile> = regs
                .iter()
                .map(|r| Tile {
                    addr: r.at(slot),
                    ld: l as u32,
                })
                .collect();
            chain.emit(e, 1, l as u32, &tiles, &[]);
            let b = (l * 4) as u32;
            e.store(
                out,
                (o * 4) as u64,
                tiles[chain.out as usize].addr,
                isa::Strided::contiguous(b),
                isa::Strided::contiguous(b),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// `lower` with per-channel operands: tiles of `tr` channels x `tc` pixels
/// of one image (`[N, C, H, W]`), each operand's `tr` values loaded beside.
fn lower_channels(
    e: &mut Emitter,
    chain: &Chain,
    x: super::plan::Loc,
    out: super::plan::Loc,
    shape: &[usize],
    chans: &[(super::plan::Loc, bool)],
) -> Result<(), String> {
    let [n, c, h, w] = shape else {
        return Err(format!(
            "per-channel operands need an NCHW root, not {shape:?}"
        ));
    };
    let (n, c, hw) = (*n, *c, h * w);
    let nb = e.nbuf();
    let mut tc = hw.min(16384);
    let mut tr = c.min((16384 / tc).max(1));
    let (regs, vals) = loop {
        e.sram_reset();
        let sizes = (0..chain.regs as usize)
            .map(|_| tr * tc * 4)
            .chain(chans.iter().map(|_| tr * 4));
        let slots: Result<Vec<_>, ()> = sizes.map(|b| e.sram_alloc(b as u64, nb)).collect();
        if let Ok(mut s) = slots {
            let vals = s.split_off(chain.regs as usize);
            break (s, vals);
        }
        if tr > 1 {
            tr = tr.div_ceil(2);
        } else if tc > 1 {
            tc = tc.div_ceil(2);
        } else {
            return Err("one element per register does not fit".into());
        }
    };
    let (cb, pb) = (c.div_ceil(tr), hw.div_ceil(tc));
    // (image, first channel, channels, first pixel, pixels) of tile i.
    let tile = |i: usize| {
        let (img, rest) = (i / (cb * pb), i % (cb * pb));
        let (c0, p0) = ((rest / pb) * tr, (rest % pb) * tc);
        (img, c0, (c - c0).min(tr), p0, (hw - p0).min(tc))
    };
    let rows = |cr: usize, pc: usize, pitch: usize| {
        isa::Strided::rows((pc * 4) as u32, cr as u32, (pitch * 4) as u32)
    };
    e.pipeline(
        n * cb * pb,
        |e, i, slot| {
            let (img, c0, cr, p0, pc) = tile(i);
            e.load(
                x,
                (((img * c + c0) * hw + p0) * 4) as u64,
                regs[0].at(slot),
                rows(cr, pc, hw),
                rows(cr, pc, tc),
            );
            for (&(at, per_image), v) in chans.iter().zip(&vals) {
                let first = if per_image { img * c } else { 0 } + c0;
                let b = (cr * 4) as u32;
                e.load(
                    at,
                    (first * 4) as u64,
                    v.at(slot),
                    isa::Strided::contiguous(b),
                    isa::Strided::contiguous(b),
                );
            }
            Ok(())
        },
        |e, i, slot| {
            let (img, c0, cr, p0, pc) = tile(i);
            let tiles: Vec<Tile> = regs
                .iter()
                .map(|r| Tile {
                    addr: r.at(slot),
                    ld: tc as u32,
                })
                .collect();
            let at: Vec<u32> = vals.iter().map(|v| v.at(slot)).collect();
            chain.emit(e, cr as u32, pc as u32, &tiles, &at);
            e.store(
                out,
                (((img * c + c0) * hw + p0) * 4) as u64,
                tiles[chain.out as usize].addr,
                rows(cr, pc, hw),
                rows(cr, pc, tc),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}
