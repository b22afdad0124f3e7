//! Memory planning and fusion decisions.

use super::chain::{self, Chain, EwOp};
use super::emit::{BufferDesc, BufferKind};
use super::{CompileOptions, LowerError};
use crate::ir::{Graph, Op, UnaryOp, ValueId};

/// Where a value lives in NPU memory: buffer index and byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub buffer: usize,
    pub offset: u64,
}

/// One unit of lowering: an op, optionally with a fused activation whose
/// result (`out`) is what gets stored.
#[derive(Clone, Debug)]
pub struct Step {
    pub node: ValueId,
    pub activation: Option<UnaryOp>,
    pub out: ValueId,
    /// A value added to the result before the activation (a residual
    /// connection fused into a direct conv2d's epilogue).
    pub residual: Option<ValueId>,
    /// An elementwise chain (chain.rs) run on the result's tile, after
    /// the bias and the residual, instead of `activation`; or, for an
    /// elementwise `node`, the chain it starts on the tile of its operand.
    pub chain: Option<Chain>,
    /// A pooling op run on the direct conv2d's output tile before the
    /// store (`out` is then the pool's result).
    pub pool: Option<ValueId>,
    /// A zero pad of H and W that the direct conv2d reads through: the
    /// conv reads the pad's operand with the pad's (possibly asymmetric)
    /// padding, and the padded tensor never exists.
    pub pad: Option<ValueId>,
    /// A per-channel multiply the direct conv2d reads through
    /// (`scale_fuses`): the conv reads the multiply's full-size operand
    /// and scales each loaded band by the per-channel one, so the product
    /// (a squeeze-excitation block's output) never reaches memory.
    pub scale: Option<ValueId>,
}

impl Step {
    fn single(v: ValueId) -> Step {
        Step {
            node: v,
            activation: None,
            out: v,
            residual: None,
            chain: None,
            pool: None,
            pad: None,
            scale: None,
        }
    }
}

/// The operands of a per-channel multiply `m`: (the value of the result's
/// shape `[N, C, H, W]`, the per-channel one: `[C, 1, 1]`,
/// `[1, C, 1, 1]` or `[N, C, 1, 1]`), all f32; None for anything else.
pub fn channel_scale(graph: &Graph, m: ValueId) -> Option<(ValueId, ValueId)> {
    let Op::Binary {
        op: crate::ir::BinaryOp::Mul,
        a,
        b,
    } = graph.node(m).op
    else {
        return None;
    };
    let out = &graph.ty(m).shape;
    let f32 = |v: ValueId| graph.ty(v).dtype == crate::ir::DType::F32;
    if out.len() != 4 || !f32(m) || !f32(a) || !f32(b) {
        return None;
    }
    let per_channel = |v: ValueId| {
        let s = &graph.ty(v).shape;
        let mut p = vec![1; 4usize.saturating_sub(s.len())];
        p.extend_from_slice(s);
        p.len() == 4 && (p[0] == 1 || p[0] == out[0]) && p[1] == out[1] && p[2..] == [1, 1]
    };
    if graph.ty(a).shape == *out && per_channel(b) {
        Some((a, b))
    } else if graph.ty(b).shape == *out && per_channel(a) {
        Some((b, a))
    } else {
        None
    }
}

/// Whether the per-channel multiply `m` can run on the loaded input bands
/// of the direct conv2d `conv`, its only reader: the conv without padding
/// and with stride 1, so a band holds input elements only (no padding
/// cells, which would be multiplied too) and the multiply is the unfused
/// op's BINARY on the same elements.
pub fn scale_fuses(graph: &Graph, m: ValueId, conv: ValueId) -> bool {
    match &graph.node(conv).op {
        Op::Conv2d { input, window, .. } => {
            is_direct_conv(graph, conv)
                && *input == m
                && window.padding == [0, 0]
                && window.stride == [1, 1]
                && channel_scale(graph, m).is_some()
        }
        _ => false,
    }
}

/// Whether pad `p` can be folded into the direct conv2d `conv` reading it:
/// constant +0.0 padding of H and W only, the conv without padding of its
/// own, and (column stride 1) a row pitch that holds every output column:
/// the smaller of the left and right padding below the dilated kernel
/// width (conv.rs `band`).
pub fn pad_fuses(graph: &Graph, p: ValueId, conv: ValueId) -> bool {
    let (
        Op::Pad {
            begin,
            end,
            value,
            mode: crate::ir::PadMode::Constant,
            ..
        },
        Op::Conv2d {
            input,
            weight,
            window,
            ..
        },
    ) = (&graph.node(p).op, &graph.node(conv).op)
    else {
        return false;
    };
    let kw = (graph.ty(*weight).shape[3] - 1) * window.dilation[1] + 1;
    is_direct_conv(graph, conv)
        && *input == p
        && value.to_bits() == 0
        && window.padding == [0, 0]
        && begin.len() == 4
        && end.len() == 4
        && begin[..2] == [0, 0]
        && end[..2] == [0, 0]
        && (window.stride[1] > 1 || begin[3].min(end[3]) < kw)
}

