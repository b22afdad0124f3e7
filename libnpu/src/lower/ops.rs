//! Per-op tiling and instruction selection.

use super::emit::{Emitter, Slots};
use super::plan::{Loc, Plan, Step};
use super::LowerError;
use crate::ir::{
    int8_clamp_bounds, requant_scales, BinaryOp, DType, Graph, Op, PoolKind, UnaryOp, ValueId,
    Window,
};
use npu_isa::{self as isa, Axis, Broadcast, Conversion, Insn, PoolGeom, ReduceOp, Strided, Tile};

type R<T> = Result<T, LowerError>;

pub fn lower_step(g: &Graph, plan: &Plan, step: &Step, e: &mut Emitter) -> R<()> {
    let node = g.node(step.node);
    for v in node.op.operands().into_iter().chain([step.out]) {
        if g.ty(v).bytes() >= u32::MAX as usize {
            return Err(LowerError::TooLarge(format!(
                "`{}` has {} bytes, more than the ISA's 32-bit sizes express",
                g.node(v).name,
                g.ty(v).bytes()
            )));
        }
    }
    e.sram_reset();
    let out = plan.loc(step.out)?;
    match &node.op {
        // A reshape that is a graph output is copied into its buffer.
        Op::Reshape { x, .. } if g.outputs().contains(&step.out) => {
            let xl = loc(g, plan, e, *x)?;
            super::movement::lower(g, step.node, &[xl], out, e)?
        }
        // Planned as an alias of its operand: no instructions.
        Op::Input | Op::Reshape { .. } | Op::Constant { .. } => {}
        Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Transpose { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. }
        | Op::Resize { .. } => {
            let xls = node
                .op
                .operands()
                .into_iter()
                .map(|v| loc(g, plan, e, v))
                .collect::<R<Vec<_>>>()?;
            super::movement::lower(g, step.node, &xls, out, e)?
        }
        Op::Gemm {
            a,
            b,
            bias,
            trans_a,
            trans_b,
        } => {
            let ta = g.ty(*a);
            let (m, n) = (node.ty.shape[0], node.ty.shape[1]);
            let k = if *trans_a { ta.shape[0] } else { ta.shape[1] };
            let sums = int8_sums(g, *b, |i| if *trans_b { i / k } else { i % n }, n);
            let zb = weight_zero_points(g.ty(*b), n);
            // Operands first, then the bias: the constant buffer's order.
            let (al, bl) = (loc(g, plan, e, *a)?, loc(g, plan, e, *b)?);
            let gb = bias.map(|v| loc(g, plan, e, v)).transpose()?;
            let mac = Mac::new(g, step, node.ty.dtype, n, e, sums, k, gb)?;
            // Per-channel weight zero points: one i32 per column.
            let zb_cols = (zb.iter().any(|&z| z != zb[0])).then(|| {
                e.constant(&i32_bytes(
                    &zb.iter().map(|&z| z as i32).collect::<Vec<_>>(),
                ))
            });
            let spec = GemmSpec {
                m,
                n,
                k,
                trans_a: *trans_a,
                trans_b: *trans_b,
                a: al,
                b: bl,
                bias: bias.map(|v| loc(g, plan, e, v)).transpose()?,
                out,
                zb: zb[0],
                zb_cols,
            };
            gemm(e, &spec, &mac).map_err(|why| too_small(g, step, e, why))?
        }
        Op::Conv2d {
            input,
            weight,
            bias,
            window,
            groups,
        } => {
            // A fused pad (plan.rs `pad_fuses`): read its operand, with its
            // padding as the window's.
            let (input, window, pad_end) = match step.pad.map(|p| &g.node(p).op) {
                Some(Op::Pad { x, begin, end, .. }) => (
                    x,
                    &Window {
                        padding: [begin[2], begin[3]],
                        ..*window
                    },
                    [end[2], end[3]],
                ),
                _ => (input, window, window.padding),
            };
            // A fused per-channel multiply (plan.rs `scale_fuses`): read its
            // full-size operand, and scale the bands by the other one.
            let (input, scale) = match step.scale.and_then(|m| super::plan::channel_scale(g, m)) {
                Some((x, sv)) => (x, Some(sv)),
                None => (*input, None),
            };
            let input = &input;
            let f32s = |v: ValueId| match g.constant_data(v) {
                Some(crate::reference::TensorData::F32(d)) => Some(d.as_slice()),
                _ => None,
            };
            let (wdata, bdata) = (f32s(*weight), bias.map(f32s));
            let (xs, ws) = (&g.ty(*input).shape, &g.ty(*weight).shape);
            let i8_weights = match g.constant_data(*weight) {
                Some(crate::reference::TensorData::I8(d)) => Some(d.as_slice()),
                _ => None,
            };
            let i8_bias_const = bias.is_none_or(|b| g.constant_data(b).is_some());
            let direct = match (node.ty.dtype, wdata, bdata, i8_weights) {
                (DType::F32, Some(wd), None | Some(Some(_)), _) => {
                    Some((super::conv::Filter::F32(wd), bdata.flatten(), None))
                }
                (DType::I8, _, _, Some(wd)) if i8_bias_const => {
                    let q = conv_int8(g, step, *input, *weight, *groups)?;
                    Some((super::conv::Filter::I8(wd), None, Some(q)))
                }
                _ => None,
            };
            if let Some((weight, f32_bias, q)) = direct {
                let spec = super::conv::DirectConv {
                    x: [xs[0], xs[1], xs[2], xs[3]],
                    w: [ws[0], ws[1], ws[2], ws[3]],
                    out_hw: [node.ty.shape[2], node.ty.shape[3]],
                    win: *window,
                    pad_end,
                    groups: *groups,
                    weight,
                    bias: f32_bias,
                    q,
                    act: step.activation,
                    chain: step.chain.as_ref(),
                    chans: match &step.chain {
                        Some(c) => c
                            .chans
                            .iter()
                            .map(|&v| {
                                Ok(super::conv::ChannelScale {
                                    at: loc(g, plan, e, v)?,
                                    per_image: g.ty(v).elems() != node.ty.shape[1],
                                })
                            })
                            .collect::<R<Vec<_>>>()?,
                        None => Vec::new(),
                    },
                    pool: match step.pool.map(|p| &g.node(p).op) {
                        Some(Op::Pool {
                            kind,
                            kernel,
                            window,
                            ..
                        }) => Some(super::conv::PoolFuse {
                            kind: *kind,
                            kernel: *kernel,
                            stride: window.stride,
                            pad: window.padding,
                            out_hw: [g.ty(step.out).shape[2], g.ty(step.out).shape[3]],
                        }),
                        _ => None,
                    },
                    xl: loc(g, plan, e, *input)?,
                    residual: step.residual.map(|r| loc(g, plan, e, r)).transpose()?,
                    scale: match scale {
                        Some(sv) => Some(super::conv::ChannelScale {
                            at: loc(g, plan, e, sv)?,
                            per_image: g.ty(sv).elems() != xs[1],
                        }),
                        None => None,
                    },
                    out,
                };
                super::conv::direct_conv(e, &spec).map_err(|why| too_small(g, step, e, why))?;
                return Ok(());
            }
            if step.residual.is_some()
                || step.pool.is_some()
                || step.pad.is_some()
                || step.scale.is_some()
            {
                return Err(LowerError::Internal(format!(
                    "`{}`: a residual add, a pool, a pad or a per-channel multiply was fused into a conv2d that is not lowered directly",
                    node.name
                )));
            }
            let ws = &g.ty(*weight).shape;
            let taps = ws[1] * ws[2] * ws[3];
            if node.ty.dtype == DType::I8
                && !g.ty(*weight).quant.as_ref().is_some_and(|q| q.symmetric())
            {
                return Err(LowerError::Unsupported {
                    name: node.name.clone(),
                    op: "conv2d",
                    why: "a non-zero weight zero point needs constant weights".into(),
                });
            }
            let sums = int8_sums(g, *weight, |i| i / taps, ws[0]);
            let gb = bias.map(|v| loc(g, plan, e, v)).transpose()?;
            let mac = Mac::new(g, step, node.ty.dtype, node.ty.shape[1], e, sums, taps, gb)?;
            let pad_byte = g.ty(*input).quant.as_ref().map_or(0, |q| q.zero_point());
            let spec = ConvSpec {
                x: g.ty(*input).shape.clone(),
                w: g.ty(*weight).shape.clone(),
                out_hw: [node.ty.shape[2], node.ty.shape[3]],
                win: *window,
                groups: *groups,
                xl: loc(g, plan, e, *input)?,
                wl: loc(g, plan, e, *weight)?,
                bl: bias.map(|v| loc(g, plan, e, v)).transpose()?,
                out,
                pad_byte,
            };
            conv2d(e, &spec, &mac).map_err(|why| too_small(g, step, e, why))?
        }
        // An elementwise chain on the tile of its root operand (chain.rs).
        Op::Unary { .. } | Op::Binary { .. } if step.chain.is_some() => {
            let c = step
                .chain
                .as_ref()
                .ok_or_else(|| LowerError::Internal("no chain".into()))?;
            let root = super::chain::loaded_root(g, step.node);
            let xl = loc(g, plan, e, root)?;
            let chans = c
                .chans
                .iter()
                .map(|&v| Ok((loc(g, plan, e, v)?, g.ty(v).elems() != node.ty.shape[1])))
                .collect::<R<Vec<_>>>()?;
            super::chain::lower(e, c, xl, out, &node.ty.shape, &chans)
                .map_err(|why| too_small(g, step, e, why))?
        }
        Op::Binary { op, a, b } => binary(g, e, step, *op, *a, *b, plan, out)?,
        Op::SignFlip { x } => {
            let xl = loc(g, plan, e, *x)?;
            sign_flip(e, xl, out, node.ty.elems()).map_err(|why| too_small(g, step, e, why))?
        }
        Op::Cast { x, to } => {
            let xl = loc(g, plan, e, *x)?;
            let conv = match (g.ty(*x).dtype, to) {
                (DType::F32, DType::F16) => Conversion::F32ToF16,
                (DType::F32, DType::Bf16) => Conversion::F32ToBf16,
                (DType::F16, DType::F32) => Conversion::F16ToF32,
                (DType::Bf16, DType::F32) => Conversion::Bf16ToF32,
                (from, to) => {
                    return Err(LowerError::Internal(format!(
                        "cast {} -> {}",
                        from.name(),
                        to.name()
                    )))
                }
            };
            cast(e, conv, xl, out, node.ty.elems()).map_err(|why| too_small(g, step, e, why))?
        }
        Op::Unary { op, x } => {
            let xl = loc(g, plan, e, *x)?;
            if node.ty.dtype == DType::I8 && !matches!(op, UnaryOp::Relu | UnaryOp::Clamp { .. }) {
                let q = (per_tensor(g.ty(*x)), per_tensor(&node.ty));
                unary_f32(e, *op, xl, out, node.ty.elems(), Some(q))
                    .map_err(|why| too_small(g, step, e, why))?
            } else if node.ty.dtype == DType::I8 {
                let (lo, hi) = int8_clamp_bounds(*op, &node.ty);
                unary_i8(e, xl, out, node.ty.elems(), lo, hi)
                    .map_err(|why| too_small(g, step, e, why))?
            } else {
                unary_f32(e, *op, xl, out, node.ty.elems(), None)
                    .map_err(|why| too_small(g, step, e, why))?
            }
        }
        Op::Pool {
            kind,
            x,
            kernel,
            window,
        } => {
            let xl = loc(g, plan, e, *x)?;
            let q =
                (node.ty.dtype == DType::I8).then(|| (per_tensor(g.ty(*x)), per_tensor(&node.ty)));
            pool(
                e,
                *kind,
                &g.ty(*x).shape,
                &node.ty.shape,
                *kernel,
                window,
                xl,
                out,
                q,
            )
            .map_err(|why| too_small(g, step, e, why))?
        }
        Op::Quantize { x } | Op::Dequantize { x }
            if matches!(
                g.ty(*x).quant.as_ref().or(node.ty.quant.as_ref()),
                Some(crate::ir::Quant::PerChannel { .. })
            ) =>
        {
            let dequant = matches!(node.op, Op::Dequantize { .. });
            let q = if dequant { g.ty(*x) } else { &node.ty };
            let Some(crate::ir::Quant::PerChannel { scales, axis, .. }) = &q.quant else {
                return Err(LowerError::Internal(
                    "per-channel quantization expected".into(),
                ));
            };
            if !q.quant.as_ref().is_some_and(|q| q.symmetric()) {
                return Err(LowerError::Unsupported {
                    name: node.name.clone(),
                    op: node.op.name(),
                    why: "per-channel zero points of a run-time quantize/dequantize (constants fold at compile time)".into(),
                });
            }
            let sl = e.constant(&f32_bytes(scales));
            let xl = loc(g, plan, e, *x)?;
            quantize_axis(e, xl, out, &q.shape, *axis, sl, dequant)
                .map_err(|why| too_small(g, step, e, why))?
        }
        Op::Quantize { x } => {
            let (scale, zp) = per_tensor(&node.ty);
            let xl = loc(g, plan, e, *x)?;
            quantize(e, xl, out, node.ty.elems(), scale, zp)
                .map_err(|why| too_small(g, step, e, why))?
        }
        Op::Dequantize { x } => {
            let (scale, zp) = per_tensor(g.ty(*x));
            let xl = loc(g, plan, e, *x)?;
            dequantize(e, xl, out, node.ty.elems(), scale, zp)
                .map_err(|why| too_small(g, step, e, why))?
        }
        Op::Softmax { x, axis } => {
            let shape = &node.ty.shape;
            if *axis + 1 != shape.len() {
                return Err(LowerError::Unsupported {
                    name: node.name.clone(),
                    op: "softmax",
                    why: format!(
                        "only the last axis ({}) is lowered; got axis {axis}",
                        shape.len() - 1
                    ),
                });
            }
            let cols = shape[*axis];
            let rows = node.ty.elems() / cols;
            let xl = loc(g, plan, e, *x)?;
            let q =
                (node.ty.dtype == DType::I8).then(|| (per_tensor(g.ty(*x)), per_tensor(&node.ty)));
            softmax(e, xl, out, rows, cols, q).map_err(|why| too_small(g, step, e, why))?
        }
        Op::BatchMatMul { .. } => super::xformer::batch_matmul(g, plan, step, e)?,
        Op::Gather { table, indices } => {
            let (tl, il) = (loc(g, plan, e, *table)?, loc(g, plan, e, *indices)?);
            super::xformer::gather(g, step, e, tl, il, out)?
        }
        Op::LayerNorm {
            x,
            scale,
            bias,
            epsilon,
        } => {
            let xl = loc(g, plan, e, *x)?;
            let sl = loc(g, plan, e, *scale)?;
            let bl = bias.map(|b| loc(g, plan, e, b)).transpose()?;
            super::xformer::layer_norm(g, step, e, xl, sl, bl, *epsilon, out)?
        }
        Op::Reduce { kind, x, axes, .. } => {
            let shape = &g.ty(*x).shape;
            let (first, last) = (axes[0], axes[axes.len() - 1]);
            if last + 1 - first != axes.len() {
                // ir::passes::decompose splits separated axes.
                return Err(LowerError::Internal(format!(
                    "`{}`: reduction over separated axes {axes:?} reached the lowering",
                    node.name
                )));
            }
            let outer: usize = shape[..first].iter().product();
            let len: usize = shape[first..=last].iter().product();
            let inner: usize = shape[last + 1..].iter().product();
            let xl = loc(g, plan, e, *x)?;
            reduce(e, *kind, xl, out, [outer, len, inner])
                .map_err(|why| too_small(g, step, e, why))?
        }
        Op::LogSoftmax { .. } => {
            return Err(LowerError::Internal(format!(
                "`{}`: log_softmax reached the lowering (ir::passes::decompose rewrites it)",
                node.name
            )))
        }
        Op::Where { cond, a, b } => {
            super::select::where_op(g, plan, step, e, [*cond, *a, *b], out)?
        }
    }
    Ok(())
}

