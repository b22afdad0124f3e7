//! Graph-to-graph passes run before lowering:
//!
//! * decomposition: rsqrt for reciprocal(sqrt(x)); reductions over
//!   separated axes, softmax on an inner axis and log-softmax into the ops
//!   the lowering has (see `decompose`);
//! * batch-norm folding: a per-channel multiply, add or subtract by a
//!   constant right after an f32 conv2d with constant weights becomes part
//!   of the conv's weights and bias (inference batch norm, exported as
//!   `x * scale + shift`, costs nothing);
//! * constant folding: elementwise ops, unary ops, reshapes and casts
//!   to f32 whose operands are all constants are computed here;
//! * dead-code elimination: ops no output depends on are dropped (inputs
//!   stay, so a kernel keeps its interface).
//!
//! Every value that survives keeps its name.

use super::{
    broadcast_shape, BinaryOp, DType, Graph, GraphError, Op, ReduceKind, TensorType, UnaryOp,
    ValueId,
};
use crate::reference::TensorData;

/// All passes, in order.
pub fn optimize(g: &Graph) -> Result<Graph, GraphError> {
    let simple = decompose(g)?;
    let folded = fold(&simple)?;
    dead_code(&folded)
}

/// Maximal runs of consecutive axes: [0, 2, 3] -> [[0], [2, 3]].
fn axis_groups(axes: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &a in axes {
        match groups.last_mut() {
            Some(g) if g.last() == Some(&(a - 1)) => g.push(a),
            _ => groups.push(vec![a]),
        }
    }
    groups
}

