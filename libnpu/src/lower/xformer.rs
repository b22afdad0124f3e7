//! The transformer ops: batched matmul, gather (embedding lookup) and
//! layer normalization.

use super::emit::Emitter;
use super::ops::{batch_gemm, chunk, too_small};
use super::plan::{Loc, Plan, Step};
use super::LowerError;
use crate::ir::{Graph, Op};
use npu_isa::{self as isa, Axis, Broadcast, Insn, ReduceOp, Strided, Tile};

type R<T> = Result<T, LowerError>;

/// Index of the operand element that numpy broadcasting maps output
/// element `i` (of shape `out`) to, for an operand of shape `src`.
fn broadcast_index(mut i: usize, out: &[usize], src: &[usize]) -> usize {
    let (mut idx, mut mul) = (0, 1);
    for d in (0..out.len()).rev() {
        let coord = i % out[d];
        i /= out[d];
        if let Some(sd) = (d + src.len()).checked_sub(out.len()) {
            if src[sd] != 1 {
                idx += coord * mul;
            }
            mul *= src[sd];
        }
    }
    idx
}

/// ONNX MatMul over batches: one tiled gemm per output batch, each operand
/// addressed at its (broadcast) batch's offset, so a 2-D operand is read
/// in place by every batch.
pub(super) fn batch_matmul(g: &Graph, plan: &Plan, step: &Step, e: &mut Emitter) -> R<()> {
    let node = g.node(step.node);
    let Op::BatchMatMul { a, b, trans_b } = node.op else {
        return Err(LowerError::Internal("batch_matmul on another op".into()));
    };
    let (sa, sb) = (&g.ty(a).shape, &g.ty(b).shape);
    let out_shape = &node.ty.shape;
    let r = out_shape.len();
    let (m, n) = (out_shape[r - 2], out_shape[r - 1]);
    let k = sa[sa.len() - 1];
    let batch = &out_shape[..r - 2];
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let al = super::ops::loc(g, plan, e, a)?;
    let bl = super::ops::loc(g, plan, e, b)?;
    let out = plan.loc(step.out)?;
    let dtype = node.ty.dtype;
    let es = dtype.size() as u64;
    let at = |l: Loc, elems: usize| Loc {
        buffer: l.buffer,
        offset: l.offset + es * elems as u64,
    };
    let zp = |v| {
        g.ty(v)
            .quant
            .as_ref()
            .map_or(0, |q: &crate::ir::Quant| q.zero_point())
    };
    let b_i8 = match g.constant_data(b) {
        Some(crate::reference::TensorData::I8(d)) => Some(d.as_slice()),
        _ => None,
    };
    for bi in 0..batch.iter().product::<usize>() {
        let ao = broadcast_index(bi, batch, ba) * m * k;
        let bo = broadcast_index(bi, batch, bb) * k * n;
        // int8: a's zero point needs b's column sums (int8_channel_consts
        // folds them into the bias): this batch's slice of a constant b.
        let sums = b_i8.map(|d| {
            let mut s = vec![0i64; n];
            for (i, &x) in d[bo..bo + k * n].iter().enumerate() {
                s[if trans_b { i / k } else { i % n }] += x as i64;
            }
            s
        });
        batch_gemm(
            g,
            step,
            e,
            (m, n, k),
            trans_b,
            at(al, ao),
            at(bl, bo),
            at(out, bi * m * n),
            dtype,
            sums,
            zp(b),
        )?;
    }
    Ok(())
}