/// Reduce `x`, viewed as `[outer, len, inner]`, over the middle axis into
/// `out` (`[outer, inner]`). With `inner == 1` the tile is rows of `outer`
/// x a chunk of `len` reduced along columns; otherwise, per outer index, a
/// chunk of `len` rows x `inner` columns reduced along rows. Chunks of a
/// `len` that does not fit combine in an accumulator vector (BINARY add or
/// max). Min is max of the negated values, negated; mean divides the sum
/// by `len` (correctly rounded) at the end.
fn reduce(
    e: &mut Emitter,
    kind: crate::ir::ReduceKind,
    x: Loc,
    out: Loc,
    [outer, len, inner]: [usize; 3],
) -> Result<(), String> {
    use crate::ir::ReduceKind;
    let nb = e.nbuf();
    let along_cols = inner == 1;
    // The tile: `tr` x `tc` elements; the result vector `nv` long.
    // along_cols: tr outputs (rows) x tc of len; else tr of len x tc outputs.
    let (mut tr, mut tc) = if along_cols {
        (outer, len.min(8192))
    } else {
        (len, inner.min(8192))
    };
    tr = tr.min((16384 / tc).max(1));
    let (tiles, acc, part) = loop {
        e.sram_reset();
        let nv = if along_cols { tr } else { tc };
        if let (Ok(t), Ok(a), Ok(p)) = (
            e.sram_alloc((tr * tc * 4) as u64, nb),
            e.sram_alloc((nv * 4) as u64, 1),
            e.sram_alloc((nv * 4) as u64, 1),
        ) {
            break (t, a.at(0), p.at(0));
        }
        if tr == 1 && tc == 1 {
            return Err("one element does not fit".into());
        }
        // Shrink the reduced dimension last: its chunks cost an extra add.
        let (keep, shrink) = if along_cols {
            (&mut tc, &mut tr)
        } else {
            (&mut tr, &mut tc)
        };
        if *shrink > 1 {
            *shrink = shrink.div_ceil(2);
        } else {
            *keep = keep.div_ceil(2);
        }
    };
    // Blocks of outputs, each over `chunks` chunks of the reduced axis.
    let (blocks_per_outer, chunks, chunk_len) = if along_cols {
        (outer.div_ceil(tr), len.div_ceil(tc), tc)
    } else {
        (inner.div_ceil(tc), len.div_ceil(tr), tr)
    };
    let outers = if along_cols { 1 } else { outer };
    let steps = outers * blocks_per_outer * chunks;
    // Step s: (outer index, first output, outputs, first of len, its count).
    let dims = |s: usize| {
        let (o, rest) = (
            s / (blocks_per_outer * chunks),
            s % (blocks_per_outer * chunks),
        );
        let (b, c) = (rest / chunks, rest % chunks);
        let (v0, nv) = if along_cols {
            chunk(b, tr, outer)
        } else {
            chunk(b, tc, inner)
        };
        let (l0, nl) = chunk(c, chunk_len, len);
        (o, v0, nv, l0, nl, c)
    };
    let f = isa::DType::F32;
    let op = match kind {
        ReduceKind::Max | ReduceKind::Min => ReduceOp::Max,
        ReduceKind::Sum | ReduceKind::Mean => ReduceOp::Sum,
    };
    let scalar = |e: &mut Emitter, op, rows: usize, cols: usize, t: Tile, v: f32| {
        e.push(Insn::Binary {
            op,
            dtype: f,
            bcast: Broadcast::Scalar,
            rows: rows as u32,
            cols: cols as u32,
            a: t,
            b: t,
            out: t,
            scalar: v.to_bits(),
        })
    };
    e.pipeline(
        steps,
        |e, s, slot| {
            let (o, v0, nv, l0, nl, _) = dims(s);
            // Rows of the tile in memory: along_cols, output rows of `len`;
            // else rows of the reduced axis of `inner`.
            let (off, rows, cols, pitch) = if along_cols {
                (v0 * len + l0, nv, nl, len)
            } else {
                (o * len * inner + l0 * inner + v0, nl, nv, inner)
            };
            e.load(
                x,
                (off * 4) as u64,
                tiles.at(slot),
                Strided::rows((cols * 4) as u32, rows as u32, (pitch * 4) as u32),
                Strided::rows((cols * 4) as u32, rows as u32, (tc * 4) as u32),
            );
            Ok(())
        },
        |e, s, slot| {
            let (o, v0, nv, _, nl, c) = dims(s);
            let (rows, cols) = if along_cols { (nv, nl) } else { (nl, nv) };
            let t = Tile {
                addr: tiles.at(slot),
                ld: tc as u32,
            };
            if kind == ReduceKind::Min {
                scalar(e, isa::BinaryOp::Mul, rows, cols, t, -1.0);
            }
            let dst = if c == 0 { acc } else { part };
            e.push(Insn::Reduce {
                op,
                axis: if along_cols { Axis::Cols } else { Axis::Rows },
                dtype: f,
                rows: rows as u32,
                cols: cols as u32,
                src: t,
                dst,
            });
            let v = Tile {
                addr: acc,
                ld: nv as u32,
            };
            if c > 0 {
                e.push(Insn::Binary {
                    op: if op == ReduceOp::Max {
                        isa::BinaryOp::Max
                    } else {
                        isa::BinaryOp::Add
                    },
                    dtype: f,
                    bcast: Broadcast::None,
                    rows: 1,
                    cols: nv as u32,
                    a: v,
                    b: Tile {
                        addr: part,
                        ld: nv as u32,
                    },
                    out: v,
                    scalar: 0,
                });
            }
            if c + 1 < chunks {
                return Ok(());
            }
            match kind {
                ReduceKind::Min => scalar(e, isa::BinaryOp::Mul, 1, nv, v, -1.0),
                ReduceKind::Mean => scalar(e, isa::BinaryOp::Div, 1, nv, v, len as f32),
                _ => {}
            }
            e.store(
                out,
                ((o * inner + v0) * 4) as u64,
                acc,
                Strided::contiguous((nv * 4) as u32),
                Strided::contiguous((nv * 4) as u32),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// The int8 side of a direct conv2d (constant weights and bias).
fn conv_int8(
    g: &Graph,
    step: &Step,
    input: ValueId,
    weight: ValueId,
    groups: usize,
) -> R<super::conv::QConv> {
    let node = g.node(step.node);
    let ws = &g.ty(weight).shape;
    let (k, taps) = (ws[0], ws[1] * ws[2] * ws[3]);
    let depthwise = ws[1] == 1 && groups > 1 && k == groups;
    // Depthwise subtracts the zero points on the device; otherwise the
    // input zero point's terms fold into the bias.
    let sums = if depthwise {
        Some(vec![0; k])
    } else {
        int8_sums(g, weight, |i| i / taps, k)
    };
    let (bias, scales) = int8_channel_consts(g, node, k, sums, if depthwise { 0 } else { taps })?;
    let per_channel = matches!(
        g.ty(weight).quant,
        Some(crate::ir::Quant::PerChannel { .. })
    );
    let (lo, hi) = match step.activation {
        Some(act) => int8_clamp_bounds(act, &node.ty),
        None => (-128, 127),
    };
    Ok(super::conv::QConv {
        zx: g.ty(input).quant.as_ref().map_or(0, |q| q.zero_point()),
        zw: weight_zero_points(g.ty(weight), k),
        bias: bias.ok_or_else(|| LowerError::Internal("a constant bias was expected".into()))?,
        scales: if per_channel {
            Ok(scales)
        } else {
            Err(scales[0])
        },
        zero_point: node.ty.quant.as_ref().map_or(0, |q| q.zero_point()),
        lo,
        hi,
    })
}

/// Per output channel, the zero point of an int8 weight (the same for
/// every channel when it is quantized per tensor).
pub(super) fn weight_zero_points(tw: &crate::ir::TensorType, channels: usize) -> Vec<i8> {
    (0..channels)
        .map(|c| tw.quant.as_ref().map_or(0, |q| q.zero_point_of(c)))
        .collect()
}

/// Per output channel, the sum of a constant int8 weight's values
/// (`channel_of` maps an element index to its channel); None when `v` is
/// not an int8 constant.
pub(super) fn int8_sums(
    g: &Graph,
    v: ValueId,
    channel_of: impl Fn(usize) -> usize,
    channels: usize,
) -> Option<Vec<i64>> {
    match g.constant_data(v)? {
        crate::reference::TensorData::I8(d) => {
            let mut sums = vec![0i64; channels];
            for (i, &x) in d.iter().enumerate() {
                sums[channel_of(i)] += x as i64;
            }
            Some(sums)
        }
        _ => None,
    }
}

/// Where operand `v` lies: its planned place, or for a constant its
/// bytes as they are, packed into the constant buffer.
pub(super) fn loc(g: &Graph, plan: &Plan, e: &mut Emitter, v: ValueId) -> R<Loc> {
    match g.constant_data(v) {
        Some(d) => Ok(e.constant_value(v, d)),
        None => plan.loc(v),
    }
}

pub(super) fn too_small(g: &Graph, step: &Step, e: &Emitter, why: String) -> LowerError {
    let n = g.node(step.node);
    LowerError::SramTooSmall {
        name: n.name.clone(),
        op: n.op.name(),
        sram: e.params.sram_size,
        why,
    }
}

/// Result side of a gemm/conv2d: f32 with optional fused activation, or
/// int8 with its requantization (and the activation folded into the clamp).
struct Mac {
    dtype: DType,
    act: Option<UnaryOp>,
    /// An f32 elementwise chain after the bias (instead of `act`).
    chain: Option<super::chain::Chain>,
    q: Option<QuantOut>,
}

/// The int8 epilogue's constants, precomputed into the constant buffer:
/// per output channel the i32 bias with the zero-point corrections folded
/// in, and the f32 requantization scale (one DMA each per tile).
#[derive(Clone, Copy)]
struct QuantOut {
    bias: Option<Loc>,
    /// The per-channel scales, or the one per-tensor scale (an immediate).
    scales: Result<Loc, f32>,
    zero_point: i8,
    lo: i8,
    hi: i8,
}

/// Per output channel, the int8 bias with the zero-point corrections
/// (None: the bias is a run-time value, added as it is) and the
/// requantization scale. `weight_sums`: per channel, the sum of its
/// weights; `taps`: weights per channel.
pub(super) fn int8_channel_consts(
    g: &Graph,
    node: &crate::ir::Node,
    channels: usize,
    weight_sums: Option<Vec<i64>>,
    taps: usize,
) -> R<(Option<Vec<i32>>, Vec<f32>)> {
    let ops = node.op.operands();
    let unsupported = |why: String| LowerError::Unsupported {
        name: node.name.clone(),
        op: node.op.name(),
        why,
    };
    let (tx, tw) = (g.ty(ops[0]), g.ty(ops[1]));
    let scales = requant_scales(tx, tw, &node.ty, channels).map_err(unsupported)?;
    let zx = tx.quant.as_ref().map_or(0, |q| q.zero_point() as i64);
    let zw = |c: usize| tw.quant.as_ref().map_or(0, |q| q.zero_point_of(c) as i64);
    let bias_v = match &node.op {
        Op::Gemm { bias, .. } | Op::Conv2d { bias, .. } => *bias,
        _ => None,
    };
    let mut bias: Vec<i64> = match bias_v.map(|b| g.constant_data(b)) {
        None => vec![0; channels],
        Some(Some(crate::reference::TensorData::I32(v))) => v.iter().map(|&x| x as i64).collect(),
        // A bias computed at run time is added as it is.
        Some(_) if zx == 0 => return Ok((None, scales)),
        Some(_) => {
            return Err(unsupported(
                "with a non-zero input zero point the int8 bias must be a constant (the zero-point corrections are folded into it)"
                    .into(),
            ))
        }
    };
    if zx != 0 {
        let sums = weight_sums.ok_or_else(|| {
            unsupported("a non-zero input zero point needs constant weights".into())
        })?;
        for (c, (b, sw)) in bias.iter_mut().zip(sums).enumerate() {
            // sum (x - zx)(w - zw) = sum x (w - zw) - zx sum w + n zx zw;
            // the first term is what the device accumulates.
            *b += -zx * sw + taps as i64 * zx * zw(c);
        }
    }
    // Modulo 2^32, like the device's i32 arithmetic.
    Ok((Some(bias.iter().map(|&b| b as i32).collect()), scales))
}

impl Mac {
    /// `weight_sums`: per output channel, the sum of its (raw) weights,
    /// when the weights are constants; `taps`: weights per channel;
    /// `graph_bias`: where the graph's bias lies.
    #[allow(clippy::too_many_arguments)]
    fn new(
        g: &Graph,
        step: &Step,
        dtype: DType,
        channels: usize,
        e: &mut Emitter,
        weight_sums: Option<Vec<i64>>,
        taps: usize,
        graph_bias: Option<Loc>,
    ) -> R<Mac> {
        let node = g.node(step.node);
        let q = if dtype == DType::I8 {
            let (bias, scales) = int8_channel_consts(g, node, channels, weight_sums, taps)?;
            let (lo, hi) = match step.activation {
                Some(act) => int8_clamp_bounds(act, &node.ty),
                None => (-128, 127),
            };
            let per_channel = matches!(
                g.ty(node.op.operands()[1]).quant,
                Some(crate::ir::Quant::PerChannel { .. })
            );
            let bias = match bias {
                Some(b) => b
                    .iter()
                    .any(|&x| x != 0)
                    .then(|| e.constant(&i32_bytes(&b))),
                None => graph_bias,
            };
            let scales = if per_channel {
                Ok(e.constant(&f32_bytes(&scales)))
            } else {
                Err(scales[0])
            };
            Some(QuantOut {
                bias,
                scales,
                zero_point: node.ty.quant.as_ref().map_or(0, |q| q.zero_point()),
                lo,
                hi,
            })
        } else {
            None
        };
        Ok(Mac {
            dtype,
            act: step.activation,
            chain: step.chain.clone(),
            q,
        })
    }
    fn es(&self) -> u64 {
        self.dtype.size() as u64
    }
    fn isa_dtype(&self) -> isa::DType {
        if self.dtype == DType::I8 {
            isa::DType::I8
        } else {
            isa::DType::F32
        }
    }
    /// The bias the epilogue adds: the int8 one with its corrections, or
    /// the f32 graph value.
    fn bias(&self, f32_bias: Option<Loc>) -> Option<Loc> {
        match &self.q {
            Some(q) => q.bias,
            None => f32_bias,
        }
    }
}

pub(super) fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The int8 requantization of an i32 accumulator tile in place, as ONNX
/// (onnxruntime) defines it: `+ bias`, to f32, `* scale`, round half to
/// even, `+ zp`, saturate to `[lo, hi]`; the i8 result goes to `dst`.
/// `bcast` says whether channels are the tile's columns (PerCol) or rows
/// (PerRow); `bias` and `scales` are SRAM vectors, one per channel.
#[allow(clippy::too_many_arguments)]
pub(super) fn requant_tile(
    e: &mut Emitter,
    bcast: Broadcast,
    rows: u32,
    cols: u32,
    acc: Tile,
    dst: Tile,
    bias: Option<u32>,
    scales: Result<u32, f32>,
    zero_point: i8,
    lo: i8,
    hi: i8,
) {
    if let Some(b) = bias {
        e.push(Insn::Binary {
            op: isa::BinaryOp::Add,
            dtype: isa::DType::I32,
            bcast,
            rows,
            cols,
            a: acc,
            b: Tile { addr: b, ld: 0 },
            out: acc,
            scalar: 0,
        });
    }
    e.push(Insn::Convert {
        conv: Conversion::I32ToF32,
        rows,
        cols,
        src: acc,
        dst: acc,
        zero_point: 0,
        scale: 0.0,
    });
    let (bc, b, scalar) = match scales {
        Ok(addr) => (bcast, Tile { addr, ld: 0 }, 0),
        Err(s) => (Broadcast::Scalar, acc, s.to_bits()),
    };
    e.push(Insn::Binary {
        op: isa::BinaryOp::Mul,
        dtype: isa::DType::F32,
        bcast: bc,
        rows,
        cols,
        a: acc,
        b,
        out: acc,
        scalar,
    });
    e.push(Insn::Convert {
        conv: Conversion::F32ToI32,
        rows,
        cols,
        src: acc,
        dst: acc,
        zero_point: 0,
        scale: 0.0,
    });
    // The identity multiplier (2 >> 1): add the zero point and saturate.
    e.push(Insn::Requant {
        rows,
        cols,
        src: acc,
        dst,
        mult: 2,
        per_channel: false,
        bias: None,
        shift: 1,
        zero_point,
        lo,
        hi,
    });
}

/// SRAM slots of a gemm/conv2d epilogue for `tn` channels of `rows` rows.
#[derive(Clone, Copy)]
struct Epilogue {
    acc: Slots,
    bias: Slots,
    mult: Slots,
    out8: Slots,
    /// The chain's registers after the accumulator (register 0).
    regs: Option<Slots>,
}

impl Epilogue {
    fn alloc(e: &mut Emitter, mac: &Mac, rows: u64, tn: u64, nb: u32) -> Result<Epilogue, ()> {
        let acc = e.sram_alloc(rows * tn * 4, nb)?;
        let bias = e.sram_alloc(tn * 4, nb)?;
        let (mult, out8) = if mac.q.is_some() {
            (e.sram_alloc(tn * 4, nb)?, e.sram_alloc(rows * tn, nb)?)
        } else {
            (bias, acc)
        };
        let regs = match &mac.chain {
            Some(c) if c.regs > 1 => Some(e.sram_alloc(rows * tn * 4, (c.regs - 1) as u32)?),
            _ => None,
        };
        Ok(Epilogue {
            acc,
            bias,
            mult,
            out8,
            regs,
        })
    }

    /// Load the bias and scale slices for channels `c0..c0+tn` into `slot`.
    fn load_consts(
        &self,
        e: &mut Emitter,
        mac: &Mac,
        bias: Option<Loc>,
        c0: usize,
        tn: usize,
        slot: u32,
    ) {
        let bytes = (tn * 4) as u32;
        if let Some(bl) = mac.bias(bias) {
            e.load(
                bl,
                (c0 * 4) as u64,
                self.bias.at(slot),
                Strided::contiguous(bytes),
                Strided::contiguous(bytes),
            );
        }
        if let Some(QuantOut { scales: Ok(sl), .. }) = mac.q {
            e.load(
                sl,
                (c0 * 4) as u64,
                self.mult.at(slot),
                Strided::contiguous(bytes),
                Strided::contiguous(bytes),
            );
        }
    }

    /// Bias, activation, requantization of a `rows x cols` accumulator tile
    /// with leading dimension `tn` (channels are columns); returns the SRAM
    /// address of the result tile (leading dimension `tn`).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        e: &mut Emitter,
        mac: &Mac,
        f32_bias: Option<Loc>,
        rows: u32,
        cols: u32,
        tn: u32,
        slot: u32,
    ) -> u32 {
        let acc = Tile {
            addr: self.acc.at(slot),
            ld: tn,
        };
        match &mac.q {
            None => {
                if f32_bias.is_some() {
                    let b = Tile {
                        addr: self.bias.at(slot),
                        ld: 0,
                    };
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Add,
                        dtype: isa::DType::F32,
                        bcast: Broadcast::PerCol,
                        rows,
                        cols,
                        a: acc,
                        b,
                        out: acc,
                        scalar: 0,
                    });
                }
                if let Some(act) = mac.act {
                    e.push(unary_insn(act, rows, cols, acc, acc));
                }
                match &mac.chain {
                    Some(c) => {
                        let regs: Vec<Tile> = std::iter::once(acc)
                            .chain((1..c.regs).map(|r| Tile {
                                addr: self.regs.map_or(acc.addr, |s| s.at(r as u32 - 1)),
                                ld: tn,
                            }))
                            .collect();
                        c.emit(e, rows, cols, &regs, &[]);
                        regs[c.out as usize].addr
                    }
                    None => acc.addr,
                }
            }
            Some(q) => {
                let dst = Tile {
                    addr: self.out8.at(slot),
                    ld: tn,
                };
                requant_tile(
                    e,
                    Broadcast::PerCol,
                    rows,
                    cols,
                    acc,
                    dst,
                    q.bias.map(|_| self.bias.at(slot)),
                    q.scales.map(|_| self.mult.at(slot)),
                    q.zero_point,
                    q.lo,
                    q.hi,
                );
                dst.addr
            }
        }
    }
}

pub(super) fn unary_insn(op: UnaryOp, rows: u32, cols: u32, src: Tile, dst: Tile) -> Insn {
    let (op, lo, hi) = match op {
        UnaryOp::Relu => (isa::UnaryOp::Relu, 0, 0),
        UnaryOp::Clamp { lo, hi } => (isa::UnaryOp::Clamp, lo.to_bits(), hi.to_bits()),
        UnaryOp::Sigmoid => (isa::UnaryOp::Sigmoid, 0, 0),
        UnaryOp::Tanh => (isa::UnaryOp::Tanh, 0, 0),
        UnaryOp::Exp => (isa::UnaryOp::Exp, 0, 0),
        UnaryOp::Sqrt => (isa::UnaryOp::Sqrt, 0, 0),
        UnaryOp::Reciprocal => (isa::UnaryOp::Recip, 0, 0),
        UnaryOp::Rsqrt => (isa::UnaryOp::Rsqrt, 0, 0),
        UnaryOp::Log => (isa::UnaryOp::Log, 0, 0),
        UnaryOp::Erf => (isa::UnaryOp::Erf, 0, 0),
        UnaryOp::Gelu => (isa::UnaryOp::Gelu, 0, 0),
        UnaryOp::GeluTanh => (isa::UnaryOp::GeluTanh, 0, 0),
        UnaryOp::LeakyRelu { alpha } => (isa::UnaryOp::LeakyRelu, alpha.to_bits(), 0),
        UnaryOp::Elu { alpha } => (isa::UnaryOp::Elu, alpha.to_bits(), 0),
        UnaryOp::HardSigmoid { alpha, beta } => {
            (isa::UnaryOp::HardSigmoid, alpha.to_bits(), beta.to_bits())
        }
        UnaryOp::HardSwish { alpha, beta } => {
            (isa::UnaryOp::HardSwish, alpha.to_bits(), beta.to_bits())
        }
    };
    Insn::Unary {
        op,
        dtype: isa::DType::F32,
        rows,
        cols,
        src,
        dst,
        lo,
        hi,
    }
}

struct GemmSpec {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    a: Loc,
    b: Loc,
    bias: Option<Loc>,
    out: Loc,
    /// The int8 second operand's zero point: its correction
    /// `-zb * sum_k a[m][k]` needs the row sums of A, one more (n = 1)
    /// MATMUL by a vector of ones per step.
    zb: i8,
    /// Per-column zero points of B (i32, one per output channel) when they
    /// differ: the correction is then the outer product `-zb[n] * sum_k
    /// a[m][k]`, built in a temporary tile (FILL, add the row sums per
    /// row, multiply by zb per column, subtract).
    zb_cols: Option<Loc>,
}

/// Tiled gemm: output tiles tm x tn, the K dimension in chunks of tk
/// accumulated in SRAM; A and B tiles stream through `nbuf` slots.
fn gemm(e: &mut Emitter, s: &GemmSpec, mac: &Mac) -> Result<(), String> {
    let es = mac.es();
    let nb = e.nbuf();
    let (mut tm, mut tn, mut tk) = (s.m.min(128), s.n.min(128), s.k.min(256));
    let row_sums = s.zb != 0 || s.zb_cols.is_some();
    type GemmSlots = (
        Slots,
        Slots,
        Epilogue,
        Option<(Slots, Slots)>,
        Option<(Slots, Slots)>,
    );
    let fits = |e: &mut Emitter, tm: usize, tn: usize, tk: usize| -> Option<GemmSlots> {
        e.sram_reset();
        let a = e.sram_alloc(tm as u64 * tk as u64 * es, nb).ok()?;
        let b = e.sram_alloc(tk as u64 * tn as u64 * es, nb).ok()?;
        let ep = Epilogue::alloc(e, mac, tm as u64, tn as u64, nb).ok()?;
        let sums = if row_sums {
            Some((
                e.sram_alloc((tk as u64).next_multiple_of(4), 1).ok()?,
                e.sram_alloc(tm as u64 * 4, nb).ok()?,
            ))
        } else {
            None
        };
        // Per-column zero points: their slice and the correction tile.
        let outer = if s.zb_cols.is_some() {
            Some((
                e.sram_alloc(tn as u64 * 4, nb).ok()?,
                e.sram_alloc(tm as u64 * tn as u64 * 4, 1).ok()?,
            ))
        } else {
            None
        };
        Some((a, b, ep, sums, outer))
    };
    let (sa, sb, ep, sums, outer) = loop {
        if let Some(x) = fits(e, tm, tn, tk) {
            break x;
        }
        if tm == 1 && tn == 1 && tk == 1 {
            return Err("a 1x1x1 gemm tile does not fit".into());
        }
        // Shrink the largest dimension first: keeps tiles square-ish.
        if tk >= tm && tk >= tn {
            tk = tk.div_ceil(2);
        } else if tm >= tn {
            tm = tm.div_ceil(2);
        } else {
            tn = tn.div_ceil(2);
        }
    };
    log::debug!(
        "gemm {}x{}x{}: tiles {tm}x{tn}x{tk}, {nb} buffers",
        s.m,
        s.n,
        s.k
    );
    let (mt, nt, kt) = (s.m.div_ceil(tm), s.n.div_ceil(tn), s.k.div_ceil(tk));
    let steps = mt * nt * kt;
    if let Some((ones, _)) = sums {
        e.push(Insn::Fill {
            dst: ones.at(0),
            len: (tk as u32).next_multiple_of(4),
            pattern: 0x0101_0101,
        });
    }
    let dims = |st: usize| {
        let (tile, kk) = (st / kt, st % kt);
        let (mi, ni) = (tile / nt, tile % nt);
        let (m0, n0, k0) = (mi * tm, ni * tn, kk * tk);
        (
            tile,
            kk,
            m0,
            n0,
            k0,
            (s.m - m0).min(tm),
            (s.n - n0).min(tn),
            (s.k - k0).min(tk),
        )
    };
    let (m, n, k) = (s.m as u64, s.n as u64, s.k as u64);
    let ld_b = if s.trans_b { tk } else { tn } as u32;
    let r = e.pipeline(
        steps,
        |e, st, slot| {
            let (tile, kk, m0, n0, k0, cm, cn, ck) = dims(st);
            let (m0, n0, k0, cm, cn, ck) = (
                m0 as u64, n0 as u64, k0 as u64, cm as u32, cn as u32, ck as u32,
            );
            let e32 = es as u32;
            if s.trans_a {
                // A is [K, M]: gather the tile element by element (rows of one
                // element), transposing on the way in.
                e.load(
                    s.a,
                    (k0 * m + m0) * es,
                    sa.at(slot),
                    Strided {
                        shape: [e32, ck, cm],
                        stride: [m as u32 * e32, e32],
                    },
                    Strided {
                        shape: [e32, ck, cm],
                        stride: [e32, tk as u32 * e32],
                    },
                );
            } else {
                e.load(
                    s.a,
                    (m0 * k + k0) * es,
                    sa.at(slot),
                    Strided::rows(ck * e32, cm, k as u32 * e32),
                    Strided::rows(ck * e32, cm, tk as u32 * e32),
                );
            }
            if s.trans_b {
                e.load(
                    s.b,
                    (n0 * k + k0) * es,
                    sb.at(slot),
                    Strided::rows(ck * e32, cn, k as u32 * e32),
                    Strided::rows(ck * e32, cn, ld_b * e32),
                );
            } else {
                e.load(
                    s.b,
                    (k0 * n + n0) * es,
                    sb.at(slot),
                    Strided::rows(cn * e32, ck, n as u32 * e32),
                    Strided::rows(cn * e32, ck, ld_b * e32),
                );
            }
            if kk == 0 {
                ep.load_consts(
                    e,
                    mac,
                    s.bias,
                    n0 as usize,
                    cn as usize,
                    (tile % nb as usize) as u32,
                );
                if let (Some((zs, _)), Some(zl)) = (outer, s.zb_cols) {
                    e.load(
                        zl,
                        n0 * 4,
                        zs.at((tile % nb as usize) as u32),
                        Strided::contiguous(cn * 4),
                        Strided::contiguous(cn * 4),
                    );
                }
            }
            Ok(())
        },
        |e, st, slot| {
            let (tile, kk, m0, n0, _k0, cm, cn, ck) = dims(st);
            let cslot = (tile % nb as usize) as u32;
            e.push(Insn::Matmul {
                dtype: mac.isa_dtype(),
                accumulate: kk > 0,
                transpose_b: s.trans_b,
                m: cm as u32,
                n: cn as u32,
                k: ck as u32,
                a: Tile {
                    addr: sa.at(slot),
                    ld: tk as u32,
                },
                b: Tile {
                    addr: sb.at(slot),
                    ld: ld_b,
                },
                c: Tile {
                    addr: ep.acc.at(cslot),
                    ld: tn as u32,
                },
            });
            if let Some((ones, rs)) = sums {
                let rs = Tile {
                    addr: rs.at(cslot),
                    ld: 1,
                };
                e.push(Insn::Matmul {
                    dtype: isa::DType::I8,
                    accumulate: kk > 0,
                    transpose_b: false,
                    m: cm as u32,
                    n: 1,
                    k: ck as u32,
                    a: Tile {
                        addr: sa.at(slot),
                        ld: tk as u32,
                    },
                    b: Tile {
                        addr: ones.at(0),
                        ld: 1,
                    },
                    c: rs,
                });
                if let (true, Some((zs, tmp))) = (kk + 1 == kt, outer) {
                    // acc[m][n] -= zb[n] * sum_k a[m][k]
                    let t = Tile {
                        addr: tmp.at(0),
                        ld: tn as u32,
                    };
                    e.push(Insn::Fill {
                        dst: t.addr,
                        len: (tm * tn * 4) as u32,
                        pattern: 0,
                    });
                    for (op, bcast, b) in [
                        (isa::BinaryOp::Add, Broadcast::PerRow, rs),
                        (
                            isa::BinaryOp::Mul,
                            Broadcast::PerCol,
                            Tile {
                                addr: zs.at(cslot),
                                ld: 0,
                            },
                        ),
                    ] {
                        e.push(Insn::Binary {
                            op,
                            dtype: isa::DType::I32,
                            bcast,
                            rows: cm as u32,
                            cols: cn as u32,
                            a: t,
                            b,
                            out: t,
                            scalar: 0,
                        });
                    }
                    let acc = Tile {
                        addr: ep.acc.at(cslot),
                        ld: tn as u32,
                    };
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Sub,
                        dtype: isa::DType::I32,
                        bcast: Broadcast::None,
                        rows: cm as u32,
                        cols: cn as u32,
                        a: acc,
                        b: t,
                        out: acc,
                        scalar: 0,
                    });
                } else if kk + 1 == kt {
                    // acc[m][n] -= zb * sum_k a[m][k]
                    let row = Tile {
                        addr: rs.addr,
                        ld: cm as u32,
                    };
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Mul,
                        dtype: isa::DType::I32,
                        bcast: Broadcast::Scalar,
                        rows: 1,
                        cols: cm as u32,
                        a: row,
                        b: row,
                        out: row,
                        scalar: s.zb as i32 as u32,
                    });
                    let acc = Tile {
                        addr: ep.acc.at(cslot),
                        ld: tn as u32,
                    };
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Sub,
                        dtype: isa::DType::I32,
                        bcast: Broadcast::PerRow,
                        rows: cm as u32,
                        cols: cn as u32,
                        a: acc,
                        b: rs,
                        out: acc,
                        scalar: 0,
                    });
                }
            }
            if kk + 1 == kt {
                let res = ep.apply(e, mac, s.bias, cm as u32, cn as u32, tn as u32, cslot);
                let oes = if mac.q.is_some() { 1 } else { 4 };
                e.store(
                    s.out,
                    (m0 as u64 * n + n0 as u64) * oes,
                    res,
                    Strided::rows(cn as u32 * oes as u32, cm as u32, n as u32 * oes as u32),
                    Strided::rows(cn as u32 * oes as u32, cm as u32, tn as u32 * oes as u32),
                );
            }
            Ok(())
        },
    );
    r.map_err(|e| e.to_string())
}