/// Rewrites into the forms the lowering takes, before folding:
///
/// * `reciprocal(sqrt(x))`, the sqrt read only there: `rsqrt(x)` (one
///   UNARY, the same two roundings); `1 / x` with a constant 1:
///   `reciprocal(x)`; another broadcast constant first operand of div or
///   prelu, materialised to the result's shape;
/// * a reduction over separated groups of axes: one reduction per group,
///   highest axes first, and for a mean a division of the sum by the count;
///   an int8 reduction through dequantize and quantize;
/// * softmax on an axis other than the last, and log-softmax: reduce max,
///   subtract, exp, reduce sum, then divide (softmax) or subtract the log
///   (log-softmax); int8 softmax through dequantize/quantize.
///
/// The last op of each rewrite keeps the node's name; the others are named
/// `NAME#what`.
fn decompose(g: &Graph) -> Result<Graph, GraphError> {
    let uses = g.use_counts();
    let mut out = Graph::new();
    let mut map: Vec<Option<ValueId>> = vec![None; g.nodes().len()];
    let m = |map: &[Option<ValueId>], v: ValueId| map[v.0].ok_or(GraphError::UnknownValue(v.0));
    for (i, node) in g.nodes().iter().enumerate() {
        let name = node.name.as_str();
        let tmp = |what: &str| format!("{name}#{what}");
        let v = match &node.op {
            Op::Input => out.input(name, node.ty.clone())?,
            Op::Constant { data } => out.constant_shared(name, node.ty.clone(), data.clone())?,
            // int8 comparisons compare the real values: dequantize both.
            Op::Binary { op, a, b } if op.compares() && g.ty(*a).dtype == DType::I8 => {
                let a = out.add(&tmp("a"), Op::Dequantize { x: m(&map, *a)? }, None)?;
                let b = out.add(&tmp("b"), Op::Dequantize { x: m(&map, *b)? }, None)?;
                out.add(name, Op::Binary { op: *op, a, b }, None)?
            }
            Op::Unary {
                op: UnaryOp::Reciprocal,
                x,
            } if node.ty.dtype == DType::F32
                && uses[x.0] == 1
                && !g.outputs().contains(x)
                && matches!(
                    g.node(*x).op,
                    Op::Unary {
                        op: UnaryOp::Sqrt,
                        ..
                    }
                ) =>
            {
                let Op::Unary { x: root_of, .. } = g.node(*x).op else {
                    unreachable!("matched above")
                };
                let op = Op::Unary {
                    op: UnaryOp::Rsqrt,
                    x: m(&map, root_of)?,
                };
                out.add(name, op, None)?
            }
            // 1 / x, the 1 a constant broadcast over x: UNARY recip (the
            // same correctly rounded division), not a division by a
            // materialised tensor of ones.
            Op::Binary {
                op: BinaryOp::Div,
                a,
                b,
            } if node.ty.dtype == DType::F32
                && g.ty(*b).shape == node.ty.shape
                && f32_data(g, *a).is_some_and(|d| d.len() == 1 && d[0] == 1.0) =>
            {
                let op = match g.node(*b).op {
                    Op::Unary {
                        op: UnaryOp::Sqrt,
                        x: root_of,
                    } if uses[b.0] == 1 && !g.outputs().contains(b) => Op::Unary {
                        op: UnaryOp::Rsqrt,
                        x: m(&map, root_of)?,
                    },
                    _ => Op::Unary {
                        op: UnaryOp::Reciprocal,
                        x: m(&map, *b)?,
                    },
                };
                out.add(name, op, None)?
            }
            // c / x (and prelu(c, x)) with a broadcast f32 constant c: the
            // device broadcasts only the second operand, so c becomes a
            // constant of the result's shape (div is not commutative).
            Op::Binary {
                op: op @ (BinaryOp::Div | BinaryOp::Prelu),
                a,
                b,
            } if node.ty.dtype == DType::F32
                && g.ty(*a).shape != node.ty.shape
                && g.ty(*b).shape == node.ty.shape
                && f32_data(g, *a).is_some() =>
            {
                let data =
                    broadcast_f32(g, *a, &node.ty.shape).ok_or_else(|| GraphError::Invalid {
                        name: name.to_string(),
                        op: op.name(),
                        msg: "cannot broadcast the constant first operand".into(),
                    })?;
                let c = out.constant(
                    &tmp("lhs"),
                    TensorType::new(DType::F32, &node.ty.shape),
                    TensorData::F32(data),
                )?;
                let op = Op::Binary {
                    op: *op,
                    a: c,
                    b: m(&map, *b)?,
                };
                out.add(name, op, None)?
            }
            Op::Reduce {
                kind,
                x,
                axes,
                keepdims,
            } if axis_groups(axes).len() > 1 || node.ty.dtype == DType::I8 => {
                let int8 = node.ty.dtype == DType::I8;
                let mut cur = m(&map, *x)?;
                if int8 {
                    cur = out.add(&tmp("real"), Op::Dequantize { x: cur }, None)?;
                }
                let last = if int8 { tmp("f32") } else { name.to_string() };
                let shape = &g.ty(*x).shape;
                let y = reduce_chain(&mut out, &tmp, cur, shape, *kind, axes, *keepdims, &last)?;
                if int8 {
                    out.add(name, Op::Quantize { x: y }, node.ty.quant.clone())?
                } else {
                    y
                }
            }
            Op::Softmax { x, axis } if axis + 1 != node.ty.shape.len() => {
                let int8 = node.ty.dtype == DType::I8;
                let mut x = m(&map, *x)?;
                if int8 {
                    x = out.add(&tmp("real"), Op::Dequantize { x }, None)?;
                }
                let (_, ex, sum) = exp_and_sum(&mut out, &tmp, x, *axis)?;
                let div = Op::Binary {
                    op: BinaryOp::Div,
                    a: ex,
                    b: sum,
                };
                if int8 {
                    let y = out.add(&tmp("f32"), div, None)?;
                    out.add(name, Op::Quantize { x: y }, node.ty.quant.clone())?
                } else {
                    out.add(name, div, None)?
                }
            }
            Op::LogSoftmax { x, axis } => {
                let int8 = node.ty.dtype == DType::I8;
                let mut x = m(&map, *x)?;
                if int8 {
                    x = out.add(&tmp("real"), Op::Dequantize { x }, None)?;
                }
                let (shifted, _, sum) = exp_and_sum(&mut out, &tmp, x, *axis)?;
                let log = Op::Unary {
                    op: UnaryOp::Log,
                    x: sum,
                };
                let log = out.add(&tmp("log"), log, None)?;
                let op = Op::Binary {
                    op: BinaryOp::Sub,
                    a: shifted,
                    b: log,
                };
                if int8 {
                    let y = out.add(&tmp("f32"), op, None)?;
                    out.add(name, Op::Quantize { x: y }, node.ty.quant.clone())?
                } else {
                    out.add(name, op, None)?
                }
            }
            op => {
                let op = remap(op, |v| m(&map, v))?;
                out.add(name, op, node.ty.quant.clone())?
            }
        };
        map[i] = Some(v);
    }
    for o in g.outputs() {
        out.output(m(&map, *o)?)?;
    }
    Ok(out)
}

