//! Comparisons, logic, `Where` and `Cast` between floats and bools.
//!
//! ONNX bool tensors are the IR's masks: f32 tensors of 1.0 (true) and
//! +0.0 (false), which is what `Cast(bool -> float)` makes of them, so that
//! cast is free and `Cast(float -> bool)` is `x != 0`. Bool constants (and
//! other non-float constants these ops read) become f32 constants of the
//! values they hold. `Not` is `x == 0`. Nodes whose inputs are all known
//! are folded on the host (shape arithmetic), bools there as bytes 0/1.

use super::tensor::{Data, HostTensor};
use super::{broadcast_index, Ctx, ImportError, Importer, Val};
use npu::ir::{BinaryOp, Op};
use npu::{DType, ValueId};

/// The ONNX operator names this module maps (`Cast` only with a computed
/// input; a known one is folded with the other casts).
pub(crate) fn maps(op: &str) -> bool {
    matches!(
        op,
        "Equal"
            | "Less"
            | "Greater"
            | "LessOrEqual"
            | "GreaterOrEqual"
            | "And"
            | "Or"
            | "Xor"
            | "Not"
            | "Where"
    )
}

fn binary_op(op: &str) -> Option<BinaryOp> {
    Some(match op {
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "Greater" => BinaryOp::Greater,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        _ => return None,
    })
}

/// `op(p, q)` as ONNX defines it on numbers (the logic ops on bools, any
/// non-zero value true).
fn holds<T: PartialOrd + Default>(op: BinaryOp, p: T, q: T) -> bool {
    let z = T::default();
    match op {
        BinaryOp::Equal => p == q,
        BinaryOp::Less => p < q,
        BinaryOp::Greater => p > q,
        BinaryOp::LessOrEqual => p <= q,
        BinaryOp::GreaterOrEqual => p >= q,
        BinaryOp::And => p != z && q != z,
        BinaryOp::Or => p != z || q != z,
        BinaryOp::Xor => (p != z) != (q != z),
        _ => false,
    }
}

impl Importer<'_> {
    /// Input `i` as an f32 IR value: a known non-float tensor (a bool) as
    /// f32 values, a computed one as it is (it must be f32: a mask or a
    /// float tensor).
    fn mask_operand(&mut self, ctx: &Ctx, i: usize) -> Result<ValueId, ImportError> {
        let v = self.input(ctx, i)?;
        let name = ctx.n.input[i].clone();
        let v = match v {
            Val::Host(t) if !matches!(t.data, Data::F32(_)) => Val::Host(HostTensor {
                data: Data::F32(t.data.as_f32()),
                shape: t.shape,
            }),
            v => v,
        };
        let id = self.ir(&v, &name, ctx)?;
        if self.g.ty(id).dtype != DType::F32 {
            return Err(ctx.err(format!(
                "input `{name}` is {}: comparisons and where take f32 values (dequantize int8 first)",
                self.g.ty(id)
            )));
        }
        Ok(id)
    }

    /// The operands of a comparison of int8 (or uint8) tensors: ONNX
    /// compares their integers, which is the IR's comparison of the real
    /// values when both have one quantization (the same increasing map), so
    /// both must (a constant operand takes the other's). None when neither
    /// is an int8 IR value.
    fn int8_operands(&mut self, ctx: &Ctx) -> Result<Option<(ValueId, ValueId)>, ImportError> {
        if !matches!(
            ctx.n.op_type.as_str(),
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual"
        ) {
            return Ok(None);
        }
        let (x, y) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
        let ty = |v: &Val| match v {
            Val::Ir(id) if self.g.ty(*id).dtype == DType::I8 => Some(self.g.ty(*id).clone()),
            _ => None,
        };
        let Some(q) = ty(&x).or_else(|| ty(&y)) else {
            return Ok(None);
        };
        let uint8 = ctx.n.input.iter().any(|i| self.uint8.contains(i));
        let mut ids = Vec::new();
        for (i, v) in [x, y].into_iter().enumerate() {
            let id = match v {
                Val::Ir(id) if self.g.ty(id).quant == q.quant && self.g.ty(id).dtype == DType::I8 => id,
                Val::Host(t) if matches!(t.data, Data::I8(_) | Data::U8(_)) => {
                    let data = match t.data {
                        Data::I8(v) if !uint8 => v,
                        Data::U8(v) if uint8 => npu::ir::u8_to_i8(&v),
                        _ => return Err(ctx.err("a comparison of int8 with uint8")),
                    };
                    let shape = if t.shape.is_empty() { vec![1] } else { t.shape };
                    let name = self.fresh(&ctx.n.input[i]);
                    self.g
                        .constant(
                            &name,
                            npu::ir::TensorType { shape, ..q.clone() },
                            npu::TensorData::I8(data),
                        )
                        .map_err(|e| ctx.err(e.to_string()))?
                }
                _ => {
                    return Err(ctx.err(format!(
                        "input `{}`: an int8 comparison needs both operands int8 with one quantization ({q})",
                        ctx.n.input[i]
                    )))
                }
            };
            ids.push(id);
        }
        Ok(Some((ids[0], ids[1])))
    }

    /// Map a comparison, logic op, `Not`, `Where` or a `Cast` of a computed
    /// value.
    pub(crate) fn logic(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let op_type = ctx.n.op_type.as_str();
        if let Some(op) = binary_op(op_type) {
            if let Some((a, b)) = self.int8_operands(ctx)? {
                return self.emit(ctx, Op::Binary { op, a, b }, None);
            }
            let (a, b) = (self.mask_operand(ctx, 0)?, self.mask_operand(ctx, 1)?);
            return self.emit(ctx, Op::Binary { op, a, b }, None);
        }
        match op_type {
            "Not" => {
                let x = self.mask_operand(ctx, 0)?;
                let zero = self.scalar_const(ctx, 0.0)?;
                self.emit(
                    ctx,
                    Op::Binary {
                        op: BinaryOp::Equal,
                        a: x,
                        b: zero,
                    },
                    None,
                )
            }
            "Where" => {
                let cond = self.mask_operand(ctx, 0)?;
                let (a, b) = (self.mask_operand(ctx, 1)?, self.mask_operand(ctx, 2)?);
                self.emit(ctx, Op::Where { cond, a, b }, None)
            }
            "Cast" => {
                let x = self.mask_operand(ctx, 0)?;
                match ctx.int("to", 0) {
                    // float -> float, bool (a mask) -> float: the same values.
                    1 => {
                        self.set(ctx, Val::Ir(x));
                        Ok(())
                    }
                    9 => {
                        let zero = self.scalar_const(ctx, 0.0)?;
                        self.emit(
                            ctx,
                            Op::Binary {
                                op: BinaryOp::NotEqual,
                                a: x,
                                b: zero,
                            },
                            None,
                        )
                    }
                    to => Err(ctx.err(format!(
                        "a cast of a computed value to type {to}: only float (1) and bool (9) map, as f32 values and masks"
                    ))),
                }
            }
            other => Err(ctx.err(format!("`{other}` is not a comparison"))),
        }
    }
}