/// Whether pooling node `p` can run on the tiles of a direct conv2d's
/// output bands: f32, no dilation, the output size ONNX's floor rule
/// gives, and padding only for max pools (their padding is -inf in the
/// pooled planes; an average excludes it, which POOL does only at the
/// planes' edges). Windows that straddle bands are recomputed (conv.rs
/// `PoolFuse`).
pub fn pool_fuses(graph: &Graph, p: ValueId) -> bool {
    match graph.node(p).op {
        Op::Pool {
            kind,
            kernel,
            window,
            x,
        } => {
            let (xs, ys) = (&graph.ty(x).shape, &graph.ty(p).shape);
            let floor_rule = (0..2).all(|i| {
                xs.len() == 4
                    && ys.len() == 4
                    && xs[2 + i] + 2 * window.padding[i] >= kernel[i]
                    && ys[2 + i]
                        == (xs[2 + i] + 2 * window.padding[i] - kernel[i]) / window.stride[i] + 1
            });
            let pad_ok = match kind {
                crate::ir::PoolKind::Max => {
                    window.padding[0] < kernel[0] && window.padding[1] < kernel[1]
                }
                crate::ir::PoolKind::Avg => window.padding == [0, 0],
            };
            graph.ty(p).dtype == crate::ir::DType::F32
                && window.dilation == [1, 1]
                && floor_rule
                && pad_ok
                && kernel[0] < 256
                && kernel[1] < 256
                && window.stride[0] < 256
                && window.stride[1] < 256
        }
        _ => false,
    }
}

/// Whether conv2d `v` is lowered as the direct convolution (f32, constant
/// weights and bias), whose epilogue can add a residual.
pub fn is_direct_conv(graph: &Graph, v: ValueId) -> bool {
    let f32_const = |x: ValueId| {
        matches!(
            graph.constant_data(x),
            Some(crate::reference::TensorData::F32(_))
        )
    };
    match &graph.node(v).op {
        Op::Conv2d { weight, bias, .. } => {
            graph.ty(v).dtype == crate::ir::DType::F32
                && f32_const(*weight)
                && bias.is_none_or(f32_const)
        }
        _ => false,
    }
}

pub struct Plan {
    pub buffers: Vec<BufferDesc>,
    pub locs: Vec<Option<Loc>>,
    pub steps: Vec<Step>,
    /// (value name, buffer) of every input and output.
    pub io: Vec<(String, usize)>,
}

impl Plan {
    /// Where `v` lives; a value the plan placed nowhere is an error (never
    /// a silent alias of another buffer).
    pub fn loc(&self, v: ValueId) -> Result<Loc, LowerError> {
        self.locs.get(v.0).copied().flatten().ok_or_else(|| {
            LowerError::Internal(format!("value {} has no place in NPU memory", v.0))
        })
    }
}