/// The f32 constant `v` broadcast (numpy rules) to `shape`, row-major.
fn broadcast_f32(g: &Graph, v: ValueId, shape: &[usize]) -> Option<Vec<f32>> {
    let d = f32_data(g, v)?;
    let src = &g.ty(v).shape;
    if broadcast_shape(src, shape)? != shape {
        return None;
    }
    let n: usize = shape.iter().product();
    Some(
        (0..n)
            .map(|mut i| {
                let (mut off, mut stride) = (0, 1);
                for k in (0..shape.len()).rev() {
                    let coord = i % shape[k];
                    i /= shape[k];
                    if let Some(j) = (k + src.len()).checked_sub(shape.len()) {
                        if src[j] != 1 {
                            off += coord * stride;
                        }
                        stride *= src[j];
                    }
                }
                d[off]
            })
            .collect(),
    )
}

/// f32 `kind` of `x` (of `shape`) over `axes`: one reduction per group of
/// consecutive axes, highest first, so dropping them (no keepdims) leaves
/// the lower groups' indices as they are; a mean over several groups sums,
/// then divides once by the count. The last op is named `last`.
#[allow(clippy::too_many_arguments)]
fn reduce_chain(
    out: &mut Graph,
    tmp: &dyn Fn(&str) -> String,
    x: ValueId,
    shape: &[usize],
    kind: ReduceKind,
    axes: &[usize],
    keepdims: bool,
    last: &str,
) -> Result<ValueId, GraphError> {
    let groups = axis_groups(axes);
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    // One group: the lowering divides a mean itself.
    let mean = kind == ReduceKind::Mean && groups.len() > 1;
    let each = if mean { ReduceKind::Sum } else { kind };
    let mut cur = x;
    for (k, axes) in groups.into_iter().enumerate().rev() {
        let nm = if k == 0 && !mean {
            last.to_string()
        } else {
            tmp(&format!("r{k}"))
        };
        let op = Op::Reduce {
            kind: each,
            x: cur,
            axes,
            keepdims,
        };
        cur = out.add(&nm, op, None)?;
    }
    if mean {
        let n = out.constant(
            &tmp("count"),
            TensorType::new(DType::F32, &[1]),
            TensorData::F32(vec![count as f32]),
        )?;
        let op = Op::Binary {
            op: BinaryOp::Div,
            a: cur,
            b: n,
        };
        cur = out.add(last, op, None)?;
    }
    Ok(cur)
}

/// `x - max(x)`, `exp` of it and the sum of that along `axis` (kept as a
/// dimension of 1).
fn exp_and_sum(
    out: &mut Graph,
    tmp: &dyn Fn(&str) -> String,
    x: ValueId,
    axis: usize,
) -> Result<(ValueId, ValueId, ValueId), GraphError> {
    let reduce = |kind, x| Op::Reduce {
        kind,
        x,
        axes: vec![axis],
        keepdims: true,
    };
    let max = out.add(&tmp("max"), reduce(ReduceKind::Max, x), None)?;
    let shifted = out.add(
        &tmp("shifted"),
        Op::Binary {
            op: BinaryOp::Sub,
            a: x,
            b: max,
        },
        None,
    )?;
    let ex = out.add(
        &tmp("exp"),
        Op::Unary {
            op: UnaryOp::Exp,
            x: shifted,
        },
        None,
    )?;
    let sum = out.add(&tmp("sum"), reduce(ReduceKind::Sum, ex), None)?;
    Ok((shifted, ex, sum))
}

fn f32_data(g: &Graph, v: ValueId) -> Option<&[f32]> {
    match g.constant_data(v)? {
        TensorData::F32(d) => Some(d),
        _ => None,
    }
}