/// Fold a comparison, logic op, `Not` or `Where` whose inputs are known:
/// integers compare as i64 (exactly), anything else as f32.
pub(crate) fn fold(ctx: &Ctx, ins: &[Option<HostTensor>]) -> Result<HostTensor, ImportError> {
    let inp = |i: usize| {
        ins.get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| ctx.err(format!("input {i} is missing")))
    };
    let shape_of = |ts: &[&HostTensor]| {
        ts.iter()
            .try_fold(Vec::new(), |s, t| npu::ir::broadcast_shape(&s, &t.shape))
            .ok_or_else(|| {
                let shapes: Vec<_> = ts.iter().map(|t| t.shape.clone()).collect();
                ctx.err(format!("shapes {shapes:?} do not broadcast"))
            })
    };
    let op_type = ctx.n.op_type.as_str();
    if let Some(op) = binary_op(op_type) {
        let (a, b) = (inp(0)?, inp(1)?);
        let shape = shape_of(&[&a, &b])?;
        let (ia, ib) = (
            broadcast_index(&a.shape, &shape),
            broadcast_index(&b.shape, &shape),
        );
        let pairs = ia.iter().zip(&ib);
        let data: Vec<u8> = match (&a.data, &b.data, a.data.as_i64(), b.data.as_i64()) {
            (Data::F32(_), _, _, _)
            | (_, Data::F32(_), _, _)
            | (_, _, None, _)
            | (_, _, _, None) => {
                let (x, y) = (a.data.as_f32(), b.data.as_f32());
                pairs.map(|(&i, &j)| holds(op, x[i], y[j]) as u8).collect()
            }
            (_, _, Some(x), Some(y)) => pairs.map(|(&i, &j)| holds(op, x[i], y[j]) as u8).collect(),
        };
        return Ok(HostTensor {
            shape,
            data: Data::U8(data),
        });
    }
    match op_type {
        "Not" => {
            let x = inp(0)?;
            let data = x.data.as_f32().iter().map(|&v| (v == 0.0) as u8).collect();
            Ok(HostTensor {
                shape: x.shape,
                data: Data::U8(data),
            })
        }
        "Where" => {
            let (c, a, b) = (inp(0)?, inp(1)?, inp(2)?);
            let shape = shape_of(&[&c, &a, &b])?;
            let cond: Vec<bool> = c.data.as_f32().iter().map(|&v| v != 0.0).collect();
            let (ic, ia, ib) = (
                broadcast_index(&c.shape, &shape),
                broadcast_index(&a.shape, &shape),
                broadcast_index(&b.shape, &shape),
            );
            let pick = |k: usize| {
                if cond[ic[k]] {
                    (true, ia[k])
                } else {
                    (false, ib[k])
                }
            };
            let data = match (&a.data, &b.data) {
                (Data::I64(x), Data::I64(y)) => Data::I64(
                    (0..ic.len())
                        .map(|k| match pick(k) {
                            (true, i) => x[i],
                            (false, i) => y[i],
                        })
                        .collect(),
                ),
                _ => {
                    let (x, y) = (a.data.as_f32(), b.data.as_f32());
                    Data::F32(
                        (0..ic.len())
                            .map(|k| match pick(k) {
                                (true, i) => x[i],
                                (false, i) => y[i],
                            })
                            .collect(),
                    )
                }
            };
            Ok(HostTensor { shape, data })
        }
        other => Err(ctx.err(format!("`{other}` is not a comparison"))),
    }
}
