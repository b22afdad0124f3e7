//! Rewrite int8 ops the ISA has no integer form for (sigmoid/tanh/exp,
//! softmax) as dequantize -> f32 op -> quantize ops, which is also how the
//! CPU reference defines them. Gemm, conv2d, relu and clamp keep their
//! integer pipelines; int8 elementwise binary ops and pooling run the same
//! dequantize -> f32 -> quantize instructions on the SRAM tile in one op
//! (ops::binary, ops::pool), with i8 in memory.

use crate::ir::{DType, Graph, GraphError, Op, UnaryOp, ValueId};

fn via_f32(op: &Op, dtype: DType) -> bool {
    dtype == DType::I8
        && match op {
            // Elementwise binary ops and pooling run the same f32 steps on
            // the SRAM tile (ops::binary, ops::pool).
            Op::Softmax { .. } => true,
            Op::Unary { op, .. } => !matches!(op, UnaryOp::Relu | UnaryOp::Clamp { .. }),
            _ => false,
        }
}

fn remap(op: &Op, m: &[ValueId]) -> Op {
    let r = |v: &ValueId| m[v.0];
    match op.clone() {
        Op::Input => Op::Input,
        Op::Constant { data } => Op::Constant { data },
        Op::Gemm {
            a,
            b,
            bias,
            trans_a,
            trans_b,
        } => Op::Gemm {
            a: r(&a),
            b: r(&b),
            bias: bias.map(|v| r(&v)),
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
            input: r(&input),
            weight: r(&weight),
            bias: bias.map(|v| r(&v)),
            window,
            groups,
        },
        Op::Binary { op, a, b } => Op::Binary {
            op,
            a: r(&a),
            b: r(&b),
        },
        Op::Unary { op, x } => Op::Unary { op, x: r(&x) },
        Op::Pool {
            kind,
            x,
            kernel,
            window,
        } => Op::Pool {
            kind,
            x: r(&x),
            kernel,
            window,
        },
        Op::Softmax { x, axis } => Op::Softmax { x: r(&x), axis },
        Op::Reshape { x, shape } => Op::Reshape { x: r(&x), shape },
        Op::Quantize { x } => Op::Quantize { x: r(&x) },
        Op::Dequantize { x } => Op::Dequantize { x: r(&x) },
    }
}

/// The graph with int8 float-only ops expanded; unchanged names for every
/// original value (inputs and outputs keep theirs).
pub fn legalize(g: &Graph) -> Result<Graph, GraphError> {
    if !g.nodes().iter().any(|n| via_f32(&n.op, n.ty.dtype)) {
        return Ok(g.clone());
    }
    let mut out = Graph::new();
    let mut map: Vec<ValueId> = Vec::with_capacity(g.nodes().len());
    for n in g.nodes() {
        let v = if n.op == Op::Input {
            out.input(&n.name, n.ty.clone())?
        } else if let Op::Constant { data } = &n.op {
            out.constant_shared(&n.name, n.ty.clone(), data.clone())?
        } else if via_f32(&n.op, n.ty.dtype) {
            // Operands to f32, the op in f32, the result back to i8.
            let mut m2 = map.clone();
            for (i, x) in n.op.operands().into_iter().enumerate() {
                m2[x.0] = out.add(
                    &format!("{}.dq{i}", n.name),
                    Op::Dequantize { x: map[x.0] },
                    None,
                )?;
            }
            let f = out.add(&format!("{}.f32", n.name), remap(&n.op, &m2), None)?;
            out.add(&n.name, Op::Quantize { x: f }, n.ty.quant.clone())?
        } else {
            out.add(&n.name, remap(&n.op, &map), n.ty.quant.clone())?
        };
        map.push(v);
    }
    for o in g.outputs() {
        out.output(map[o.0])?;
    }
    Ok(out)
}