/// The per-output-channel values of constant `c` applied to a conv result
/// with `k` channels: one value per channel ([k,1,1] or [1,k,1,1]) or one
/// for all.
fn per_channel(g: &Graph, c: ValueId, k: usize) -> Option<Vec<f32>> {
    let d = f32_data(g, c)?;
    let shape = &g.ty(c).shape;
    let mut s = vec![1; 4usize.checked_sub(shape.len())?];
    s.extend_from_slice(shape);
    if d.len() == 1 {
        return Some(vec![d[0]; k]);
    }
    (s == [1, k, 1, 1]).then(|| d.to_vec())
}

/// The single reader of `v` (none when `v` is read twice or is an output).
fn only_reader(g: &Graph, uses: &[usize], v: ValueId) -> Option<ValueId> {
    if uses[v.0] != 1 || g.outputs().contains(&v) {
        return None;
    }
    g.nodes()
        .iter()
        .enumerate()
        .skip(v.0 + 1)
        .find(|(_, n)| n.op.operands().contains(&v))
        .map(|(i, _)| ValueId(i))
}

/// A conv2d that absorbs a chain: the chain's last node, and the folded
/// weight and bias.
type Folded = (ValueId, Vec<f32>, Vec<f32>);

/// Batch-norm folding into conv2d, and constant folding.
fn fold(g: &Graph) -> Result<Graph, GraphError> {
    let uses = g.use_counts();
    let n = g.nodes().len();
    // For each conv2d that absorbs a chain: the chain's last node, and the
    // folded weight and bias.
    let mut folded: Vec<Option<Folded>> = vec![None; n];
    let mut absorbed = vec![false; n];
    for (i, node) in g.nodes().iter().enumerate() {
        let Op::Conv2d { weight, bias, .. } = &node.op else {
            continue;
        };
        if node.ty.dtype != DType::F32 {
            continue;
        }
        let Some(w) = f32_data(g, *weight) else {
            continue;
        };
        let k = node.ty.shape[1];
        let bias = match bias {
            None => vec![0.0; k],
            Some(b) => match f32_data(g, *b) {
                Some(b) => b.to_vec(),
                None => continue,
            },
        };
        let (mut w, mut b, mut cur, mut last) = (w.to_vec(), bias, ValueId(i), None);
        let per_k = w.len() / k;
        while let Some(r) = only_reader(g, &uses, cur) {
            let Op::Binary { op, a, b: rhs } = g.node(r).op else {
                break;
            };
            let other = if a == cur { rhs } else { a };
            if other == cur || g.ty(r).shape != node.ty.shape {
                break;
            }
            let Some(v) = per_channel(g, other, k) else {
                break;
            };
            match (op, a == cur) {
                (BinaryOp::Mul, _) => {
                    for (c, s) in v.iter().enumerate() {
                        w[c * per_k..(c + 1) * per_k]
                            .iter_mut()
                            .for_each(|x| *x *= s);
                        b[c] *= s;
                    }
                }
                (BinaryOp::Add, _) => b.iter_mut().zip(&v).for_each(|(x, t)| *x += t),
                (BinaryOp::Sub, true) => b.iter_mut().zip(&v).for_each(|(x, t)| *x -= t),
                _ => break,
            }
            absorbed[r.0] = true;
            last = Some(r);
            cur = r;
        }
        if let Some(last) = last {
            folded[i] = Some((last, w, b));
        }
    }

    let mut out = Graph::new();
    let mut map: Vec<Option<ValueId>> = vec![None; n];
    let m = |map: &[Option<ValueId>], v: ValueId| map[v.0].ok_or(GraphError::UnknownValue(v.0));
    for (i, node) in g.nodes().iter().enumerate() {
        if absorbed[i] {
            continue;
        }
        let v = match (&node.op, folded[i].take()) {
            (Op::Input, _) => out.input(&node.name, node.ty.clone())?,
            (Op::Constant { data }, _) => {
                out.constant_shared(&node.name, node.ty.clone(), data.clone())?
            }
            (
                Op::Conv2d {
                    input,
                    weight,
                    window,
                    groups,
                    ..
                },
                Some((last, w, b)),
            ) => {
                let lname = &g.node(last).name;
                let wv = out.constant(
                    &format!("{lname}.weight"),
                    g.ty(*weight).clone(),
                    TensorData::F32(w),
                )?;
                let bv = out.constant(
                    &format!("{lname}.bias"),
                    TensorType::new(DType::F32, &[b.len()]),
                    TensorData::F32(b),
                )?;
                let conv = Op::Conv2d {
                    input: m(&map, *input)?,
                    weight: wv,
                    bias: Some(bv),
                    window: *window,
                    groups: *groups,
                };
                let v = out.add(lname, conv, None)?;
                map[last.0] = Some(v);
                v
            }
            (op, _) => {
                let op = remap(op, |v| m(&map, v))?;
                match const_eval(&out, &op, &node.ty) {
                    Some(data) => out.constant(&node.name, node.ty.clone(), data)?,
                    None => out.add(&node.name, op, node.ty.quant.clone())?,
                }
            }
        };
        map[i] = Some(v);
    }
    for o in g.outputs() {
        out.output(m(&map, *o)?)?;
    }
    Ok(out)
}