struct ConvSpec {
    x: Vec<usize>,
    w: Vec<usize>,
    out_hw: [usize; 2],
    win: Window,
    groups: usize,
    xl: Loc,
    wl: Loc,
    bl: Option<Loc>,
    out: Loc,
    /// The padding's byte (the int8 input's zero point: real 0).
    pad_byte: i8,
}

/// Conv2d as the spec's recipe: per (image, group, channel chunk, band of
/// output rows): FILL a zero-padded input band, DMA the valid rows into it,
/// gather im2col^T (pixels x taps) with strided COPYs, MATMUL by the filter
/// (transposed, so channels are columns and bias/requant work per column),
/// then store the pixels x channels tile transposed back to NCHW.
fn conv2d(e: &mut Emitter, s: &ConvSpec, mac: &Mac) -> Result<(), String> {
    let es = mac.es();
    let nb = e.nbuf();
    let (n, c, h, w) = (s.x[0], s.x[1], s.x[2], s.x[3]);
    let (k, cg, r, sw) = (s.w[0], s.w[1], s.w[2], s.w[3]);
    let (oh, ow) = (s.out_hw[0], s.out_hw[1]);
    let kg = k / s.groups;
    let crs = cg * r * sw;
    let wp = w + 2 * s.win.padding[1];
    let band_h = |rows: usize| (rows - 1) * s.win.stride[0] + (r - 1) * s.win.dilation[0] + 1;
    let (mut rows, mut kc) = (oh, kg.min(128));
    let fits =
        |e: &mut Emitter, rows: usize, kc: usize| -> Option<(Slots, Slots, Slots, Epilogue)> {
            e.sram_reset();
            let p = (rows * ow) as u64;
            let band = e
                .sram_alloc(
                    ((cg * band_h(rows) * wp) as u64 * es).next_multiple_of(4),
                    nb,
                )
                .ok()?;
            let cols = e.sram_alloc(p * crs as u64 * es, nb).ok()?;
            let wt = e.sram_alloc((kc * crs) as u64 * es, nb).ok()?;
            let ep = Epilogue::alloc(e, mac, p, kc as u64, nb).ok()?;
            Some((band, cols, wt, ep))
        };
    let (sband, scols, swt, ep) = loop {
        if let Some(x) = fits(e, rows, kc) {
            break x;
        }
        if rows == 1 && kc == 1 {
            return Err(format!(
                "one output row of {ow} pixels with {crs} taps per channel does not fit"
            ));
        }
        if rows > 1 {
            rows = rows.div_ceil(2);
        } else {
            kc = kc.div_ceil(2);
        }
    };
    log::debug!("conv2d: bands of {rows} output rows, {kc} channels per chunk, {nb} buffers");
    let (bands, chunks) = (oh.div_ceil(rows), kg.div_ceil(kc));
    let steps = n * s.groups * chunks * bands;
    // Step order: image, group, channel chunk, band.
    let dims = |st: usize| {
        let band = st % bands;
        let chunk = (st / bands) % chunks;
        let grp = (st / bands / chunks) % s.groups;
        let img = st / bands / chunks / s.groups;
        let y0 = band * rows;
        (
            img,
            grp,
            chunk * kc,
            (kg - chunk * kc).min(kc),
            y0,
            (oh - y0).min(rows),
        )
    };
    let e32 = es as u32;
    e.pipeline(
        steps,
        |e, st, slot| {
            let (img, grp, k0, kcn, y0, nrows) = dims(st);
            let bh = band_h(nrows);
            let band = sband.at(slot);
            let fill_len = ((cg * bh * wp) as u64 * es).next_multiple_of(4) as u32;
            e.push(Insn::Fill {
                dst: band,
                len: fill_len,
                pattern: u32::from_ne_bytes([s.pad_byte as u8; 4]),
            });
            // Input rows iy_lo..iy_lo+bh of the padded image; load the ones
            // that exist.
            let iy_lo = (y0 * s.win.stride[0]) as isize - s.win.padding[0] as isize;
            let first = iy_lo.max(0) as usize;
            let last = ((iy_lo + bh as isize).min(h as isize)).max(first as isize) as usize;
            if last > first {
                let off = (((img * c + grp * cg) * h + first) * w) as u64 * es;
                let dst = band
                    + (((first as isize - iy_lo) as usize * wp + s.win.padding[1]) as u64 * es)
                        as u32;
                let rowb = (w as u64 * es) as u32;
                e.load(
                    s.xl,
                    off,
                    dst,
                    Strided {
                        shape: [rowb, (last - first) as u32, cg as u32],
                        stride: [rowb, (h as u64 * w as u64 * es) as u32],
                    },
                    Strided {
                        shape: [rowb, (last - first) as u32, cg as u32],
                        stride: [(wp as u64 * es) as u32, ((bh * wp) as u64 * es) as u32],
                    },
                );
            }
            let wbytes = (kcn * crs) as u32 * e32;
            e.load(
                s.wl,
                ((grp * kg + k0) * crs) as u64 * es,
                swt.at(slot),
                Strided::contiguous(wbytes),
                Strided::contiguous(wbytes),
            );
            ep.load_consts(e, mac, s.bl, grp * kg + k0, kcn, slot);
            Ok(())
        },
        |e, st, slot| {
            let (img, grp, k0, kcn, y0, nrows) = dims(st);
            let bh = band_h(nrows);
            let p = (nrows * ow) as u32;
            let cols = scols.at(slot);
            for ci in 0..cg {
                for ri in 0..r {
                    for si in 0..sw {
                        let tap = (ci * r + ri) * sw + si;
                        let src = sband.at(slot)
                            + ((ci * bh * wp + ri * s.win.dilation[0] * wp + si * s.win.dilation[1])
                                as u64
                                * es) as u32;
                        e.push(Insn::Copy {
                            src,
                            dst: cols + tap as u32 * e32,
                            src_layout: Strided {
                                shape: [e32, ow as u32, nrows as u32],
                                stride: [
                                    (s.win.stride[1] as u32) * e32,
                                    (s.win.stride[0] * wp) as u32 * e32,
                                ],
                            },
                            dst_layout: Strided {
                                shape: [e32, ow as u32, nrows as u32],
                                stride: [crs as u32 * e32, (ow * crs) as u32 * e32],
                            },
                        });
                    }
                }
            }
            e.push(Insn::Matmul {
                dtype: mac.isa_dtype(),
                accumulate: false,
                transpose_b: true,
                m: p,
                n: kcn as u32,
                k: crs as u32,
                a: Tile {
                    addr: cols,
                    ld: crs as u32,
                },
                b: Tile {
                    addr: swt.at(slot),
                    ld: crs as u32,
                },
                c: Tile {
                    addr: ep.acc.at(slot),
                    ld: kc as u32,
                },
            });
            let res = ep.apply(e, mac, s.bl, p, kcn as u32, kc as u32, slot);
            let oes: u32 = if mac.q.is_some() { 1 } else { 4 };
            // Transposed store: SRAM [pixel][channel] -> NCHW, one element per row.
            let off = (((img * k + grp * kg + k0) * oh + y0) * ow) as u64 * oes as u64;
            e.store(
                s.out,
                off,
                res,
                Strided {
                    shape: [oes, kcn as u32, p],
                    stride: [(oh * ow) as u32 * oes, oes],
                },
                Strided {
                    shape: [oes, kcn as u32, p],
                    stride: [oes, kc as u32 * oes],
                },
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// Contiguous chunks of `n` elements: (start, len) of chunk `i`.
pub(super) fn chunk(i: usize, size: usize, n: usize) -> (usize, usize) {
    (i * size, (n - i * size).min(size))
}

/// The int8 operand/result of an op computed in f32 on the tile:
/// ((input scale, zero point), (output scale, zero point)).
type QuantIo = ((f32, i8), (f32, i8));

/// Dequantize an i8 tile to f32 (CONVERT, ONNX DequantizeLinear).
fn widen_i8(e: &mut Emitter, src: Tile, dst: Tile, rows: u32, cols: u32, (scale, zp): (f32, i8)) {
    e.push(Insn::Convert {
        conv: Conversion::I8ToF32,
        rows,
        cols,
        src,
        dst,
        zero_point: zp as i32,
        scale,
    });
}

/// Quantize an f32 tile in place and narrow it to `dst` (ONNX
/// QuantizeLinear: BINARY div, CONVERT f32->i32, REQUANT with the identity
/// multiplier for the zero point and saturation).
fn narrow_f32(e: &mut Emitter, t: Tile, dst: Tile, rows: u32, cols: u32, (scale, zp): (f32, i8)) {
    e.push(Insn::Binary {
        op: isa::BinaryOp::Div,
        dtype: isa::DType::F32,
        bcast: Broadcast::Scalar,
        rows,
        cols,
        a: t,
        b: t,
        out: t,
        scalar: scale.to_bits(),
    });
    e.push(Insn::Convert {
        conv: Conversion::F32ToI32,
        rows,
        cols,
        src: t,
        dst: t,
        zero_point: 0,
        scale: 0.0,
    });
    e.push(Insn::Requant {
        rows,
        cols,
        src: t,
        dst,
        mult: 2,
        per_channel: false,
        bias: None,
        shift: 1,
        zero_point: zp,
        lo: -128,
        hi: 127,
    });
}

/// Elementwise UNARY in chunks; `q`: int8 in memory, dequantized and
/// quantized on the tile.
fn unary_f32(
    e: &mut Emitter,
    op: UnaryOp,
    x: Loc,
    out: Loc,
    n: usize,
    q: Option<QuantIo>,
) -> Result<(), String> {
    let nb = e.nbuf();
    let mut size = n.min(16384);
    let es = if q.is_some() { 1 } else { 4 };
    let (slots, s8) = loop {
        e.sram_reset();
        if let Ok(s) = e.sram_alloc(size as u64 * 4, nb) {
            if q.is_none() {
                break (s, s);
            }
            if let Ok(s8) = e.sram_alloc(size as u64, nb) {
                break (s, s8);
            }
        }
        if size == 1 {
            return Err("one element does not fit".into());
        }
        size = size.div_ceil(2);
    };
    let io = if q.is_some() { s8 } else { slots };
    e.pipeline(
        n.div_ceil(size),
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let b = (l * es) as u32;
            e.load(
                x,
                (o * es) as u64,
                io.at(slot),
                Strided::contiguous(b),
                Strided::contiguous(b),
            );
            Ok(())
        },
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let t = Tile {
                addr: slots.at(slot),
                ld: l as u32,
            };
            let t8 = Tile {
                addr: s8.at(slot),
                ld: l as u32,
            };
            if let Some((qi, _)) = q {
                widen_i8(e, t8, t, 1, l as u32, qi);
            }
            e.push(unary_insn(op, 1, l as u32, t, t));
            if let Some((_, qo)) = q {
                narrow_f32(e, t, t8, 1, l as u32, qo);
            }
            let b = (l * es) as u32;
            e.store(
                out,
                (o * es) as u64,
                io.at(slot),
                Strided::contiguous(b),
                Strided::contiguous(b),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// Int8 relu/clamp: widen to i32, then REQUANT with the identity multiplier
/// (2 >> 1) and the clamp bounds.
fn unary_i8(e: &mut Emitter, x: Loc, out: Loc, n: usize, lo: i8, hi: i8) -> Result<(), String> {
    bytewise(e, x, out, n, false, lo, hi)
}

/// uint8 <-> int8 of the same real values (`Op::SignFlip`): each byte `b`
/// becomes `b ^ 0x80`. Exact in three instructions per tile: CONVERT
/// i8->i32 with zero point -128 gives `s + 128` (s the byte read signed),
/// an i32 multiply by 2^24 (wrapping) leaves its low byte on top, and
/// REQUANT with multiplier 1 and shift 24 brings it down sign-extended,
/// which is `s ^ 0x80` read signed.
fn sign_flip(e: &mut Emitter, x: Loc, out: Loc, n: usize) -> Result<(), String> {
    bytewise(e, x, out, n, true, -128, 127)
}

/// f32 <-> f16/bf16 (`Op::Cast`): one CONVERT per tile, streamed.
fn cast(e: &mut Emitter, conv: Conversion, x: Loc, out: Loc, n: usize) -> Result<(), String> {
    let (ssize, dsize) = conv.sizes();
    let nb = e.nbuf();
    let mut size = n.min(16384);
    let (src, dst) = loop {
        e.sram_reset();
        if let (Ok(a), Ok(b)) = (
            e.sram_alloc(size as u64 * ssize as u64, nb),
            e.sram_alloc(size as u64 * dsize as u64, nb),
        ) {
            break (a, b);
        }
        if size == 1 {
            return Err("one element does not fit".into());
        }
        size = size.div_ceil(2);
    };
    e.pipeline(
        n.div_ceil(size),
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let b = l as u32 * ssize;
            e.load(
                x,
                o as u64 * ssize as u64,
                src.at(slot),
                Strided::contiguous(b),
                Strided::contiguous(b),
            );
            Ok(())
        },
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let tile = |addr| Tile { addr, ld: l as u32 };
            e.push(Insn::Convert {
                conv,
                rows: 1,
                cols: l as u32,
                src: tile(src.at(slot)),
                dst: tile(dst.at(slot)),
                zero_point: 0,
                scale: 0.0,
            });
            let b = l as u32 * dsize;
            e.store(
                out,
                o as u64 * dsize as u64,
                dst.at(slot),
                Strided::contiguous(b),
                Strided::contiguous(b),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// Elementwise over bytes: clamp to `[lo, hi]`, after a sign flip
/// (`flip`, see [`sign_flip`]).
fn bytewise(
    e: &mut Emitter,
    x: Loc,
    out: Loc,
    n: usize,
    flip: bool,
    lo: i8,
    hi: i8,
) -> Result<(), String> {
    let nb = e.nbuf();
    let mut size = n.min(16384);
    let (s8, s32) = loop {
        e.sram_reset();
        if let (Ok(a), Ok(b)) = (
            e.sram_alloc(size as u64, nb),
            e.sram_alloc(size as u64 * 4, nb),
        ) {
            break (a, b);
        }
        if size == 1 {
            return Err("one element does not fit".into());
        }
        size = size.div_ceil(2);
    };
    e.pipeline(
        n.div_ceil(size),
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            e.load(
                x,
                o as u64,
                s8.at(slot),
                Strided::contiguous(l as u32),
                Strided::contiguous(l as u32),
            );
            Ok(())
        },
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let (t8, t32) = (
                Tile {
                    addr: s8.at(slot),
                    ld: l as u32,
                },
                Tile {
                    addr: s32.at(slot),
                    ld: l as u32,
                },
            );
            e.push(Insn::Convert {
                conv: Conversion::I8ToI32,
                rows: 1,
                cols: l as u32,
                src: t8,
                dst: t32,
                zero_point: if flip { -128 } else { 0 },
                scale: 0.0,
            });
            if flip {
                e.push(Insn::Binary {
                    op: isa::BinaryOp::Mul,
                    dtype: isa::DType::I32,
                    bcast: Broadcast::Scalar,
                    rows: 1,
                    cols: l as u32,
                    a: t32,
                    b: t32,
                    out: t32,
                    scalar: 1 << 24,
                });
            }
            let (mult, shift) = if flip { (1, 24) } else { (2, 1) };
            e.push(Insn::Requant {
                rows: 1,
                cols: l as u32,
                src: t32,
                dst: t8,
                mult,
                per_channel: false,
                bias: None,
                shift,
                zero_point: 0,
                lo,
                hi,
            });
            e.store(
                out,
                o as u64,
                s8.at(slot),
                Strided::contiguous(l as u32),
                Strided::contiguous(l as u32),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// How the second operand of a binary op maps onto the ISA's broadcasts,
/// viewing the output as `rows x cols`.
fn classify(out: &[usize], b: &[usize]) -> Option<(usize, usize, Broadcast)> {
    let total: usize = out.iter().product();
    let mut bp = vec![1; out.len() - b.len()];
    bp.extend_from_slice(b);
    if bp == out {
        let cols = *out.last().unwrap_or(&1);
        return Some((total / cols, cols, Broadcast::None));
    }
    for j in 0..=out.len() {
        // b = [1.., out[j..]]: a vector per row of `cols` elements.
        if bp[..j].iter().all(|&d| d == 1) && bp[j..] == out[j..] {
            let cols: usize = out[j..].iter().product();
            return Some((total / cols, cols, Broadcast::PerCol));
        }
        // b = [out[..j], 1..]: one element per row.
        if bp[j..].iter().all(|&d| d == 1) && bp[..j] == out[..j] {
            let rows: usize = out[..j].iter().product();
            return Some((rows, total / rows, Broadcast::PerRow));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn binary(
    g: &Graph,
    e: &mut Emitter,
    step: &Step,
    op: BinaryOp,
    a: ValueId,
    b: ValueId,
    plan: &Plan,
    out: Loc,
) -> R<()> {
    let node = g.node(step.node);
    let oshape = &node.ty.shape;
    let (mut a, mut b, mut op) = (a, b, op);
    // Only the second operand broadcasts: swap a broadcast first operand
    // (a < b is b > a); a - b is computed as -(b - a), which is exact.
    let mut negate = false;
    if g.ty(a).elems() != node.ty.elems() {
        if let Some(m) = op.mirrored() {
            std::mem::swap(&mut a, &mut b);
            op = m;
        } else if op == BinaryOp::Sub {
            std::mem::swap(&mut a, &mut b);
            negate = true;
        }
    }
    let unsupported = |why: String| LowerError::Unsupported {
        name: node.name.clone(),
        op: op.name(),
        why,
    };
    if g.ty(a).elems() != node.ty.elems() {
        return Err(unsupported(format!("the first operand of {} must have the result's shape {:?} (only the second one broadcasts on the device)", op.name(), oshape)));
    }
    // Split the output into outer dimensions, looped over, and an inner
    // block the ISA's broadcasts can express (j = 0: no loop).
    let bshape = g.ty(b).shape.clone();
    let mut bp = vec![1; oshape.len() - bshape.len()];
    bp.extend_from_slice(&bshape);
    let (j, (rows, cols, bc)) = (0..oshape.len())
        .find_map(|j| classify(&oshape[j..], &bp[j..]).map(|c| (j, c)))
        .ok_or_else(|| unsupported(format!("cannot broadcast {:?} over {:?}", bshape, oshape)))?;
    // A one-element f32 constant b is the instruction's immediate: no
    // load of it per tile, and the tiles any shape of the same elements
    // (rows of up to 4096), not one row of 4096.
    let scalar = match g.constant_data(b) {
        Some(crate::reference::TensorData::F32(d))
            if d.len() == 1 && node.ty.dtype == DType::F32 && bc == Broadcast::PerRow =>
        {
            Some(d[0].to_bits())
        }
        _ => None,
    };
    let (rows, cols, bc) = match scalar {
        Some(_) => {
            let total = rows * cols;
            let c = (1..=total.min(4096))
                .rev()
                .find(|c| total % c == 0)
                .unwrap_or(1);
            (total / c, c, Broadcast::Scalar)
        }
        None => (rows, cols, bc),
    };
    let outer: usize = oshape[..j].iter().product();
    let inner = rows * cols;
    let b_inner: usize = bp[j..].iter().product();
    // Offset (in elements) of outer index `o` in b: broadcast dimensions do not advance.
    let b_outer = |mut o: usize| {
        let (mut off, mut stride) = (0, b_inner);
        for d in (0..j).rev() {
            let coord = o % oshape[d];
            o /= oshape[d];
            if bp[d] != 1 {
                off += coord * stride;
            }
            stride *= bp[d];
        }
        off
    };
    let al = loc(g, plan, e, a)?;
    let bl = match scalar {
        Some(_) => None,
        None => Some(loc(g, plan, e, b)?),
    };
    let nb = e.nbuf();
    let isa_op = super::chain::isa_binary(op);
    // int8: ((s_a, zp_a), (s_b, zp_b), (s_out, zp_out)); the language's
    // dequantize -> f32 op -> quantize on the SRAM tile (CONVERT i8->f32;
    // BINARY; BINARY div, CONVERT f32->i32, REQUANT), i8 in memory.
    let q = (node.ty.dtype == DType::I8).then(|| {
        (
            per_tensor(g.ty(a)),
            per_tensor(g.ty(b)),
            per_tensor(&node.ty),
        )
    });
    let int8 = q.is_some();
    let es: usize = if int8 { 1 } else { 4 };
    // Tiles of tr x tc; the computation is in place in the `a` slot.
    let (mut tr, mut tc) = (rows, cols.min(4096));
    let (sa, sb, sa8, sb8) = loop {
        e.sram_reset();
        let bsz = match bc {
            Broadcast::None => tr * tc,
            Broadcast::PerRow => tr,
            Broadcast::Scalar => 1,
            Broadcast::PerCol => tc,
        };
        if let (Ok(x), Ok(y)) = (
            e.sram_alloc((tr * tc * 4) as u64, nb),
            e.sram_alloc((bsz * 4) as u64, nb),
        ) {
            // The i8 staging slots (f32: none).
            if !int8 {
                break (x, y, x, y);
            }
            if let (Ok(x8), Ok(y8)) = (
                e.sram_alloc((tr * tc) as u64, nb),
                e.sram_alloc(bsz as u64, nb),
            ) {
                break (x, y, x8, y8);
            }
        }
        if tr == 1 && tc == 1 {
            return Err(too_small(g, step, e, "one element does not fit".into()));
        }
        if tr > 1 {
            tr = tr.div_ceil(2);
        } else {
            tc = tc.div_ceil(2);
        }
    };
    let (rt, ct) = (rows.div_ceil(tr), cols.div_ceil(tc));
    let per_block = rt * ct;
    // (element offset of the block in a/out, in b, tile row, col, rows, cols)
    let dims = |s: usize| {
        let (o, s) = (s / per_block, s % per_block);
        let (r0, c0) = ((s / ct) * tr, (s % ct) * tc);
        (
            o * inner,
            b_outer(o),
            r0,
            c0,
            (rows - r0).min(tr),
            (cols - c0).min(tc),
        )
    };
    let e32 = es as u32;
    let pitch = cols as u32 * e32;
    let (la, lb) = if int8 { (sa8, sb8) } else { (sa, sb) };
    e.pipeline(
        outer * per_block,
        |e, s, slot| {
            let (base, bbase, r0, c0, cr, cc) = dims(s);
            let off = ((base + r0 * cols + c0) * es) as u64;
            e.load(
                al,
                off,
                la.at(slot),
                Strided::rows(cc as u32 * e32, cr as u32, pitch),
                Strided::rows(cc as u32 * e32, cr as u32, tc as u32 * e32),
            );
            let Some(bl) = bl else {
                return Ok(());
            };
            match bc {
                Broadcast::None => e.load(
                    bl,
                    ((bbase + r0 * cols + c0) * es) as u64,
                    lb.at(slot),
                    Strided::rows(cc as u32 * e32, cr as u32, pitch),
                    Strided::rows(cc as u32 * e32, cr as u32, tc as u32 * e32),
                ),
                Broadcast::PerRow => e.load(
                    bl,
                    ((bbase + r0) * es) as u64,
                    lb.at(slot),
                    Strided::contiguous(cr as u32 * e32),
                    Strided::contiguous(cr as u32 * e32),
                ),
                _ => e.load(
                    bl,
                    ((bbase + c0) * es) as u64,
                    lb.at(slot),
                    Strided::contiguous(cc as u32 * e32),
                    Strided::contiguous(cc as u32 * e32),
                ),
            }
            Ok(())
        },
        |e, s, slot| {
            let (base, _, r0, c0, cr, cc) = dims(s);
            let t = Tile {
                addr: sa.at(slot),
                ld: tc as u32,
            };
            let bt = Tile {
                addr: sb.at(slot),
                ld: tc as u32,
            };
            if let Some(((s_a, zp_a), (s_b, zp_b), _)) = q {
                let widen = |e: &mut Emitter,
                             src: u32,
                             dst: u32,
                             rows: usize,
                             cols: usize,
                             zp: i8,
                             scale: f32| {
                    e.push(Insn::Convert {
                        conv: Conversion::I8ToF32,
                        rows: rows as u32,
                        cols: cols as u32,
                        src: Tile {
                            addr: src,
                            ld: tc as u32,
                        },
                        dst: Tile {
                            addr: dst,
                            ld: tc as u32,
                        },
                        zero_point: zp as i32,
                        scale,
                    });
                };
                widen(e, sa8.at(slot), sa.at(slot), cr, cc, zp_a, s_a);
                let (br, bcn) = match bc {
                    Broadcast::None => (cr, cc),
                    Broadcast::PerRow => (1, cr),
                    _ => (1, cc),
                };
                widen(e, sb8.at(slot), sb.at(slot), br, bcn, zp_b, s_b);
            }
            e.push(Insn::Binary {
                op: isa_op,
                dtype: isa::DType::F32,
                bcast: bc,
                rows: cr as u32,
                cols: cc as u32,
                a: t,
                b: bt,
                out: t,
                scalar: scalar.unwrap_or(0),
            });
            if negate {
                let m1 = (-1.0f32).to_bits();
                e.push(Insn::Binary {
                    op: isa::BinaryOp::Mul,
                    dtype: isa::DType::F32,
                    bcast: Broadcast::Scalar,
                    rows: cr as u32,
                    cols: cc as u32,
                    a: t,
                    b: t,
                    out: t,
                    scalar: m1,
                });
            }
            if let Some((_, _, (s_out, zp_out))) = q {
                let (rows, cols) = (cr as u32, cc as u32);
                e.push(Insn::Binary {
                    op: isa::BinaryOp::Div,
                    dtype: isa::DType::F32,
                    bcast: Broadcast::Scalar,
                    rows,
                    cols,
                    a: t,
                    b: t,
                    out: t,
                    scalar: s_out.to_bits(),
                });
                e.push(Insn::Convert {
                    conv: Conversion::F32ToI32,
                    rows,
                    cols,
                    src: t,
                    dst: t,
                    zero_point: 0,
                    scale: 0.0,
                });
                e.push(Insn::Requant {
                    rows,
                    cols,
                    src: t,
                    dst: Tile {
                        addr: sa8.at(slot),
                        ld: tc as u32,
                    },
                    mult: 2,
                    per_channel: false,
                    bias: None,
                    shift: 1,
                    zero_point: zp_out,
                    lo: -128,
                    hi: 127,
                });
            }
            let off = ((base + r0 * cols + c0) * es) as u64;
            e.store(
                out,
                off,
                la.at(slot),
                Strided::rows(cc as u32 * e32, cr as u32, pitch),
                Strided::rows(cc as u32 * e32, cr as u32, tc as u32 * e32),
            );
            Ok(())
        },
    )
}

/// `q`: int8 pooling, ((input scale, zero point), (output scale, zero
/// point)): one POOL_I8 on the i8 planes (no f32 copy): max, requantized
/// only where the two quantizations differ (dequantization is monotonic,
/// so the max of the dequantized window is the dequantized max); average
/// as onnxruntime's QLinearAveragePool, i.e. its QLinearGlobalAveragePool
/// (the integer sum) for a window covering the plane without padding, the
/// f32 sum otherwise (Documentation/userspace/libnpu.rst, int8 rules).
#[allow(clippy::too_many_arguments)]
fn pool(
    e: &mut Emitter,
    kind: PoolKind,
    ishape: &[usize],
    oshape: &[usize],
    kernel: [usize; 2],
    win: &Window,
    x: Loc,
    out: Loc,
    q: Option<((f32, i8), (f32, i8))>,
) -> Result<(), String> {
    let planes = ishape[0] * ishape[1];
    let (ih, iw, oh, ow) = (ishape[2], ishape[3], oshape[2], oshape[3]);
    let nb = e.nbuf();
    let mut tp = planes;
    // Bytes per element, in memory and in SRAM.
    let es = if q.is_some() { 1 } else { 4 };
    let (si, so) = loop {
        e.sram_reset();
        if let (Ok(a), Ok(b)) = (
            e.sram_alloc((tp * ih * iw * es) as u64, nb),
            e.sram_alloc((tp * oh * ow * es) as u64, nb),
        ) {
            break (a, b);
        }
        if tp == 1 {
            return Err(format!("one {ih}x{iw} plane and its output do not fit; pooling does not tile within a plane yet"));
        }
        tp = tp.div_ceil(2);
    };
    let (ipl, opl) = ((ih * iw * es) as u32, (oh * ow * es) as u32);
    let geom_of = |np: usize| PoolGeom {
        channels: np as u32,
        in_h: ih as u32,
        in_w: iw as u32,
        out_h: oh as u32,
        out_w: ow as u32,
        kernel: [kernel[0] as u8, kernel[1] as u8],
        stride: [win.stride[0] as u8, win.stride[1] as u8],
        pad: [win.padding[0] as u8, win.padding[1] as u8],
    };
    e.pipeline(
        planes.div_ceil(tp),
        |e, s, slot| {
            let (p0, np) = chunk(s, tp, planes);
            e.load(
                x,
                p0 as u64 * ipl as u64,
                si.at(slot),
                Strided::contiguous(np as u32 * ipl),
                Strided::contiguous(np as u32 * ipl),
            );
            Ok(())
        },
        |e, s, slot| {
            let (p0, np) = chunk(s, tp, planes);
            let geom = geom_of(np);
            let (src, dst) = (si.at(slot), so.at(slot));
            e.push(match q {
                None => Insn::Pool {
                    op: if kind == PoolKind::Max {
                        isa::PoolOp::Max
                    } else {
                        isa::PoolOp::Avg
                    },
                    geom,
                    src,
                    dst,
                },
                Some(((s_in, zp_in), (s_out, zp_out))) => {
                    // The same quantization (and a scale whose products
                    // stay finite): the max is already the result.
                    let same = (s_in, zp_in) == (s_out, zp_out) && (s_in * 255.0).is_finite();
                    let op = match kind {
                        PoolKind::Max => isa::PoolI8Op::Max,
                        PoolKind::Avg if kernel == [ih, iw] && win.padding == [0, 0] => {
                            isa::PoolI8Op::AvgInt
                        }
                        PoolKind::Avg => isa::PoolI8Op::Avg,
                    };
                    let bare = op == isa::PoolI8Op::Max && same;
                    Insn::PoolI8 {
                        op,
                        geom,
                        src,
                        dst,
                        requant: op == isa::PoolI8Op::Max && !same,
                        zp_in: if bare { 0 } else { zp_in },
                        zp_out: if bare { 0 } else { zp_out },
                        scale_in: if bare { 0.0 } else { s_in },
                        scale_out: if bare { 0.0 } else { s_out },
                    }
                }
            });
            e.store(
                out,
                p0 as u64 * opl as u64,
                dst,
                Strided::contiguous(np as u32 * opl),
                Strided::contiguous(np as u32 * opl),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// Row-wise softmax: max, subtract, exp, sum, reciprocal, scale.
/// `q`: int8 in memory, dequantized and quantized on the tile.
fn softmax(
    e: &mut Emitter,
    x: Loc,
    out: Loc,
    rows: usize,
    cols: usize,
    q: Option<QuantIo>,
) -> Result<(), String> {
    let nb = e.nbuf();
    let mut tr = rows;
    let es = if q.is_some() { 1 } else { 4 };
    let (sx, sv, s8) = loop {
        e.sram_reset();
        if let (Ok(a), Ok(b)) = (
            e.sram_alloc((tr * cols * 4) as u64, nb),
            e.sram_alloc((tr * 4) as u64, nb),
        ) {
            if q.is_none() {
                break (a, b, a);
            }
            if let Ok(c) = e.sram_alloc((tr * cols) as u64, nb) {
                break (a, b, c);
            }
        }
        if tr == 1 {
            return Err(format!(
                "one row of {cols} elements does not fit; softmax needs a whole row in SRAM"
            ));
        }
        tr = tr.div_ceil(2);
    };
    let bytes = |nr: usize| (nr * cols * es) as u32;
    let io = if q.is_some() { s8 } else { sx };
    e.pipeline(
        rows.div_ceil(tr),
        |e, s, slot| {
            let (r0, nr) = chunk(s, tr, rows);
            e.load(
                x,
                (r0 * cols * es) as u64,
                io.at(slot),
                Strided::contiguous(bytes(nr)),
                Strided::contiguous(bytes(nr)),
            );
            Ok(())
        },
        |e, s, slot| {
            let (r0, nr) = chunk(s, tr, rows);
            let (nr32, c32) = (nr as u32, cols as u32);
            let t = Tile {
                addr: sx.at(slot),
                ld: c32,
            };
            let v = Tile {
                addr: sv.at(slot),
                ld: nr32,
            };
            let t8 = Tile {
                addr: s8.at(slot),
                ld: c32,
            };
            if let Some((qi, _)) = q {
                widen_i8(e, t8, t, nr32, c32, qi);
            }
            let f = isa::DType::F32;
            e.push(Insn::Reduce {
                op: ReduceOp::Max,
                axis: Axis::Cols,
                dtype: f,
                rows: nr32,
                cols: c32,
                src: t,
                dst: v.addr,
            });
            e.push(Insn::Binary {
                op: isa::BinaryOp::Sub,
                dtype: f,
                bcast: Broadcast::PerRow,
                rows: nr32,
                cols: c32,
                a: t,
                b: v,
                out: t,
                scalar: 0,
            });
            e.push(Insn::Unary {
                op: isa::UnaryOp::Exp,
                dtype: f,
                rows: nr32,
                cols: c32,
                src: t,
                dst: t,
                lo: 0,
                hi: 0,
            });
            e.push(Insn::Reduce {
                op: ReduceOp::Sum,
                axis: Axis::Cols,
                dtype: f,
                rows: nr32,
                cols: c32,
                src: t,
                dst: v.addr,
            });
            e.push(Insn::Unary {
                op: isa::UnaryOp::Recip,
                dtype: f,
                rows: 1,
                cols: nr32,
                src: v,
                dst: v,
                lo: 0,
                hi: 0,
            });
            e.push(Insn::Binary {
                op: isa::BinaryOp::Mul,
                dtype: f,
                bcast: Broadcast::PerRow,
                rows: nr32,
                cols: c32,
                a: t,
                b: v,
                out: t,
                scalar: 0,
            });
            if let Some((_, qo)) = q {
                narrow_f32(e, t, t8, nr32, c32, qo);
            }
            e.store(
                out,
                (r0 * cols * es) as u64,
                io.at(slot),
                Strided::contiguous(bytes(nr)),
                Strided::contiguous(bytes(nr)),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

fn per_tensor(ty: &crate::ir::TensorType) -> (f32, i8) {
    match &ty.quant {
        Some(crate::ir::Quant::PerTensor { scale, zero_point }) => (*scale, *zero_point),
        _ => (1.0, 0),
    }
}

/// Chunks of `n` elements with one 1-byte and one 4-byte slot per buffer.
fn chunk_slots(e: &mut Emitter, n: usize) -> Result<(usize, Slots, Slots), String> {
    let nb = e.nbuf();
    let mut size = n.min(16384);
    loop {
        e.sram_reset();
        if let (Ok(a), Ok(b)) = (
            e.sram_alloc(size as u64, nb),
            e.sram_alloc(size as u64 * 4, nb),
        ) {
            return Ok((size, a, b));
        }
        if size == 1 {
            return Err("one element does not fit".into());
        }
        size = size.div_ceil(2);
    }
}

/// f32 -> i8 as ONNX QuantizeLinear: divide by the scale (not multiply by
/// its reciprocal, which rounds differently), round half to even (CONVERT), add the
/// zero point and saturate (REQUANT with the identity multiplier).
fn quantize(e: &mut Emitter, x: Loc, out: Loc, n: usize, scale: f32, zp: i8) -> Result<(), String> {
    let (size, s8, s32) = chunk_slots(e, n)?;
    e.pipeline(
        n.div_ceil(size),
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let b = (l * 4) as u32;
            e.load(
                x,
                o as u64 * 4,
                s32.at(slot),
                Strided::contiguous(b),
                Strided::contiguous(b),
            );
            Ok(())
        },
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let l32 = l as u32;
            let (t8, t32) = (
                Tile {
                    addr: s8.at(slot),
                    ld: l32,
                },
                Tile {
                    addr: s32.at(slot),
                    ld: l32,
                },
            );
            let divisor = scale.to_bits();
            e.push(Insn::Binary {
                op: isa::BinaryOp::Div,
                dtype: isa::DType::F32,
                bcast: Broadcast::Scalar,
                rows: 1,
                cols: l32,
                a: t32,
                b: t32,
                out: t32,
                scalar: divisor,
            });
            e.push(Insn::Convert {
                conv: Conversion::F32ToI32,
                rows: 1,
                cols: l32,
                src: t32,
                dst: t32,
                zero_point: 0,
                scale: 0.0,
            });
            e.push(Insn::Requant {
                rows: 1,
                cols: l32,
                src: t32,
                dst: t8,
                mult: 2,
                per_channel: false,
                bias: None,
                shift: 1,
                zero_point: zp,
                lo: -128,
                hi: 127,
            });
            e.store(
                out,
                o as u64,
                s8.at(slot),
                Strided::contiguous(l32),
                Strided::contiguous(l32),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// Per-channel quantize (f32 -> i8, `dequant` false) or dequantize along
/// `axis` of `shape`, with the f32 scales at `scales` (zero points 0): the
/// tensor as `[outer][channels][inner]`, tiles of channels x inner elements
/// with the scales per row. Quantize: BINARY div per row, CONVERT f32->i32,
/// REQUANT (identity) to saturate; dequantize: CONVERT i8->f32, BINARY mul
/// per row.
fn quantize_axis(
    e: &mut Emitter,
    x: Loc,
    out: Loc,
    shape: &[usize],
    axis: usize,
    scales: Loc,
    dequant: bool,
) -> Result<(), String> {
    let outer: usize = shape[..axis].iter().product();
    let ch = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let nb = e.nbuf();
    let mut ti = inner.min(4096);
    let mut tc = (16384 / ti).clamp(1, ch);
    let (s8, s32, ssc) = loop {
        e.sram_reset();
        if let (Ok(a), Ok(b), Ok(c)) = (
            e.sram_alloc((tc * ti) as u64, nb),
            e.sram_alloc((tc * ti * 4) as u64, nb),
            e.sram_alloc((tc * 4) as u64, nb),
        ) {
            break (a, b, c);
        }
        if tc == 1 && ti == 1 {
            return Err("one element does not fit".into());
        }
        if tc > 1 {
            tc = tc.div_ceil(2);
        } else {
            ti = ti.div_ceil(2);
        }
    };
    let (nc, ni) = (ch.div_ceil(tc), inner.div_ceil(ti));
    let dims = |s: usize| {
        let (o, rest) = (s / (nc * ni), s % (nc * ni));
        let (c0, i0) = ((rest / ni) * tc, (rest % ni) * ti);
        // (element offset, first channel, channels, elements per row)
        (
            (o * ch + c0) * inner + i0,
            c0,
            (ch - c0).min(tc) as u32,
            (inner - i0).min(ti) as u32,
        )
    };
    let (ies, oes) = if dequant { (1u32, 4u32) } else { (4, 1) };
    e.pipeline(
        outer * nc * ni,
        |e, s, slot| {
            let (off, c0, cn, cols) = dims(s);
            let dst = if dequant { s8.at(slot) } else { s32.at(slot) };
            e.load(
                x,
                off as u64 * ies as u64,
                dst,
                Strided::rows(cols * ies, cn, inner as u32 * ies),
                Strided::rows(cols * ies, cn, ti as u32 * ies),
            );
            e.load(
                scales,
                c0 as u64 * 4,
                ssc.at(slot),
                Strided::contiguous(cn * 4),
                Strided::contiguous(cn * 4),
            );
            Ok(())
        },
        |e, s, slot| {
            let (off, _, cn, cols) = dims(s);
            let ld = ti as u32;
            let (t8, t32) = (
                Tile {
                    addr: s8.at(slot),
                    ld,
                },
                Tile {
                    addr: s32.at(slot),
                    ld,
                },
            );
            let sc = Tile {
                addr: ssc.at(slot),
                ld: 0,
            };
            if dequant {
                e.push(Insn::Convert {
                    conv: Conversion::I8ToF32,
                    rows: cn,
                    cols,
                    src: t8,
                    dst: t32,
                    zero_point: 0,
                    scale: 1.0,
                });
                e.push(Insn::Binary {
                    op: isa::BinaryOp::Mul,
                    dtype: isa::DType::F32,
                    bcast: Broadcast::PerRow,
                    rows: cn,
                    cols,
                    a: t32,
                    b: sc,
                    out: t32,
                    scalar: 0,
                });
            } else {
                e.push(Insn::Binary {
                    op: isa::BinaryOp::Div,
                    dtype: isa::DType::F32,
                    bcast: Broadcast::PerRow,
                    rows: cn,
                    cols,
                    a: t32,
                    b: sc,
                    out: t32,
                    scalar: 0,
                });
                e.push(Insn::Convert {
                    conv: Conversion::F32ToI32,
                    rows: cn,
                    cols,
                    src: t32,
                    dst: t32,
                    zero_point: 0,
                    scale: 0.0,
                });
                e.push(Insn::Requant {
                    rows: cn,
                    cols,
                    src: t32,
                    dst: t8,
                    mult: 2,
                    per_channel: false,
                    bias: None,
                    shift: 1,
                    zero_point: 0,
                    lo: -128,
                    hi: 127,
                });
            }
            let src = if dequant { s32.at(slot) } else { s8.at(slot) };
            e.store(
                out,
                off as u64 * oes as u64,
                src,
                Strided::rows(cols * oes, cn, inner as u32 * oes),
                Strided::rows(cols * oes, cn, ti as u32 * oes),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// i8 -> f32: `(q - zp) * scale` with one CONVERT.
fn dequantize(
    e: &mut Emitter,
    x: Loc,
    out: Loc,
    n: usize,
    scale: f32,
    zp: i8,
) -> Result<(), String> {
    let (size, s8, s32) = chunk_slots(e, n)?;
    e.pipeline(
        n.div_ceil(size),
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            e.load(
                x,
                o as u64,
                s8.at(slot),
                Strided::contiguous(l as u32),
                Strided::contiguous(l as u32),
            );
            Ok(())
        },
        |e, i, slot| {
            let (o, l) = chunk(i, size, n);
            let l32 = l as u32;
            let (t8, t32) = (
                Tile {
                    addr: s8.at(slot),
                    ld: l32,
                },
                Tile {
                    addr: s32.at(slot),
                    ld: l32,
                },
            );
            e.push(Insn::Convert {
                conv: Conversion::I8ToF32,
                rows: 1,
                cols: l32,
                src: t8,
                dst: t32,
                zero_point: zp as i32,
                scale,
            });
            let b = l32 * 4;
            e.store(
                out,
                o as u64 * 4,
                s32.at(slot),
                Strided::contiguous(b),
                Strided::contiguous(b),
            );
            Ok(())
        },
    )
    .map_err(|e| e.to_string())
}

/// One `[m, k] x [k, n]` (or `[n, k]` with `trans_b`) product of a
/// batched matmul, at the given places, through the tiled gemm: f32, or
/// int8 (`dtype` the result's) with `b_sums` the per-column sums of this
/// batch's `b` when it is a constant, and `b`'s zero point `zb`.
#[allow(clippy::too_many_arguments)]
pub(super) fn batch_gemm(
    g: &Graph,
    step: &Step,
    e: &mut Emitter,
    (m, n, k): (usize, usize, usize),
    trans_b: bool,
    a: Loc,
    b: Loc,
    out: Loc,
    dtype: DType,
    b_sums: Option<Vec<i64>>,
    zb: i8,
) -> R<()> {
    let mac = Mac::new(g, step, dtype, n, e, b_sums, k, None)?;
    let spec = GemmSpec {
        m,
        n,
        k,
        trans_a: false,
        trans_b,
        a,
        b,
        bias: None,
        out,
        zb,
        zb_cols: None,
    };
    gemm(e, &spec, &mac).map_err(|why| too_small(g, step, e, why))
}
