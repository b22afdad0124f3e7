//! Data-movement ops (concat, slice, pad, transpose, depth/space, resize,
//! and copies of graph outputs) as strided DMA through the SRAM.
//!
//! Most of them are one *strided copy*: every result element is an operand
//! element at an affine offset, described by dimensions of (size, source
//! stride, destination stride). Dimensions that are contiguous on both
//! sides merge; the innermost contiguous run becomes the DMA row (one
//! element when the op reorders the innermost axis); the two largest other
//! dimensions become the rows and planes of one DMA_LOAD (source strides)
//! and one DMA_STORE (destination strides) through an SRAM slot; the rest
//! are loops. So an instruction pair moves a whole SRAM slot whenever the
//! shapes allow, and at worst (a transpose of the innermost axis) a slot's
//! worth of single-element rows.
//!
//! Resize gathers columns and rows with COPY inside the SRAM (whole
//! arithmetic runs of them per instruction), and interpolates with BINARY.

use super::emit::Emitter;
use super::plan::Loc;
use super::LowerError;
use crate::ir::{
    linear_taps, nearest_indices, strides, CoordMode, DType, Graph, Op, PadMode, Quant, ResizeMode,
    TensorType, ValueId,
};
use npu_isa::{self as isa, Broadcast, Insn, Strided, Tile};

type R<T> = Result<T, String>;

/// One dimension of a strided copy: `size` elements, `src` / `dst`
/// elements apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dim {
    pub size: usize,
    pub src: i64,
    pub dst: i64,
}