/// Embedding lookup: per chunk of indices, DMA them into SRAM, GATHER
/// their table rows after them and store the rows; double-buffered, so
/// the next chunk's gather overlaps this chunk's store.
pub(super) fn gather(
    g: &Graph,
    step: &Step,
    e: &mut Emitter,
    table: Loc,
    indices: Loc,
    out: Loc,
) -> R<()> {
    let node = g.node(step.node);
    let Op::Gather { table: t, .. } = node.op else {
        return Err(LowerError::Internal("gather on another op".into()));
    };
    let tt = g.ty(t);
    let rows = tt.shape[0];
    let row_bytes = tt.bytes() / rows;
    let count = node.ty.elems() / (tt.elems() / rows);
    let nb = e.nbuf();
    let mut chunk_rows = count;
    let (si, sr) = loop {
        e.sram_reset();
        if let (Ok(i), Ok(r)) = (
            e.sram_alloc(4 * chunk_rows as u64, nb),
            e.sram_alloc((chunk_rows * row_bytes) as u64, nb),
        ) {
            break (i, r);
        }
        if chunk_rows == 1 {
            return Err(too_small(
                g,
                step,
                e,
                format!("one table row of {row_bytes} bytes and its index do not fit"),
            ));
        }
        chunk_rows = chunk_rows.div_ceil(2);
    };
    e.pipeline(
        count.div_ceil(chunk_rows),
        |e, s, slot| {
            let (i0, ni) = chunk(s, chunk_rows, count);
            let bytes = 4 * ni as u32;
            e.load(
                indices,
                4 * i0 as u64,
                si.at(slot),
                Strided::contiguous(bytes),
                Strided::contiguous(bytes),
            );
            e.gather(
                table,
                (rows as u32, row_bytes as u32),
                si.at(slot),
                ni as u32,
                sr.at(slot),
            );
            Ok(())
        },
        |e, s, slot| {
            let (i0, ni) = chunk(s, chunk_rows, count);
            let bytes = (ni * row_bytes) as u32;
            e.store(
                out,
                (i0 * row_bytes) as u64,
                sr.at(slot),
                Strided::contiguous(bytes),
                Strided::contiguous(bytes),
            );
            Ok(())
        },
    )
}

/// `BINARY` with a scalar immediate on a `rows x cols` tile, in place.
fn scalar_op(
    e: &mut Emitter,
    op: isa::BinaryOp,
    dtype: isa::DType,
    t: Tile,
    rows: u32,
    cols: u32,
    v: u32,
) {
    e.push(Insn::Binary {
        op,
        dtype,
        bcast: Broadcast::Scalar,
        rows,
        cols,
        a: t,
        b: t,
        out: t,
        scalar: v,
    });
}

#[allow(clippy::too_many_arguments)]
fn binary(
    e: &mut Emitter,
    op: isa::BinaryOp,
    bcast: Broadcast,
    a: Tile,
    b: Tile,
    out: Tile,
    rows: u32,
    cols: u32,
) {
    e.push(Insn::Binary {
        op,
        dtype: isa::DType::F32,
        bcast,
        rows,
        cols,
        a,
        b,
        out,
        scalar: 0,
    });
}

