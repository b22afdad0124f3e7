//! SELECT (opcode 0x34): `out = cond != 0 ? a : b`, each operand a tile, a
//! per-row or per-column vector, or an immediate (npu-hw.rst, "Comparisons
//! and select").

use super::{vector, Res, Sram, TileRef};
use npu_isa::{Broadcast, SelectOperand, Tile};

/// Copies of the three operands, kept between instructions so that SELECT
/// does not allocate each time (each at most the SRAM's size).
#[derive(Default)]
pub(super) struct Scratch([Vec<u32>; 3]);

/// What a SELECT did, for the cost model and the timeline.
pub(super) struct Done {
    pub elems: u64,
    pub reads: [(u64, u64); 3],
    pub nreads: usize,
    pub write: (u64, u64),
}

/// Check every operand against the SRAM (cond, a, b, then out; the first
/// fault wins), read all three, then write `out`: overlapping operands give
/// the result computed from the inputs as they were.
pub(super) fn select(
    sram: &mut Sram,
    scratch: &mut Scratch,
    (rows, cols): (u32, u32),
    ops: [SelectOperand; 3],
    out: Tile,
) -> Res<Done> {
    let mut reads = [(0, 0); 3];
    let mut nreads = 0;
    // Per operand: its broadcast and the row length of its dense copy.
    let mut shape = [(Broadcast::None, 0usize); 3];
    for (i, op) in ops.iter().enumerate() {
        let buf = &mut scratch.0[i];
        let t = match op.bcast {
            Broadcast::None => Some(TileRef::new(sram, op.tile, rows, cols, 4)?),
            Broadcast::PerRow => Some(vector(sram, op.tile.addr, rows)?),
            Broadcast::PerCol => Some(vector(sram, op.tile.addr, cols)?),
            Broadcast::Scalar => None,
        };
        match t {
            Some(t) => {
                t.load32_into(sram, buf);
                reads[nreads] = t.range();
                nreads += 1;
                shape[i] = (op.bcast, t.cols);
            }
            None => {
                buf.clear();
                buf.push(op.scalar);
                shape[i] = (Broadcast::Scalar, 0);
            }
        }
    }
    let to = TileRef::new(sram, out, rows, cols, 4)?;
    let [cv, av, bv] = &scratch.0;
    let get = |(bcast, n): (Broadcast, usize), v: &[u32], r: usize, c: usize| match bcast {
        Broadcast::None => v[r * n + c],
        Broadcast::PerRow => v[r],
        Broadcast::PerCol => v[c],
        Broadcast::Scalar => v[0],
    };
    for r in 0..to.rows {
        let row = &mut sram.words[to.base + r * to.ld..][..to.cols];
        for (c, o) in row.iter_mut().enumerate() {
            // True where the f32 condition is not +-0 (NaN is true).
            let taken = get(shape[0], cv, r, c) & 0x7fff_ffff != 0;
            *o = if taken {
                get(shape[1], av, r, c)
            } else {
                get(shape[2], bv, r, c)
            };
        }
    }
    Ok(Done {
        elems: to.elems(),
        reads,
        nreads,
        write: to.range(),
    })
}