/// Copy elements of `es` bytes: for every multi-index `i` over `dims`
/// (outermost first), destination element `dst_off + sum(i * dst)` gets
/// source element `src_off + sum(i * src)` (offsets in elements).
pub fn strided_copy(
    e: &mut Emitter,
    src: Loc,
    src_off: i64,
    dst: Loc,
    dst_off: i64,
    es: usize,
    dims: &[Dim],
) -> R<()> {
    // Size-1 dimensions do nothing; neighbours contiguous on both sides merge.
    let mut merged: Vec<Dim> = Vec::new();
    for d in dims.iter().rev().filter(|d| d.size != 1) {
        if d.size == 0 {
            return Ok(());
        }
        match merged.last_mut() {
            Some(inner)
                if d.src == inner.src * inner.size as i64
                    && d.dst == inner.dst * inner.size as i64 =>
            {
                inner.size *= d.size;
            }
            _ => merged.push(*d),
        }
    }
    // `merged` is innermost first.
    let row = match merged.first() {
        Some(d) if d.src == 1 && d.dst == 1 => merged.remove(0).size,
        _ => 1,
    };
    // The two largest dimensions with non-negative strides ride in the
    // instruction; the others are loops.
    let mut order: Vec<usize> = (0..merged.len())
        .filter(|&i| merged[i].src >= 0 && merged[i].dst > 0)
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(merged[i].size));
    order.truncate(2);
    order.sort_unstable();
    let unit = Dim {
        size: 1,
        src: 0,
        dst: 0,
    };
    let rows_dim = order.first().map_or(unit, |&i| merged[i]);
    let planes_dim = order.get(1).map_or(unit, |&i| merged[i]);
    let loops: Vec<Dim> = (0..merged.len())
        .filter(|i| !order.contains(i))
        .map(|i| merged[i])
        .collect();

    e.sram_reset();
    let cap = (e.params.sram_size as usize / 64) * 64;
    let slot = e
        .sram_alloc(cap as u64, 1)
        .map_err(|_| "no SRAM for a copy slot".to_string())?
        .at(0);
    let row_chunk = row.min(cap / es).max(1);
    if row_chunk * es > cap {
        return Err(format!("one {es}-byte element does not fit"));
    }
    let rows_chunk = rows_dim.size.min(cap / (row_chunk * es)).max(1);
    let planes_chunk = planes_dim
        .size
        .min(cap / (row_chunk * es * rows_chunk))
        .max(1);
    let bytes = |x: i64| -> R<u32> {
        u32::try_from(x * es as i64).map_err(|_| format!("a stride of {x} elements is too large"))
    };
    let (rs_src, rs_dst) = (bytes(rows_dim.src)?, bytes(rows_dim.dst)?);
    let (ps_src, ps_dst) = (bytes(planes_dim.src)?, bytes(planes_dim.dst)?);
    let total_loops: usize = loops.iter().map(|d| d.size).product();
    let mut idx = vec![0usize; loops.len()];
    for _ in 0..total_loops {
        let (mut so, mut d_o) = (src_off, dst_off);
        for (d, &i) in loops.iter().zip(&idx) {
            so += d.src * i as i64;
            d_o += d.dst * i as i64;
        }
        for p0 in (0..planes_dim.size).step_by(planes_chunk) {
            let np = planes_chunk.min(planes_dim.size - p0);
            for r0 in (0..rows_dim.size).step_by(rows_chunk) {
                let nr = rows_chunk.min(rows_dim.size - r0);
                for c0 in (0..row).step_by(row_chunk) {
                    let nc = row_chunk.min(row - c0);
                    let s = so + p0 as i64 * planes_dim.src + r0 as i64 * rows_dim.src + c0 as i64;
                    let d = d_o + p0 as i64 * planes_dim.dst + r0 as i64 * rows_dim.dst + c0 as i64;
                    if s < 0 || d < 0 {
                        return Err("a copy reaches before its buffer".into());
                    }
                    let rb = (nc * es) as u32;
                    let shape = [rb, nr as u32, np as u32];
                    // The SRAM side is packed; each memory side with rows
                    // (and planes) that follow each other moves as longer
                    // rows (the DMA engine costs a cycle per row).
                    let (mem, sram) = collapse(shape, [rs_src, ps_src]);
                    e.load(src, (s as u64) * es as u64, slot, mem, sram);
                    let (mem, sram) = collapse(shape, [rs_dst, ps_dst]);
                    e.store(dst, (d as u64) * es as u64, slot, mem, sram);
                }
            }
        }
        // Odometer over the loop dimensions, innermost first.
        for (k, d) in loops.iter().enumerate() {
            idx[k] += 1;
            if idx[k] < d.size {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(())
}

/// A transfer of `shape` with memory strides `stride` from or to a packed
/// SRAM slot, as (memory side, SRAM side) with contiguous rows merged.
fn collapse(shape: [u32; 3], stride: [u32; 2]) -> (Strided, Strided) {
    let [rb, nr, np] = shape;
    let packed = |shape: [u32; 3]| Strided {
        shape,
        stride: [shape[0], shape[0] * shape[1]],
    };
    if stride[0] == rb || nr == 1 {
        // Rows back to back: one row per plane.
        let row = rb * nr;
        if np == 1 || stride[1] == row {
            let all = [row * np, 1, 1];
            return (packed(all), packed(all));
        }
        let s = [row, np, 1];
        let mem = Strided {
            shape: s,
            stride: [stride[1], stride[1].saturating_mul(np)],
        };
        return (mem, packed(s));
    }
    (Strided { shape, stride }, packed(shape))
}

/// Dimensions of a contiguous result `out` read from an operand of shape
/// `x` (row-major): result axis `d` walks `src[d]` operand elements.
fn view(out: &[usize], src: &[i64]) -> Vec<Dim> {
    let os = strides(out);
    out.iter()
        .zip(src)
        .zip(os)
        .map(|((&size, &src), dst)| Dim {
            size,
            src,
            dst: dst as i64,
        })
        .collect()
}

fn istrides(shape: &[usize]) -> Vec<i64> {
    strides(shape).into_iter().map(|s| s as i64).collect()
}

/// The strided-copy form of a slice, transpose, depth_to_space or
/// space_to_depth: (source offset, dimensions).
fn copy_form(op: &Op, x: &[usize], out: &[usize]) -> Option<(i64, Vec<Dim>)> {
    let xs = istrides(x);
    match op {
        Op::Slice { begin, step, .. } => {
            let off = begin.iter().zip(&xs).map(|(&b, &s)| b as i64 * s).sum();
            let src: Vec<i64> = step.iter().zip(&xs).map(|(&st, &s)| st * s).collect();
            Some((off, view(out, &src)))
        }
        Op::Transpose { perm, .. } => {
            let src: Vec<i64> = perm.iter().map(|&p| xs[p]).collect();
            Some((0, view(out, &src)))
        }
        Op::DepthToSpace { block, crd, .. } => {
            // The result as [n, c, h, by, w, bx].
            let (b, c, h, w) = (*block, out[1], x[2], x[3]);
            let shape = [x[0], c, h, b, w, b];
            let hw = (h * w) as i64;
            let (bi, c_s, by_s, bx_s) = (b as i64, c as i64, b as i64, 1i64);
            let (cs, bys, bxs) = if *crd {
                (bi * bi * hw, by_s * hw, bx_s * hw)
            } else {
                (hw, bi * c_s * hw, c_s * hw)
            };
            let src = [xs[0], cs, w as i64, bys, 1, bxs];
            Some((0, view(&shape, &src)))
        }
        Op::SpaceToDepth { block, .. } => {
            // The result as [n, by, bx, c, h', w'].
            let (b, c, w) = (*block, x[1], x[3]);
            let shape = [x[0], b, b, c, out[2], out[3]];
            let src = [xs[0], w as i64, 1, xs[1], (b * w) as i64, b as i64];
            Some((0, view(&shape, &src)))
        }
        _ => None,
    }
}

/// Lower one data-movement op (or the copy of a graph output that is a
/// reshape): `xl` is where each operand lies, `out` the result.
pub fn lower(
    g: &Graph,
    node_v: ValueId,
    xls: &[Loc],
    out: Loc,
    e: &mut Emitter,
) -> Result<(), LowerError> {
    let node = g.node(node_v);
    let ty = &node.ty;
    let es = ty.dtype.size();
    let sram = e.params.sram_size;
    let small = |why: String| LowerError::SramTooSmall {
        name: node.name.clone(),
        op: node.op.name(),
        sram,
        why,
    };
    let res = match &node.op {
        Op::Reshape { .. } => {
            let n = ty.elems();
            strided_copy(
                e,
                xls[0],
                0,
                out,
                0,
                es,
                &[Dim {
                    size: n,
                    src: 1,
                    dst: 1,
                }],
            )
        }
        Op::Concat { xs, axis } => {
            let os = istrides(&ty.shape);
            let mut at = 0i64;
            let mut r = Ok(());
            for (v, &xl) in xs.iter().zip(xls) {
                let shape = &g.ty(*v).shape;
                let dims = view_into(shape, &istrides(shape), &os);
                r = r.and_then(|_| strided_copy(e, xl, 0, out, at * os[*axis], es, &dims));
                at += shape[*axis] as i64;
            }
            r
        }
        Op::Pad {
            x,
            begin,
            end,
            value,
            mode,
        } => {
            let shape = &g.ty(*x).shape;
            let os = istrides(&ty.shape);
            let off: i64 = begin.iter().zip(&os).map(|(&b, &s)| b as i64 * s).sum();
            let padded = ty.elems() != g.ty(*x).elems();
            let dims = view_into(shape, &istrides(shape), &os);
            let r = if padded && *mode == PadMode::Constant {
                fill(e, out, ty.bytes(), fill_pattern(ty, *value))
            } else {
                Ok(())
            };
            let r = r.and_then(|_| strided_copy(e, xls[0], 0, out, off, es, &dims));
            match mode {
                PadMode::Constant => r,
                _ => r.and_then(|_| pad_from_edges(e, out, es, shape, begin, end, *mode)),
            }
        }
        Op::Resize {
            x,
            size,
            scale,
            mode,
            coord,
        } => resize(
            e,
            &g.ty(*x).shape,
            *size,
            *scale,
            *mode,
            *coord,
            xls[0],
            out,
            es,
        ),
        op => match copy_form(op, &g.ty(op.operands()[0]).shape, &ty.shape) {
            Some((off, dims)) => strided_copy(e, xls[0], off, out, 0, es, &dims),
            None => {
                return Err(LowerError::Internal(format!(
                    "`{}` ({}) is not a data-movement op",
                    node.name,
                    node.op.name()
                )))
            }
        },
    };
    res.map_err(small)
}

/// An operand of `shape` (strides `src`) placed into a result with strides `dst`.
fn view_into(shape: &[usize], src: &[i64], dst: &[i64]) -> Vec<Dim> {
    (0..shape.len())
        .map(|d| Dim {
            size: shape[d],
            src: src[d],
            dst: dst[d],
        })
        .collect()
}

/// Edge or reflect padding of a result whose interior (the operand, of
/// `shape`) is in place: axis by axis from the innermost, the padding of
/// axis `d` over the rows already complete (the interior of the axes
/// before it, all of the axes after), copied within the result from its
/// edge rows (edge: a source stride of 0; reflect: a stride of -1 row, a
/// loop over the padding).
fn pad_from_edges(
    e: &mut Emitter,
    out: Loc,
    es: usize,
    shape: &[usize],
    begin: &[usize],
    end: &[usize],
    mode: PadMode,
) -> R<()> {
    let r = shape.len();
    let full: Vec<usize> = (0..r).map(|d| begin[d] + shape[d] + end[d]).collect();
    let os = istrides(&full);
    for d in (0..r).rev() {
        let base: i64 = (0..d).map(|k| begin[k] as i64 * os[k]).sum();
        let dims = |n: usize, src: i64| -> Vec<Dim> {
            (0..r)
                .map(|k| match k.cmp(&d) {
                    std::cmp::Ordering::Less => Dim {
                        size: shape[k],
                        src: os[k],
                        dst: os[k],
                    },
                    std::cmp::Ordering::Equal => Dim {
                        size: n,
                        src,
                        dst: os[k],
                    },
                    std::cmp::Ordering::Greater => Dim {
                        size: full[k],
                        src: os[k],
                        dst: os[k],
                    },
                })
                .collect()
        };
        let (b, n, s) = (begin[d] as i64, shape[d] as i64, os[d]);
        // (first result index, count, first source index, source step)
        let parts = match mode {
            PadMode::Edge => [(0, b, b, 0), (b + n, end[d] as i64, b + n - 1, 0)],
            _ => [(0, b, 2 * b, -1), (b + n, end[d] as i64, b + n - 2, -1)],
        };
        for (at, count, from, step) in parts {
            if count > 0 {
                let dm = dims(count as usize, step * s);
                strided_copy(e, out, base + from * s, out, base + at * s, es, &dm)?;
            }
        }
    }
    Ok(())
}

/// FILL's 32-bit pattern for `value` (real units) in a tensor of `ty`.
fn fill_pattern(ty: &TensorType, value: f32) -> u32 {
    match (ty.dtype, &ty.quant) {
        (DType::I8, Some(Quant::PerTensor { scale, zero_point })) => {
            let q = crate::ir::quantize_f32(value, *scale, *zero_point) as u8 as u32;
            q * 0x0101_0101
        }
        (DType::I32, _) => value as i32 as u32,
        _ => value.to_bits(),
    }
}

/// Write `bytes` bytes of `out` with `pattern`: FILL an SRAM slot once,
/// store it as often as needed.
fn fill(e: &mut Emitter, out: Loc, bytes: usize, pattern: u32) -> R<()> {
    e.sram_reset();
    let cap = ((e.params.sram_size as usize / 64) * 64).min(bytes.next_multiple_of(4));
    let slot = e.sram_alloc(cap as u64, 1).map_err(|_| "no SRAM")?.at(0);
    e.push(Insn::Fill {
        dst: slot,
        len: cap as u32,
        pattern,
    });
    let mut at = 0;
    while at < bytes {
        let n = cap.min(bytes - at);
        e.store(
            out,
            at as u64,
            slot,
            Strided::contiguous(n as u32),
            Strided::contiguous(n as u32),
        );
        at += n;
    }
    Ok(())
}

/// A set of result indices along one axis `out0 + k * out_step` (k <
/// count) that read source indices `src0 + k * src_step`: one COPY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    out0: usize,
    out_step: usize,
    src0: usize,
    src_step: usize,
    count: usize,
}

/// Cover the index map `map` (result index -> source index) with runs:
/// for the period f (1..=16) that needs the fewest, each phase `t, t + f,
/// ...` split into maximal arithmetic pieces with a source step >= 1.
fn runs(map: &[usize]) -> Vec<Run> {
    let mut best: Vec<Run> = Vec::new();
    for f in 1..=map.len().clamp(1, 16) {
        let mut rs = Vec::new();
        for t in 0..f.min(map.len()) {
            let phase: Vec<usize> = (t..map.len()).step_by(f).collect();
            let mut k = 0;
            while k < phase.len() {
                let mut count = 1;
                let mut step = 1;
                if k + 1 < phase.len() && map[phase[k + 1]] > map[phase[k]] {
                    step = map[phase[k + 1]] - map[phase[k]];
                    count = 2;
                    while k + count < phase.len()
                        && map[phase[k + count]] == map[phase[k]] + count * step
                    {
                        count += 1;
                    }
                }
                rs.push(Run {
                    out0: phase[k],
                    out_step: f,
                    src0: map[phase[k]],
                    src_step: step,
                    count,
                });
                k += count;
            }
        }
        if best.is_empty() || rs.len() < best.len() {
            best = rs;
        }
        if best.len() <= f {
            break;
        }
    }
    best
}

/// SRAM layout of one resize chunk.
struct Chunk {
    /// Planes (n * c) and result rows per chunk; `rows < out_h` only with
    /// one plane.
    planes: usize,
    rows: usize,
    /// Most input rows one chunk reads.
    in_rows: usize,
}

/// Bilinear interpolation of two taps in place, `x0 = x0 * w0 + x1 * w1`
/// over `rows` x `cols` f32 tiles, the weight vectors `w` broadcast per
/// column (the columns' weights) or per row (the rows').
fn blend(e: &mut Emitter, x: [u32; 2], w: [u32; 2], bcast: Broadcast, rows: u32, cols: u32) {
    let tile = |addr| Tile { addr, ld: cols };
    for t in 0..2 {
        e.push(Insn::Binary {
            op: isa::BinaryOp::Mul,
            dtype: isa::DType::F32,
            bcast,
            rows,
            cols,
            a: tile(x[t]),
            b: Tile { addr: w[t], ld: 0 },
            out: tile(x[t]),
            scalar: 0,
        });
    }
    e.push(Insn::Binary {
        op: isa::BinaryOp::Add,
        dtype: isa::DType::F32,
        bcast: Broadcast::None,
        rows,
        cols,
        a: tile(x[0]),
        b: tile(x[1]),
        out: tile(x[0]),
        scalar: 0,
    });
}

/// Resize of the last two axes of an NCHW tensor (`x` shape): per chunk of
/// planes (or of result rows of one plane), load the input rows it reads;
/// gather the result's columns (COPY per run of columns); gather its rows
/// (COPY per run of rows); for linear, gather both taps and blend them
/// with per-column, then per-row weights (BINARY); store.
#[allow(clippy::too_many_arguments)]
fn resize(
    e: &mut Emitter,
    x: &[usize],
    size: [usize; 2],
    scale: [f32; 2],
    mode: ResizeMode,
    coord: CoordMode,
    xl: Loc,
    out: Loc,
    es: usize,
) -> R<()> {
    let (planes, ih, iw) = (x[0] * x[1], x[2], x[3]);
    let (oh, ow) = (size[0], size[1]);
    let linear = mode == ResizeMode::Linear;
    // Index maps (tap 0 and, for linear, tap 1) and weights per axis.
    let (hmaps, hw, wmaps, ww) = match mode {
        ResizeMode::Nearest(r) => (
            [nearest_indices(ih, oh, scale[0], coord, r), vec![]],
            [vec![], vec![]],
            [nearest_indices(iw, ow, scale[1], coord, r), vec![]],
            [vec![], vec![]],
        ),
        ResizeMode::Linear => {
            let th = linear_taps(ih, oh, scale[0], coord);
            let tw = linear_taps(iw, ow, scale[1], coord);
            (
                [
                    th.iter().map(|t| t.i0).collect(),
                    th.iter().map(|t| t.i1).collect(),
                ],
                [
                    th.iter().map(|t| t.w0).collect::<Vec<f32>>(),
                    th.iter().map(|t| t.w1).collect(),
                ],
                [
                    tw.iter().map(|t| t.i0).collect(),
                    tw.iter().map(|t| t.i1).collect(),
                ],
                [
                    tw.iter().map(|t| t.w0).collect::<Vec<f32>>(),
                    tw.iter().map(|t| t.w1).collect(),
                ],
            )
        }
    };
    let taps = if linear { 2 } else { 1 };
    // Input rows read by result rows r0..r0 + n.
    let in_span = |r0: usize, n: usize| -> (usize, usize) {
        let lo = hmaps[0][r0];
        let hi = (0..taps).map(|t| hmaps[t][r0 + n - 1]).max().unwrap_or(lo);
        (lo, hi - lo + 1)
    };
    // SRAM bytes of a chunk (saturating: the sizes may be absurd).
    let need = |c: &Chunk| -> usize {
        let prod = |v: &[usize]| v.iter().fold(1usize, |a, &b| a.saturating_mul(b));
        let a = prod(&[c.planes, c.in_rows, iw, es]);
        let b = prod(&[taps, c.planes, c.in_rows, ow, es]);
        let o = prod(&[taps, c.planes, c.rows, ow, es]);
        let wv = if linear {
            prod(&[2, ow, 4]).saturating_add(prod(&[2, c.planes, c.rows, 4]))
        } else {
            0
        };
        [a, b, o, wv]
            .iter()
            .fold(0usize, |t, s| t.saturating_add(s.saturating_add(63)))
    };
    let max_in_rows = |rows: usize| -> usize {
        (0..oh)
            .step_by(rows)
            .map(|r0| in_span(r0, rows.min(oh - r0)).1)
            .max()
            .unwrap_or(1)
    };
    let cap = e.params.sram_size as usize;
    let mut c = Chunk {
        planes,
        rows: oh,
        in_rows: max_in_rows(oh),
    };
    while need(&c) > cap {
        if c.planes > 1 {
            c.planes = c.planes.div_ceil(2);
        } else if c.rows > 1 {
            c.rows = c.rows.div_ceil(2);
            c.in_rows = max_in_rows(c.rows);
        } else {
            return Err(format!(
                "one result row of a {iw}-wide input resized to {ow} needs {} bytes",
                need(&c)
            ));
        }
    }
    e.sram_reset();
    let mut alloc = |bytes: usize| {
        e.sram_alloc(bytes as u64, 1)
            .map(|s| s.at(0))
            .map_err(|_| "SRAM".to_string())
    };
    let sa = alloc(c.planes * c.in_rows * iw * es)?;
    let sb = [
        alloc(c.planes * c.in_rows * ow * es)?,
        if linear {
            alloc(c.planes * c.in_rows * ow * es)?
        } else {
            0
        },
    ];
    let so = [
        alloc(c.planes * c.rows * ow * es)?,
        if linear {
            alloc(c.planes * c.rows * ow * es)?
        } else {
            0
        },
    ];
    let (sww, swh) = if linear {
        (
            [alloc(ow * 4)?, alloc(ow * 4)?],
            [alloc(c.planes * c.rows * 4)?, alloc(c.planes * c.rows * 4)?],
        )
    } else {
        ([0, 0], [0, 0])
    };
    // The weights as constants: per column, and per row repeated for every
    // plane of a chunk.
    let wconst = if linear {
        let per_row = |t: usize| -> Vec<f32> {
            (0..c.planes.max(1))
                .flat_map(|_| hw[t].iter().copied())
                .collect()
        };
        Some((
            [
                e.constant(&super::ops::f32_bytes(&ww[0])),
                e.constant(&super::ops::f32_bytes(&ww[1])),
            ],
            [
                e.constant(&super::ops::f32_bytes(&per_row(0))),
                e.constant(&super::ops::f32_bytes(&per_row(1))),
            ],
        ))
    } else {
        None
    };
    if let Some((wc, _)) = &wconst {
        for t in 0..2 {
            let n = (ow * 4) as u32;
            e.load(
                wc[t],
                0,
                sww[t],
                Strided::contiguous(n),
                Strided::contiguous(n),
            );
        }
    }
    let col_runs: Vec<Vec<Run>> = (0..taps).map(|t| runs(&wmaps[t])).collect();
    let e32 = |n: usize| -> u32 { (n * es) as u32 };
    for p0 in (0..planes).step_by(c.planes) {
        let np = c.planes.min(planes - p0);
        for r0 in (0..oh).step_by(c.rows) {
            let nr = c.rows.min(oh - r0);
            let (lo, nin) = in_span(r0, nr);
            // Input rows lo..lo + nin of planes p0..p0 + np, packed.
            e.load(
                xl,
                ((p0 * ih + lo) * iw * es) as u64,
                sa,
                Strided {
                    shape: [e32(nin * iw), np as u32, 1],
                    stride: [e32(ih * iw), e32(ih * iw).saturating_mul(np as u32)],
                },
                Strided {
                    shape: [e32(nin * iw), np as u32, 1],
                    stride: [e32(nin * iw), e32(nin * iw) * np as u32],
                },
            );
            // Columns: B[t][plane row][j] = A[plane row][wmap[t][j]].
            for t in 0..taps {
                for run in &col_runs[t] {
                    if run.src_step == 1 && run.out_step == 1 {
                        // Consecutive columns from consecutive columns: rows.
                        let rows = Strided {
                            shape: [e32(run.count), (np * nin) as u32, 1],
                            stride: [e32(iw), e32(iw) * (np * nin) as u32],
                        };
                        e.push(Insn::Copy {
                            src: sa + e32(run.src0),
                            dst: sb[t] + e32(run.out0),
                            src_layout: rows,
                            dst_layout: Strided {
                                stride: [e32(ow), e32(ow) * (np * nin) as u32],
                                ..rows
                            },
                        });
                        continue;
                    }
                    e.push(Insn::Copy {
                        src: sa + e32(run.src0),
                        dst: sb[t] + e32(run.out0),
                        src_layout: Strided {
                            shape: [es as u32, run.count as u32, (np * nin) as u32],
                            stride: [e32(run.src_step), e32(iw)],
                        },
                        dst_layout: Strided {
                            shape: [es as u32, run.count as u32, (np * nin) as u32],
                            stride: [e32(run.out_step), e32(ow)],
                        },
                    });
                }
            }
            if let Some((_, _)) = &wconst {
                // B0 = B0 * w0[col] + B1 * w1[col].
                blend(e, sb, sww, Broadcast::PerCol, (np * nin) as u32, ow as u32);
            }
            // Rows: O[t][plane][r] = B0[plane][hmap[t][r0 + r] - lo].
            let band: Vec<Vec<usize>> = (0..taps)
                .map(|t| hmaps[t][r0..r0 + nr].iter().map(|&i| i - lo).collect())
                .collect();
            for t in 0..taps {
                for run in runs(&band[t]) {
                    let rb = e32(ow);
                    e.push(Insn::Copy {
                        src: sb[0] + rb * run.src0 as u32,
                        dst: so[t] + rb * run.out0 as u32,
                        src_layout: Strided {
                            shape: [rb, run.count as u32, np as u32],
                            stride: [rb * run.src_step as u32, rb * nin as u32],
                        },
                        dst_layout: Strided {
                            shape: [rb, run.count as u32, np as u32],
                            stride: [rb * run.out_step as u32, rb * nr as u32],
                        },
                    });
                }
            }
            if let Some((_, hc)) = &wconst {
                // O0 = O0 * h0[row] + O1 * h1[row], the rows' weights for
                // this band (repeated per plane).
                let rows = (np * nr) as u32;
                let n = rows * 4;
                for t in 0..2 {
                    e.load(
                        hc[t],
                        (r0 * 4) as u64,
                        swh[t],
                        Strided::contiguous(n),
                        Strided::contiguous(n),
                    );
                }
                blend(e, so, swh, Broadcast::PerRow, rows, ow as u32);
            }
            // Result rows r0..r0 + nr of planes p0..p0 + np.
            e.store(
                out,
                ((p0 * oh + r0) * ow * es) as u64,
                so[0],
                Strided {
                    shape: [e32(nr * ow), np as u32, 1],
                    stride: [e32(oh * ow), e32(oh * ow).saturating_mul(np as u32)],
                },
                Strided {
                    shape: [e32(nr * ow), np as u32, 1],
                    stride: [e32(nr * ow), e32(nr * ow) * np as u32],
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(map: &[usize], rs: &[Run]) -> Vec<Option<usize>> {
        let mut got = vec![None; map.len()];
        for r in rs {
            for k in 0..r.count {
                assert!(got[r.out0 + k * r.out_step].is_none(), "covered twice");
                got[r.out0 + k * r.out_step] = Some(r.src0 + k * r.src_step);
            }
        }
        got
    }

    #[test]
    fn runs_cover_maps() {
        // 2x nearest upsampling: two runs; 2x downsampling: one.
        let up = [0, 0, 1, 1, 2, 2, 3, 3];
        assert_eq!(runs(&up).len(), 2);
        let down = [0, 2, 4, 6];
        assert_eq!(runs(&down).len(), 1);
        for map in [
            &up[..],
            &down[..],
            &[0, 0, 0, 1, 1, 2, 2, 3][..],
            &[0, 1, 1, 2, 3, 3, 4][..],
            &[5][..],
        ] {
            let got = covered(map, &runs(map));
            assert_eq!(got, map.iter().map(|&m| Some(m)).collect::<Vec<_>>());
        }
    }
}