/// Drop the ops no output depends on.
fn dead_code(g: &Graph) -> Result<Graph, GraphError> {
    let n = g.nodes().len();
    let mut live = vec![false; n];
    for o in g.outputs() {
        live[o.0] = true;
    }
    for i in (0..n).rev() {
        if live[i] {
            for v in g.node(ValueId(i)).op.operands() {
                live[v.0] = true;
            }
        }
    }
    if live
        .iter()
        .enumerate()
        .all(|(i, l)| *l || g.node(ValueId(i)).op == Op::Input)
    {
        return Ok(g.clone());
    }
    let mut out = Graph::new();
    let mut map: Vec<Option<ValueId>> = vec![None; n];
    for (i, node) in g.nodes().iter().enumerate() {
        let v = match &node.op {
            Op::Input => out.input(&node.name, node.ty.clone())?,
            _ if !live[i] => continue,
            Op::Constant { data } => {
                out.constant_shared(&node.name, node.ty.clone(), data.clone())?
            }
            op => out.add(
                &node.name,
                remap(op, |v| map[v.0].ok_or(GraphError::UnknownValue(v.0)))?,
                node.ty.quant.clone(),
            )?,
        };
        map[i] = Some(v);
    }
    for o in g.outputs() {
        out.output(map[o.0].ok_or(GraphError::UnknownValue(o.0))?)?;
    }
    Ok(out)
}