/// ONNX LayerNormalization over the last axis, per chunk of rows in SRAM:
/// mean by REDUCE sum / d, centre (BINARY per row), variance as the mean
/// of the squares of the centred values, `1 / sqrt(var + eps)` (UNARY
/// rsqrt), scale per row, then `* scale + bias` per column.
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_norm(
    g: &Graph,
    step: &Step,
    e: &mut Emitter,
    x: Loc,
    scale: Loc,
    bias: Option<Loc>,
    epsilon: f32,
    out: Loc,
) -> R<()> {
    let node = g.node(step.node);
    let d = *node.ty.shape.last().unwrap_or(&1);
    let rows = node.ty.elems() / d;
    let nb = e.nbuf();
    let mut tr = rows;
    // x tiles (nb), the squares, the per-row vectors (mean, 1/std), scale
    // and bias.
    let slots = loop {
        e.sram_reset();
        let vec = (4 * tr as u64).next_multiple_of(64);
        let got = (|| {
            Some((
                e.sram_alloc((tr * d * 4) as u64, nb).ok()?,
                e.sram_alloc((tr * d * 4) as u64, 1).ok()?,
                e.sram_alloc(vec, 1).ok()?,
                e.sram_alloc(vec, 1).ok()?,
                e.sram_alloc(4 * d as u64, 1).ok()?,
                e.sram_alloc(4 * d as u64, 1).ok()?,
            ))
        })();
        if let Some(s) = got {
            break s;
        }
        if tr == 1 {
            return Err(too_small(
                g,
                step,
                e,
                format!(
                    "one row of {d} elements does not fit; layer_norm needs a whole row in SRAM"
                ),
            ));
        }
        tr = tr.div_ceil(2);
    };
    let (sx, ssq, smean, svar, sscale, sbias) = slots;
    let d32 = d as u32;
    let vec_bytes = Strided::contiguous(4 * d32);
    e.load(scale, 0, sscale.at(0), vec_bytes, vec_bytes);
    if let Some(b) = bias {
        e.load(b, 0, sbias.at(0), vec_bytes, vec_bytes);
    }
    let bytes = |nr: usize| (nr * d * 4) as u32;
    let f = isa::DType::F32;
    e.pipeline(
        rows.div_ceil(tr),
        |e, s, slot| {
            let (r0, nr) = chunk(s, tr, rows);
            e.load(
                x,
                (r0 * d * 4) as u64,
                sx.at(slot),
                Strided::contiguous(bytes(nr)),
                Strided::contiguous(bytes(nr)),
            );
            Ok(())
        },
        |e, s, slot| {
            let (r0, nr) = chunk(s, tr, rows);
            let nr32 = nr as u32;
            let t = Tile {
                addr: sx.at(slot),
                ld: d32,
            };
            let sq = Tile {
                addr: ssq.at(0),
                ld: d32,
            };
            let vec = |addr: u32| Tile { addr, ld: nr32 };
            let (mean, var) = (vec(smean.at(0)), vec(svar.at(0)));
            let reduce = |e: &mut Emitter, src: Tile, dst: Tile| {
                e.push(Insn::Reduce {
                    op: ReduceOp::Sum,
                    axis: Axis::Cols,
                    dtype: f,
                    rows: nr32,
                    cols: d32,
                    src,
                    dst: dst.addr,
                });
            };
            let d_bits = (d as f32).to_bits();
            // The sum's rounding (up to d/2 ulps of |x| d) leaves an error in
            // the mean that is large beside a small spread; the centred
            // values' own mean is that error, summed from small numbers:
            // subtract it too (two passes).
            for _ in 0..2 {
                reduce(e, t, mean);
                scalar_op(e, isa::BinaryOp::Div, f, mean, 1, nr32, d_bits);
                binary(
                    e,
                    isa::BinaryOp::Sub,
                    Broadcast::PerRow,
                    t,
                    mean,
                    t,
                    nr32,
                    d32,
                );
            }
            binary(e, isa::BinaryOp::Mul, Broadcast::None, t, t, sq, nr32, d32);
            reduce(e, sq, var);
            scalar_op(e, isa::BinaryOp::Div, f, var, 1, nr32, d_bits);
            scalar_op(e, isa::BinaryOp::Add, f, var, 1, nr32, epsilon.to_bits());
            // UNARY rsqrt: the correctly rounded root, then 1 / it.
            e.push(Insn::Unary {
                op: isa::UnaryOp::Rsqrt,
                dtype: f,
                rows: 1,
                cols: nr32,
                src: var,
                dst: var,
                lo: 0,
                hi: 0,
            });
            binary(
                e,
                isa::BinaryOp::Mul,
                Broadcast::PerRow,
                t,
                var,
                t,
                nr32,
                d32,
            );
            let cols = |addr: u32| Tile { addr, ld: d32 };
            binary(
                e,
                isa::BinaryOp::Mul,
                Broadcast::PerCol,
                t,
                cols(sscale.at(0)),
                t,
                nr32,
                d32,
            );
            if bias.is_some() {
                binary(
                    e,
                    isa::BinaryOp::Add,
                    Broadcast::PerCol,
                    t,
                    cols(sbias.at(0)),
                    t,
                    nr32,
                    d32,
                );
            }
            e.store(
                out,
                (r0 * d * 4) as u64,
                sx.at(slot),
                Strided::contiguous(bytes(nr)),
                Strided::contiguous(bytes(nr)),
            );
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::broadcast_index;

    #[test]
    fn broadcast_index_follows_numpy() {
        // out [2, 3], src [3]: every row reads the same vector.
        assert_eq!(broadcast_index(4, &[2, 3], &[3]), 1);
        // src [2, 1]: one element per row.
        assert_eq!(broadcast_index(4, &[2, 3], &[2, 1]), 1);
        // src []: a 2-D operand of a batched matmul, shared.
        assert_eq!(broadcast_index(5, &[6], &[]), 0);
        // src [1, 3] over out [2, 3].
        assert_eq!(broadcast_index(5, &[2, 3], &[1, 3]), 2);
    }
}
