//! `where` (ONNX Where) on SELECT: `cond != 0 ? a : b` with the three
//! operands broadcast together. The output, viewed as `outer x rows x
//! cols`, is looped over `outer`; each operand is, over one `rows x cols`
//! block, a full tile, a per-row or per-column vector, or (a one-element f32
//! constant) SELECT's immediate.

use super::emit::{Emitter, Slots};
use super::ops::{loc, too_small};
use super::plan::{Loc, Plan, Step};
use super::LowerError;
use crate::ir::{Graph, ValueId};
use npu_isa::{Broadcast, DType, Insn, SelectOperand, Strided, Tile};

type R<T> = Result<T, LowerError>;

/// The broadcast of an operand of (padded) shape `p` over the block
/// `out[j..]` split into rows `out[j..k]` and columns `out[k..]`.
fn mode(p: &[usize], out: &[usize], j: usize, k: usize) -> Option<Broadcast> {
    let ones = |s: &[usize]| s.iter().all(|&d| d == 1);
    if p[j..] == out[j..] {
        Some(Broadcast::None)
    } else if ones(&p[k..]) && p[j..k] == out[j..k] {
        Some(Broadcast::PerRow)
    } else if ones(&p[j..k]) && p[k..] == out[k..] {
        Some(Broadcast::PerCol)
    } else {
        None
    }
}

/// One operand of the lowering.
struct Arg {
    /// The shape with leading 1s to the output's rank.
    p: Vec<usize>,
    bcast: Broadcast,
    /// Where it lives (None for an immediate).
    loc: Option<Loc>,
    scalar: u32,
    slots: Option<Slots>,
}

impl Arg {
    /// Element offset of the block for outer index `o` (over `out[..j]`):
    /// the operand's broadcast dimensions do not advance.
    fn outer(&self, out: &[usize], j: usize, mut o: usize) -> usize {
        let (mut off, mut stride) = (0, self.p[j..].iter().product::<usize>());
        for d in (0..j).rev() {
            let coord = o % out[d];
            o /= out[d];
            if self.p[d] != 1 {
                off += coord * stride;
            }
            stride *= self.p[d];
        }
        off
    }
}

pub(super) fn where_op(
    g: &Graph,
    plan: &Plan,
    step: &Step,
    e: &mut Emitter,
    operands: [ValueId; 3],
    out: Loc,
) -> R<()> {
    let node = g.node(step.node);
    let oshape = node.ty.shape.clone();
    let n = oshape.len();
    let mut args = Vec::new();
    for v in operands {
        let s = &g.ty(v).shape;
        let mut p = vec![1; n - s.len()];
        p.extend_from_slice(s);
        let scalar = match g.constant_data(v) {
            Some(crate::reference::TensorData::F32(d)) if d.len() == 1 => Some(d[0].to_bits()),
            _ => None,
        };
        args.push(Arg {
            p,
            bcast: if scalar.is_some() {
                Broadcast::Scalar
            } else {
                Broadcast::None
            },
            loc: None,
            scalar: scalar.unwrap_or(0),
            slots: None,
        });
    }
    // The fewest outer dimensions (j) with a split (k) every operand fits.
    let (j, k, modes) = (0..=n)
        .flat_map(|j| (j..=n).map(move |k| (j, k)))
        .find_map(|(j, k)| {
            let modes: Option<Vec<Broadcast>> = args
                .iter()
                .map(|a| match a.bcast {
                    Broadcast::Scalar => Some(Broadcast::Scalar),
                    _ => mode(&a.p, &oshape, j, k),
                })
                .collect();
            modes.map(|m| (j, k, m))
        })
        .ok_or_else(|| LowerError::Internal(format!("`{}`: no broadcast split", node.name)))?;
    for (a, m) in args.iter_mut().zip(modes) {
        a.bcast = m;
    }
    for (a, v) in args.iter_mut().zip(operands) {
        if a.bcast != Broadcast::Scalar {
            a.loc = Some(loc(g, plan, e, v)?);
        }
    }
    let rows: usize = oshape[j..k].iter().product();
    let cols: usize = oshape[k..].iter().product();
    let outer: usize = oshape[..j].iter().product();
    let inner = rows * cols;
    let nb = e.nbuf();
    // Tiles of tr x tc (at most 4096 columns), halved until all fit.
    let (mut tr, mut tc) = (rows, cols.min(4096));
    let out_slots = loop {
        e.sram_reset();
        let mut fits = true;
        for a in args.iter_mut() {
            let elems = match a.bcast {
                Broadcast::None => tr * tc,
                Broadcast::PerRow => tr,
                Broadcast::PerCol => tc,
                Broadcast::Scalar => continue,
            };
            match e.sram_alloc((elems * 4) as u64, nb) {
                Ok(s) => a.slots = Some(s),
                Err(()) => fits = false,
            }
        }
        if fits {
            if let Ok(s) = e.sram_alloc((tr * tc * 4) as u64, nb) {
                break s;
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
    // (outer index, tile row, col, rows, cols) of step s.
    let dims = |s: usize| {
        let (o, s) = (s / per_block, s % per_block);
        let (r0, c0) = ((s / ct) * tr, (s % ct) * tc);
        (o, r0, c0, (rows - r0).min(tr), (cols - c0).min(tc))
    };
    let pitch = (cols * 4) as u32;
    let block = |cr: usize, cc: usize| {
        (
            Strided::rows(cc as u32 * 4, cr as u32, pitch),
            Strided::rows(cc as u32 * 4, cr as u32, tc as u32 * 4),
        )
    };
    let args = &args;
    let oshape = &oshape;
    e.pipeline(
        outer * per_block,
        |e, s, slot| {
            let (o, r0, c0, cr, cc) = dims(s);
            for a in args {
                let (Some(l), Some(sl)) = (a.loc, a.slots) else {
                    continue;
                };
                let base = a.outer(oshape, j, o);
                let (off, n) = match a.bcast {
                    Broadcast::None => {
                        let (mem, sram) = block(cr, cc);
                        e.load(
                            l,
                            ((base + r0 * cols + c0) * 4) as u64,
                            sl.at(slot),
                            mem,
                            sram,
                        );
                        continue;
                    }
                    Broadcast::PerRow => (base + r0, cr),
                    _ => (base + c0, cc),
                };
                let v = Strided::contiguous(n as u32 * 4);
                e.load(l, (off * 4) as u64, sl.at(slot), v, v);
            }
            Ok(())
        },
        |e, s, slot| {
            let (o, r0, c0, cr, cc) = dims(s);
            let operand = |a: &Arg| SelectOperand {
                bcast: a.bcast,
                tile: Tile {
                    addr: a.slots.map_or(0, |sl| sl.at(slot)),
                    ld: if a.bcast == Broadcast::None {
                        tc as u32
                    } else {
                        0
                    },
                },
                scalar: a.scalar,
            };
            let dst = Tile {
                addr: out_slots.at(slot),
                ld: tc as u32,
            };
            e.push(Insn::Select {
                dtype: DType::F32,
                rows: cr as u32,
                cols: cc as u32,
                cond: operand(&args[0]),
                a: operand(&args[1]),
                b: operand(&args[2]),
                out: dst,
            });
            let (mem, sram) = block(cr, cc);
            let off = ((o * inner + r0 * cols + c0) * 4) as u64;
            e.store(out, off, dst.addr, mem, sram);
            Ok(())
        },
    )
}