/// `op` with its operands renamed by `f`.
pub fn remap(
    op: &Op,
    mut f: impl FnMut(ValueId) -> Result<ValueId, GraphError>,
) -> Result<Op, GraphError> {
    Ok(match op.clone() {
        Op::Input => Op::Input,
        Op::SignFlip { x } => Op::SignFlip { x: f(x)? },
        Op::Cast { x, to } => Op::Cast { x: f(x)?, to },
        Op::Constant { data } => Op::Constant { data },
        Op::Gemm {
            a,
            b,
            bias,
            trans_a,
            trans_b,
        } => Op::Gemm {
            a: f(a)?,
            b: f(b)?,
            bias: bias.map(&mut f).transpose()?,
            trans_a,
            trans_b,
        },
        Op::Conv2d {
            input,
            weight,
            bias,
            window,
            groups,
        } => Op::Conv2d {
            input: f(input)?,
            weight: f(weight)?,
            bias: bias.map(&mut f).transpose()?,
            window,
            groups,
        },
        Op::Binary { op, a, b } => Op::Binary {
            op,
            a: f(a)?,
            b: f(b)?,
        },
        Op::Unary { op, x } => Op::Unary { op, x: f(x)? },
        Op::Pool {
            kind,
            x,
            kernel,
            window,
        } => Op::Pool {
            kind,
            x: f(x)?,
            kernel,
            window,
        },
        Op::Softmax { x, axis } => Op::Softmax { x: f(x)?, axis },
        Op::Reshape { x, shape } => Op::Reshape { x: f(x)?, shape },
        Op::Quantize { x } => Op::Quantize { x: f(x)? },
        Op::Dequantize { x } => Op::Dequantize { x: f(x)? },
        Op::BatchMatMul { a, b, trans_b } => Op::BatchMatMul {
            a: f(a)?,
            b: f(b)?,
            trans_b,
        },
        Op::Gather { table, indices } => Op::Gather {
            table: f(table)?,
            indices: f(indices)?,
        },
        Op::LayerNorm {
            x,
            scale,
            bias,
            epsilon,
        } => Op::LayerNorm {
            x: f(x)?,
            scale: f(scale)?,
            bias: bias.map(&mut f).transpose()?,
            epsilon,
        },
        Op::Reduce {
            kind,
            x,
            axes,
            keepdims,
        } => Op::Reduce {
            kind,
            x: f(x)?,
            axes,
            keepdims,
        },
        Op::LogSoftmax { x, axis } => Op::LogSoftmax { x: f(x)?, axis },
        Op::Concat { xs, axis } => Op::Concat {
            xs: xs.into_iter().map(&mut f).collect::<Result<_, _>>()?,
            axis,
        },
        Op::Slice {
            x,
            begin,
            step,
            shape,
        } => Op::Slice {
            x: f(x)?,
            begin,
            step,
            shape,
        },
        Op::Pad {
            x,
            begin,
            end,
            value,
            mode,
        } => Op::Pad {
            x: f(x)?,
            begin,
            end,
            value,
            mode,
        },
        Op::Transpose { x, perm } => Op::Transpose { x: f(x)?, perm },
        Op::DepthToSpace { x, block, crd } => Op::DepthToSpace {
            x: f(x)?,
            block,
            crd,
        },
        Op::SpaceToDepth { x, block } => Op::SpaceToDepth { x: f(x)?, block },
        Op::Resize {
            x,
            size,
            scale,
            mode,
            coord,
        } => Op::Resize {
            x: f(x)?,
            size,
            scale,
            mode,
            coord,
        },
        Op::Where { cond, a, b } => Op::Where {
            cond: f(cond)?,
            a: f(a)?,
            b: f(b)?,
        },
    })
}

/// The value of an f32 elementwise op, unary op or reshape on constants.
fn const_eval(g: &Graph, op: &Op, ty: &TensorType) -> Option<TensorData> {
    // Data movement on constants (any dtype): moved at compile time.
    let operands = op.operands();
    if !operands.is_empty() && operands.iter().all(|v| g.constant_data(*v).is_some()) {
        let get = |v: ValueId| g.constant_data(v).expect("checked: a constant");
        if let Some(d) = crate::reference::movement(g, op, ty, get) {
            return Some(d);
        }
    }
    if ty.dtype != DType::F32 {
        return None;
    }
    match op {
        Op::Reshape { x, .. } => g.constant_data(*x).cloned(),
        // f16/bf16 constants widen exactly: the f32 weights and biases the
        // lowering packs (the same values the device's CONVERT gives).
        Op::Cast { x, .. } => {
            let d = g.constant_data(*x)?;
            Some(TensorData::F32(crate::reference::real(d, g.ty(*x))))
        }
        Op::Unary { op, x } => {
            let d = f32_data(g, *x)?;
            let f = |x: f32| crate::reference::unary_f32(*op, x);
            Some(TensorData::F32(d.iter().map(|&x| f(x)).collect()))
        }
        Op::Binary { op, a, b } => {
            let (da, db) = (f32_data(g, *a)?, f32_data(g, *b)?);
            let (sa, sb) = (&g.ty(*a).shape, &g.ty(*b).shape);
            let out = broadcast_shape(sa, sb)?;
            let idx = |shape: &[usize], mut flat: usize| {
                // Index into an operand of `shape` broadcast to `out`.
                let mut off = 0;
                let mut stride = 1;
                for d in (0..out.len()).rev() {
                    let coord = flat % out[d];
                    flat /= out[d];
                    if let Some(sd) = (d + shape.len()).checked_sub(out.len()).map(|j| shape[j]) {
                        if sd != 1 {
                            off += coord * stride;
                        }
                        stride *= sd;
                    }
                }
                off
            };
            let f = |x: f32, y: f32| crate::reference::binary_f32(*op, x, y);
            let n: usize = out.iter().product();
            Some(TensorData::F32(
                (0..n).map(|i| f(da[idx(sa, i)], db[idx(sb, i)])).collect(),
            ))
        }
        _ => None,
    }
}