pub fn plan(graph: &Graph, opts: CompileOptions) -> Result<Plan, LowerError> {
    let uses = graph.use_counts();
    let n = graph.nodes().len();
    let is_output = |v: ValueId| graph.outputs().contains(&v);
    // absorbed[v]: node v runs inside an earlier step (an activation or a
    // residual add in a gemm/conv2d epilogue).
    let mut absorbed = vec![false; n];
    let mut steps = Vec::new();
    // The single reader of `v`, when `v` has one and is not an output.
    let reader = |v: ValueId| {
        if uses[v.0] != 1 || is_output(v) {
            return None;
        }
        graph
            .nodes()
            .iter()
            .enumerate()
            .skip(v.0 + 1)
            .find(|(_, c)| c.op.operands().contains(&v))
            .map(|(ci, _)| ValueId(ci))
    };
    // The unary op `v` that can run in its producer's epilogue: on an f32
    // result any of them (elementwise, so the same bits on the SRAM tile as
    // after a store and a reload); on an int8 result only relu and clamp,
    // which fold into the requantization's bounds.
    let activation = |v: ValueId| match graph.node(v).op {
        Op::Unary { op, .. } if graph.ty(v).dtype == crate::ir::DType::F32 => Some(op),
        Op::Unary {
            op: op @ (UnaryOp::Relu | UnaryOp::Clamp { .. }),
            ..
        } => Some(op),
        _ => None,
    };
    let readers = chain::readers(graph);
    // What runs on the SRAM tile of a fused producer's result `root`: one
    // unary op as the activation (f32 or int8), or on an f32 result a
    // longer elementwise chain (with per-channel operands when `channels`,
    // the direct conv2d whose tile it is, channels as rows); marks them
    // absorbed.
    // (activation, chain, the value stored).
    let epilogue = |root: ValueId, channels: Option<ValueId>, absorbed: &mut Vec<bool>| {
        if !opts.fuse || is_output(root) {
            return (None, None, root);
        }
        if let Some(c) = chain::find(graph, &readers, root, &readers[root.0], false, channels) {
            for n in &c.nodes {
                absorbed[n.0] = true;
            }
            let out = *c.nodes.last().unwrap_or(&root);
            return match c.ops[..] {
                [EwOp::Unary { op, .. }] => (Some(op), None, out),
                _ => (None, Some(c), out),
            };
        }
        match reader(root).and_then(|r| activation(r).map(|a| (a, r))) {
            Some((a, r)) => {
                absorbed[r.0] = true;
                (Some(a), None, r)
            }
            None => (None, None, root),
        }
    };
    // A pooling op that is the only reader of a direct conv's (fused)
    // result runs on its tiles: (the pool, the value stored).
    let conv_pool = |out: ValueId, absorbed: &mut Vec<bool>| match reader(out) {
        Some(p) if opts.fuse && pool_fuses(graph, p) => {
            absorbed[p.0] = true;
            (Some(p), p)
        }
        _ => (None, out),
    };
    // The pad conv `v` reads through, when it does (see the Pad arm below).
    let conv_pad = |v: ValueId| match graph.node(v).op {
        Op::Conv2d { input, .. }
            if opts.fuse && reader(input) == Some(v) && pad_fuses(graph, input, v) =>
        {
            Some(input)
        }
        _ => None,
    };
    // scaled[m]: the per-channel multiply m runs on the loaded bands of
    // the conv reading it; conv_scale: the one conv `v` reads through.
    let mut scaled = vec![false; n];
    let conv_scale = |v: ValueId, scaled: &[bool]| match graph.node(v).op {
        Op::Conv2d { input, .. } if scaled[input.0] => Some(input),
        _ => None,
    };
    for (i, node) in graph.nodes().iter().enumerate() {
        let v = ValueId(i);
        if absorbed[i] {
            continue;
        }
        // conv -> add(conv, earlier value) [-> elementwise ops]: the add
        // and what follows run in the conv's epilogue on the SRAM tile.
        if opts.fuse && is_direct_conv(graph, v) {
            if let Some(add) = reader(v) {
                if let Op::Binary {
                    op: crate::ir::BinaryOp::Add,
                    a,
                    b,
                } = graph.node(add).op
                {
                    let other = if a == v { b } else { a };
                    if other != v
                        && other.0 < i
                        && graph.ty(other).shape == node.ty.shape
                        && graph.ty(other).dtype == node.ty.dtype
                    {
                        absorbed[add.0] = true;
                        let (activation, chain, out) = epilogue(add, Some(v), &mut absorbed);
                        let (pool, out) = conv_pool(out, &mut absorbed);
                        let pad = conv_pad(v);
                        steps.push(Step {
                            node: v,
                            activation,
                            out,
                            residual: Some(other),
                            chain,
                            pool,
                            pad,
                            scale: conv_scale(v, &scaled),
                        });
                        continue;
                    }
                }
            }
        }
        match &node.op {
            // Constants are packed by the ops that read them.
            Op::Input | Op::Constant { .. } => {}
            // A pad the conv reading it does itself (`Step::pad`).
            Op::Pad { .. } if opts.fuse && reader(v).is_some_and(|c| pad_fuses(graph, v, c)) => {
                absorbed[i] = true;
            }
            // A per-channel multiply the conv reading it does on its
            // loaded bands (`Step::scale`).
            Op::Binary { .. }
                if opts.fuse && reader(v).is_some_and(|c| scale_fuses(graph, v, c)) =>
            {
                absorbed[i] = true;
                scaled[i] = true;
            }
            Op::Gemm { .. } | Op::Conv2d { .. } => {
                let pad = conv_pad(v);
                let (activation, chain, out) =
                    epilogue(v, is_direct_conv(graph, v).then_some(v), &mut absorbed);
                let (pool, out) = if is_direct_conv(graph, v) {
                    conv_pool(out, &mut absorbed)
                } else {
                    (None, out)
                };
                let scale = conv_scale(v, &scaled);
                steps.push(Step {
                    node: v,
                    activation,
                    out,
                    residual: None,
                    chain,
                    pool,
                    pad,
                    scale,
                });
            }
            // Elementwise ops on one loaded tensor: a chain of two or more
            // runs on its tile, with one load and one store.
            Op::Unary { .. } | Op::Binary { .. } if opts.fuse => {
                let root = chain::loaded_root(graph, v);
                match chain::find(graph, &readers, root, &[v], true, Some(v)) {
                    Some(c) if c.nodes.len() >= 2 && c.nodes[0] == v => {
                        for n in &c.nodes[1..] {
                            absorbed[n.0] = true;
                        }
                        let out = *c.nodes.last().unwrap_or(&v);
                        steps.push(Step {
                            node: v,
                            activation: None,
                            out,
                            residual: None,
                            chain: Some(c),
                            pool: None,
                            pad: None,
                            scale: None,
                        });
                    }
                    _ => steps.push(Step::single(v)),
                }
            }
            _ => steps.push(Step::single(v)),
        }
    }

    let mut buffers = Vec::new();
    let mut locs = vec![None; n];
    let mut io = Vec::new();
    for v in graph.inputs() {
        // An input that is also an output is read back from its own
        // buffer (one buffer under its one name).
        locs[v.0] = Some(Loc {
            buffer: buffers.len(),
            offset: 0,
        });
        io.push((graph.node(v).name.clone(), buffers.len()));
        buffers.push(BufferDesc {
            name: graph.node(v).name.clone(),
            kind: BufferKind::Input,
            size: graph.ty(v).bytes() as u64,
        });
    }
    for &v in graph.outputs() {
        if graph.node(v).op == Op::Input {
            continue;
        }
        if let Op::Constant { .. } = graph.node(v).op {
            return Err(LowerError::Unsupported {
                name: graph.node(v).name.clone(),
                op: "constant",
                why: "a graph output is a constant (it does not depend on any input); the device has nothing to compute".into(),
            });
        }
        locs[v.0] = Some(Loc {
            buffer: buffers.len(),
            offset: 0,
        });
        io.push((graph.node(v).name.clone(), buffers.len()));
        buffers.push(BufferDesc {
            name: graph.node(v).name.clone(),
            kind: BufferKind::Output,
            size: graph.ty(v).bytes() as u64,
        });
    }
    // Intermediates share one scratch buffer: a value occupies its region
    // from the step that writes it to the last step that reads it (through
    // reshapes, which alias), then the region is reused. A value that is
    // fused away never reaches memory.
    let scratch = buffers.len();
    let mut last_use = vec![0usize; n];
    for (si, s) in steps.iter().enumerate() {
        for v in graph
            .node(s.node)
            .op
            .operands()
            .into_iter()
            .chain(s.residual)
            .chain(s.pad.map(|p| graph.node(p).op.operands()[0]))
            .chain(
                s.scale
                    .into_iter()
                    .flat_map(|m| graph.node(m).op.operands()),
            )
            .chain(s.chain.iter().flat_map(|c| c.chans.iter().copied()))
        {
            last_use[v.0] = last_use[v.0].max(si);
        }
    }
    for (i, node) in graph.nodes().iter().enumerate().rev() {
        if let Op::Reshape { x, .. } = node.op {
            last_use[x.0] = last_use[x.0].max(last_use[i]);
        }
    }
    let mut arena = Arena::default();
    for (si, s) in steps.iter().enumerate() {
        if locs[s.out.0].is_none() && !matches!(graph.node(s.node).op, Op::Reshape { .. }) {
            let off = arena.alloc(
                (graph.ty(s.out).bytes() as u64).next_multiple_of(64),
                last_use[s.out.0].max(si),
            );
            locs[s.out.0] = Some(Loc {
                buffer: scratch,
                offset: off,
            });
        }
        arena.release_through(si);
    }
    let off = arena.size;
    // Reshapes alias their operand (in definition order, so chains resolve).
    for (i, node) in graph.nodes().iter().enumerate() {
        if let Op::Reshape { x, .. } = node.op {
            // A reshape that is an output has its own buffer, which its
            // step copies into (ops.rs).
            if !is_output(ValueId(i)) {
                locs[i] = locs[x.0];
            }
        }
    }
    if off > 0 {
        buffers.push(BufferDesc {
            name: "scratch".into(),
            kind: BufferKind::Scratch,
            size: off,
        });
    }
    Ok(Plan {
        buffers,
        locs,
        steps,
        io,
    })
}

/// First-fit allocation of scratch regions that die after a given step.
#[derive(Default)]
struct Arena {
    /// (offset, size, last step that reads it), sorted by offset.
    live: Vec<(u64, u64, usize)>,
    size: u64,
}

impl Arena {
    fn alloc(&mut self, size: u64, dies_after: usize) -> u64 {
        let mut off = 0;
        let mut at = self.live.len();
        for (i, &(o, sz, _)) in self.live.iter().enumerate() {
            if o >= off + size {
                at = i;
                break;
            }
            off = off.max(o + sz);
        }
        self.live.insert(at, (off, size, dies_after));
        self.size = self.size.max(off + size);
        off
    }
    /// Free the regions whose last reader is step `step` or earlier.
    fn release_through(&mut self, step: usize) {
        self.live.retain(|&(_, _, d)| d > step);
    }
}
