//! Memory planning and fusion decisions.

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
    for (i, node) in graph.nodes().iter().enumerate() {
        let v = ValueId(i);
        if absorbed[i] {
            continue;
        }
        // conv -> add(conv, earlier value) [-> unary]: the add and the
        // activation run in the conv's epilogue on the SRAM tile.
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
                        let (act, out) =
                            match reader(add).and_then(|r| activation(r).map(|a| (a, r))) {
                                Some((a, r)) => {
                                    absorbed[r.0] = true;
                                    (Some(a), r)
                                }
                                None => (None, add),
                            };
                        steps.push(Step {
                            node: v,
                            activation: act,
                            out,
                            residual: Some(other),
                        });
                        continue;
                    }
                }
            }
        }
        match &node.op {
            // Constants are packed by the ops that read them.
            Op::Input | Op::Constant { .. } => {}
            Op::Gemm { .. } | Op::Conv2d { .. } if opts.fuse && uses[i] == 1 && !is_output(v) => {
                // Look for the single consumer: a unary op right on this value.
                let consumer = graph
                    .nodes()
                    .iter()
                    .enumerate()
                    .skip(i + 1)
                    .find(|(_, c)| c.op.operands().contains(&v));
                match consumer.and_then(|(ci, _)| activation(ValueId(ci)).map(|a| (ci, a))) {
                    Some((ci, act)) => {
                        let act = Some(act);
                        absorbed[ci] = true;
                        steps.push(Step {
                            node: v,
                            activation: act,
                            out: ValueId(ci),
                            residual: None,
                        });
                    }
                    _ => steps.push(Step {
                        node: v,
                        activation: None,
                        out: v,
                        residual: None,
                    }),
                }
            }
            _ => steps.push(Step {
                node: v,
                activation: None,
                out: v,
                residual: None,
            }),
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
