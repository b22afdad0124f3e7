//! f32 conv2d with constant weights, as tap-wise accumulating matrix
//! products ("direct" convolution; no im2col matrix).
//!
//! Activations stay NCHW in memory and planar in SRAM. A band of output
//! rows reads a band of padded input rows, loaded once into SRAM as
//! `[phase][channel][row][col]`, where the `stride_h x stride_w` phases
//! split the rows and columns by their remainder modulo the stride (a
//! stride-1 conv has one phase). Row phases are whole rows of the image,
//! one strided DMA each. Column phases (stride_w > 1) are every
//! `stride_w`-th element of a row: rather than a DMA row per element (the
//! DMA engine moves at most a row a cycle, so 4-byte rows run at a
//! sixteenth of its bandwidth), the rows are loaded whole into a staging
//! area of the band slot and split by one strided UNARY move per phase
//! (CONVERT for the widened int8 depthwise band), 32 elements a cycle on
//! the compute engine (`split_phases`). The staging takes up to
//! `stride_w - 1` more phase planes, so the tiling chooser weighs it
//! against the per-element loads, which still win where they buy larger
//! bands and hide behind the MATMULs.
//!
//! In a phase, every filter tap `(r, s)` sees
//! the output pixels as one contiguous run of the flattened phase plane
//! (row pitch `PW`), so one MATMUL per tap computes
//!
//! ```text
//!   acc[k][i] (+)= sum_c W[k][c][r][s] * band[phase(r, s)][c][off(r, s) + i]
//! ```
//!
//! for the `kc` output channels and `cc` input channels of the tile and
//! every output pixel `i = y * PW + x` of the band (the `PW - out_w`
//! columns past the right edge are computed and never stored). The result
//! is already planar: bias (per row), activation, and one strided DMA store
//! per tile. Weights are packed at compile time as `[tap][kc][cc]` per tile
//! and, when the input channels fit in one tile, loaded once per block of
//! output channels. Depthwise convolutions (one input channel per group)
//! use a per-row BINARY multiply-add per tap instead of a MATMUL.
//!
//! int8 runs the same scheme on an i8 band (padding filled with the input's
//! zero point, which is real 0) with i8 MATMULs into i32 accumulators. The
//! zero points' corrections (ONNX QLinearConv): with `n` weights per output
//! channel,
//!
//! ```text
//!   sum (x - zx)(w - zw) = sum x w  - zw sum x  - zx sum w  + n zx zw
//! ```
//!
//! the last two terms are constants folded into the bias at compile time;
//! `sum x` (when zw != 0) is one more accumulator row, computed by a row of
//! ones appended to every tap's weights (padding holds zx, so the sum runs
//! over the whole receptive field as ONNX pads: with real zeros). A
//! per-tensor zw scales that row and subtracts it from every channel row;
//! per-channel zero points `zw[k]` subtract the outer product `zw[k] *
//! sum_x[i]`, built in the temporary tile (FILL 0, add the sums per
//! column, multiply by zw per row). The epilogue is the f32
//! requantization of `ops::requant_tile`, with channels as rows. Depthwise
//! int8 widens the band to i32 subtracting zx (CONVERT), multiplies by the
//! weights minus zw (packed as i32) and needs no correction.

use super::emit::{Emitter, Slots};
use super::plan::Loc;
use crate::ir::{UnaryOp, Window};
use npu_isa::{self as isa, Broadcast, Insn, Strided, Tile};

const ES: usize = 4;

/// What one instruction weighs against modelled cycles when choosing
/// tiles: command bytes are worth keeping small (a job holds at most
/// 16 MiB, and every byte is fetched), so a tiling that saves an
/// instruction may cost up to this many cycles more.
const INSN_WEIGHT: u64 = 128;

/// The filter of a direct convolution (KCRS, row-major).
#[derive(Clone, Copy)]
pub(super) enum Filter<'a> {
    F32(&'a [f32]),
    I8(&'a [i8]),
}

/// The int8 side of a direct convolution.
pub(super) struct QConv {
    /// Input zero point, and the weight zero point of each output channel.
    pub zx: i8,
    pub zw: Vec<i8>,
    /// Per output channel: the bias with the input zero point's
    /// corrections folded in (none for depthwise), and the scales (or the
    /// one per-tensor scale).
    pub bias: Vec<i32>,
    pub scales: Result<Vec<f32>, f32>,
    pub zero_point: i8,
    pub lo: i8,
    pub hi: i8,
}

pub(super) struct DirectConv<'a> {
    /// NCHW input shape.
    pub x: [usize; 4],
    /// KCRS filter shape (C per group).
    pub w: [usize; 4],
    pub out_hw: [usize; 2],
    /// The window; its padding is the top and left padding.
    pub win: Window,
    /// Bottom and right padding (a fused asymmetric pad; else the same as
    /// the top and left).
    pub pad_end: [usize; 2],
    pub groups: usize,
    pub weight: Filter<'a>,
    /// The f32 bias (int8: in `q`).
    pub bias: Option<&'a [f32]>,
    pub q: Option<QConv>,
    pub act: Option<UnaryOp>,
    /// An f32 elementwise chain after the bias and residual (chain.rs),
    /// its registers after the accumulator in the temporary slot.
    pub chain: Option<&'a super::chain::Chain>,
    /// The chain's per-channel operands (`Chain::chans`), loaded per
    /// accumulator tile.
    pub chans: Vec<ChannelScale>,
    /// Pooling run on each band's output tile before the store; `out` is
    /// then the pool's result.
    pub pool: Option<PoolFuse>,
    pub xl: Loc,
    /// Added to the result before the activation (same shape).
    pub residual: Option<Loc>,
    /// A per-channel multiply of the input, run on each loaded band.
    pub scale: Option<ChannelScale>,
    pub out: Loc,
}

/// Per-channel f32 values: a multiply of a direct conv2d's input (plan.rs
/// `scale_fuses`: stride 1, no padding, so a band holds input elements
/// only; each band is multiplied in SRAM by its channels' factors, the
/// BINARY the unfused multiply runs, before the taps read it), or a
/// chain's per-channel operand on the output tile.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChannelScale {
    /// The f32 factors: one per channel, or per image and channel.
    pub at: Loc,
    pub per_image: bool,
}

/// A pooling op fused after the convolution (plan.rs `pool_fuses`). Each
/// band's planes hold the conv rows of `P` whole pooling windows, `rows =
/// (P - 1) * stride + kernel`, from conv row `P * stride * band - pad` on.
/// Where windows overlap (kernel > stride), a band takes the rows it
/// shares with the previous one from that band's planes (`kept_rows`) or
/// computes them again. Padding (max pools only) is -inf in the planes:
/// rows above the image (the first band's `Step::top`) and below it, and
/// the computed columns past the right edge where a window reads them;
/// POOL pads the columns past the plane itself.
#[derive(Clone, Copy, Debug)]
pub(super) struct PoolFuse {
    pub kind: crate::ir::PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Symmetric padding (rows, columns); 0 for average pools.
    pub pad: [usize; 2],
    /// The pooled result's height and width.
    pub out_hw: [usize; 2],
}

/// Geometry of one band of `rows` output rows.
#[derive(Clone, Copy, Debug)]
struct Band {
    /// Padded input rows the band reads.
    bh: usize,
    /// Rows and columns of a phase plane.
    ph: usize,
    pw: usize,
    /// Output pixels computed per row of channels (`(rows-1)*pw + out_w`).
    m: usize,
}

/// Tile sizes: output rows per band, output channels per block, input
/// channels per block.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    rows: usize,
    kc: usize,
    cc: usize,
    /// One slot for the band and the weights: larger tiles, fewer
    /// instructions, no overlap of their loads with the compute.
    single: bool,
    /// Column stride > 1: the band's rows are loaded whole and split into
    /// the column phases in SRAM (`split_phases`), rather than loaded one
    /// element per DMA row (which the DMA engine charges a cycle each).
    split: bool,
}

impl DirectConv<'_> {
    fn depthwise(&self) -> bool {
        self.w[1] == 1 && self.groups > 1 && self.w[0] == self.groups
    }

    /// Bytes of an input element in the band.
    fn xes(&self) -> usize {
        if self.q.is_some() {
            1
        } else {
            ES
        }
    }

    /// Bytes of a packed weight in SRAM (depthwise int8 packs `w - zw` as i32).
    fn wes(&self) -> usize {
        if self.q.is_some() && !self.depthwise() {
            1
        } else {
            ES
        }
    }

    /// An extra accumulator row holding the window sums of x (for the
    /// weight zero point's correction).
    fn sum_row(&self) -> usize {
        match &self.q {
            Some(q) if q.zw.iter().any(|&z| z != 0) && !self.depthwise() => 1,
            _ => 0,
        }
    }

    /// The weight zero points differ between channels (and the sum row is
    /// corrected per channel, see the module comment).
    fn zw_per_channel(&self) -> bool {
        match &self.q {
            Some(q) => self.sum_row() == 1 && q.zw.iter().any(|&z| z != q.zw[0]),
            None => false,
        }
    }

    /// Per-channel constants, in i32/f32 words per channel: the bias, the
    /// scales when per channel, the zero points when per channel.
    fn const_words(&self) -> usize {
        match &self.q {
            None => 1,
            Some(q) => 1 + q.scales.is_ok() as usize + self.zw_per_channel() as usize,
        }
    }

    fn band(&self, rows: usize) -> Band {
        let [sh, sw] = self.win.stride;
        let bh = (rows - 1) * sh + (self.w[2] - 1) * self.win.dilation[0] + 1;
        // Row pitch. With column stride 1, rows are `left` zeros, the
        // image row, and `right - left` more zeros if the right padding is
        // the larger: the right padding a tap reads past a row's end ends
        // in the next row's left padding (or, after the last row, `tail()`
        // zeros), so only max(left, right) columns per row are computed and
        // dropped. Otherwise the padded width over the stride.
        let (left, right) = (self.win.padding[1], self.pad_end[1]);
        let pw = if sw == 1 {
            self.x[3] + left.max(right)
        } else {
            (self.x[3] + left + right).div_ceil(sw)
        };
        Band {
            bh,
            ph: bh.div_ceil(sh),
            pw,
            m: (rows - 1) * pw + self.out_hw[1],
        }
    }

    /// Zero elements after the last phase plane of a band (the right
    /// padding of its last row, see `band`).
    fn tail(&self) -> usize {
        if self.win.stride[1] == 1 {
            // The right padding past the last row's zeros (see `band`).
            self.win.padding[1].min(self.pad_end[1])
        } else {
            0
        }
    }

    /// The phases some tap reads, as (row phase, column phase).
    fn phases(&self) -> Vec<(usize, usize)> {
        let [sh, sw] = self.win.stride;
        let [dh, dw] = self.win.dilation;
        let mut v = Vec::new();
        for py in 0..sh {
            for px in 0..sw {
                let row = (0..self.w[2]).any(|r| (r * dh) % sh == py);
                let col = (0..self.w[3]).any(|s| (s * dw) % sw == px);
                if row && col {
                    v.push((py, px));
                }
            }
        }
        v
    }

    fn phase_index(&self, py: usize, px: usize) -> usize {
        py * self.win.stride[1] + px
    }

    /// The row phases some tap reads.
    fn row_phases(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.phases().iter().map(|p| p.0).collect();
        v.dedup();
        v
    }

    /// int8 depthwise: the taps read the band widened to i32.
    fn widened(&self) -> bool {
        self.q.is_some() && self.depthwise()
    }

    /// With `t.split`, where the rows of row phase `py` are staged in the
    /// band slot (elements from its start), for phase planes of `p`
    /// elements (all channels): `sw` planes of rows from the first plane
    /// of the row phase's last column phase on, so that each phase's move
    /// (`split_phases`) writes below what later moves read; in place, as
    /// the moves of a widened band write to the widened slot.
    fn stage_offset(&self, py: usize, p: usize) -> usize {
        let sw = self.win.stride[1];
        if self.widened() {
            py * sw * p
        } else {
            (py * sw + sw - 1) * p
        }
    }

    /// Elements the band slot holds past its phase planes for `cc`
    /// channels: the staged rows of the last row phase that spill past
    /// the end (`stage_offset`).
    fn stage_extra(&self, t: Tiles, cc: usize) -> usize {
        let [sh, sw] = self.win.stride;
        if t.split && !self.widened() && self.row_phases().contains(&(sh - 1)) {
            let b = self.band(t.rows);
            (sw - 1) * cc * b.ph * b.pw
        } else {
            0
        }
    }

    /// Bytes of one register of the chain: an accumulator tile, 64-byte
    /// aligned.
    fn reg_bytes(&self, t: Tiles) -> usize {
        let rows = if self.depthwise() { t.cc } else { t.kc };
        (rows * self.acc_ld(t) * ES).next_multiple_of(64)
    }

    /// Leading dimension of the accumulator (elements per channel): the
    /// band's computed pixels, or with a fused pool whole rows of the
    /// largest band (POOL reads planes `[channel][t.rows][pw]`, packed).
    fn acc_ld(&self, t: Tiles) -> usize {
        let b = self.band(t.rows);
        if self.pool.is_some() {
            t.rows * b.pw
        } else {
            b.m
        }
    }

    /// With a fused pool whose windows overlap, the conv rows a band
    /// takes from the previous band's planes (copied after its POOL)
    /// rather than computing them again: `kernel - stride` rows. Not where
    /// the pooled planes are a register of the chain in the temporary slot
    /// that a depthwise conv's taps overwrite; those bands recompute.
    fn kept_rows(&self) -> usize {
        match (self.pool, self.chain) {
            (Some(_), Some(c)) if c.out != 0 && self.depthwise() => 0,
            (Some(p), _) => p.kernel[0].saturating_sub(p.stride[0]),
            _ => 0,
        }
    }

    /// POOL's output per band with `t.rows` rows: (rows, columns) of
    /// pooled values per channel (the columns past the pooled width and
    /// the rows past the image are dropped at the store).
    fn pooled(&self, t: Tiles) -> (usize, usize) {
        match self.pool {
            Some(p) => (
                (t.rows - p.kernel[0]) / p.stride[0] + 1,
                (self.band(t.rows).pw + 2 * p.pad[1] - p.kernel[1]) / p.stride[1] + 1,
            ),
            None => (0, 0),
        }
    }

    /// The bands of output rows for a plane of `rows` rows: (first conv
    /// row, conv rows, plane rows above the image). Without a pool, `rows`
    /// rows each; with one, those of `P` pooled rows each (see
    /// `PoolFuse`).
    fn bands(&self, rows: usize) -> Vec<(usize, usize, usize)> {
        let oh = self.out_hw[0];
        match self.pool {
            Some(p) => {
                let per = (rows - p.kernel[0]) / p.stride[0] + 1;
                let kept = self.kept_rows() as isize;
                (0..p.out_hw[0].div_ceil(per))
                    .map(|bi| {
                        let first = (bi * per * p.stride[0]) as isize - p.pad[0] as isize;
                        let y0 = if bi == 0 { 0 } else { first + kept };
                        let end = (first + rows as isize).min(oh as isize);
                        (
                            y0 as usize,
                            (end - y0).max(0) as usize,
                            (y0 - first) as usize,
                        )
                    })
                    .collect()
            }
            None => (0..oh.div_ceil(rows))
                .map(|b| (b * rows, (oh - b * rows).min(rows), 0))
                .collect(),
        }
    }

    /// SRAM bytes per slot: (band, weights, per-channel constants,
    /// accumulator, temporary, widened band, the band's channel factors,
    /// the chain's per-channel operands).
    fn slot_bytes(&self, t: Tiles) -> [u64; 8] {
        let b = self.band(t.rows);
        let phases = self.win.stride[0] * self.win.stride[1];
        let taps = self.w[2] * self.w[3];
        let cells = phases * t.cc * b.ph * b.pw + self.tail();
        let band = ((cells + self.stage_extra(t, t.cc)) * self.xes()).next_multiple_of(4) as u64;
        let int8 = self.q.is_some();
        let ld = self.acc_ld(t);
        let (wts, acc, tmp) = if self.depthwise() {
            (taps * t.cc * ES, t.cc * ld * ES, t.cc * ld * ES)
        } else {
            let rows = t.kc + self.sum_row();
            (
                taps * rows * t.cc * self.wes(),
                rows * ld * ES,
                // The int8 result (and before it the per-channel zero
                // points' correction, i32).
                match (int8, self.zw_per_channel()) {
                    (_, true) => t.kc * ld * ES,
                    (true, false) => t.kc * b.m,
                    _ => 0,
                },
            )
        };
        // The chain's registers but the accumulator, one tile each (the
        // depthwise temporary is free in the epilogue).
        let tmp = match self.chain {
            Some(c) if c.regs > 1 => tmp.max((c.regs as usize - 1) * self.reg_bytes(t)),
            _ => tmp,
        };
        let consts = t.kc.max(t.cc) * ES * self.const_words();
        // The widened int8 depthwise band, or the pooled f32 tile.
        let wide = if int8 && self.depthwise() {
            cells * ES
        } else if self.pool.is_some() {
            let (ph, pw) = self.pooled(t);
            let rows = if self.depthwise() { t.cc } else { t.kc };
            rows * ph * pw * ES
        } else {
            0
        };
        [
            band,
            wts as u64,
            consts as u64,
            acc as u64,
            tmp as u64,
            wide as u64,
            if self.scale.is_some() {
                (t.cc * ES) as u64
            } else {
                0
            },
            (self.chans.len() * self.chan_bytes(t)) as u64,
        ]
    }

    /// Bytes of one chain operand's values for an accumulator tile's rows.
    fn chan_bytes(&self, t: Tiles) -> usize {
        let rows = if self.depthwise() { t.cc } else { t.kc };
        (rows * ES).next_multiple_of(64)
    }

    /// SRAM slots per operand (band, weights, bias, accumulator,
    /// temporary): two where consecutive steps load different data, so the
    /// next load overlaps this step's compute; one where the data changes
    /// rarely (loaded after the step that last reads it).
    fn slot_counts(&self, t: Tiles, nb: u32) -> [u32; 8] {
        let bands = self.bands(t.rows).len();
        // The pooled tile is stored like the accumulator.
        let pooled = |acc: u32| if self.pool.is_some() { acc } else { 1 };
        if self.depthwise() {
            let n = if t.single { 1 } else { nb };
            return [n, 1, 1, n, 1, pooled(n), n, n];
        }
        let ncc = self.w[1].div_ceil(t.cc);
        let band = if bands * ncc == 1 || t.single { 1 } else { nb };
        let wts = if ncc == 1 || t.single { 1 } else { nb };
        let acc = if t.single { 1 } else { nb };
        [band, wts, wts, acc, 1, pooled(acc), band, acc]
    }

    /// Modelled cost of a tiling, for choosing one: the slower engine's
    /// work plus per-instruction overheads.
    fn score(&self, t: Tiles) -> u64 {
        let (n, c) = (self.x[0], self.x[1]);
        let [k, cg, r, s] = self.w;
        let (oh, ow) = (self.out_hw[0], self.out_hw[1]);
        let b = self.band(t.rows);
        let bands = self.bands(t.rows).len();
        let taps = r * s;
        let [band_b, w_b, ..] = self.slot_bytes(t);
        let [sh, sw] = self.win.stride;
        let phases = self.phases();
        // Per band load: DMAs, the cycles its rows cost beyond bytes / 64
        // (the engine moves at most a row a cycle), and with `split` the
        // cycles of the phase moves on the compute engine.
        let (band_dmas, row_excess, moves) = if sw == 1 {
            (sh, 0, 0)
        } else if t.split {
            let bytes = b.bh * self.x[3] * self.xes() * t.cc;
            let cycles = phases.len() * (t.cc * b.ph * b.pw / 32 + 2);
            (
                self.row_phases().len(),
                (b.bh * t.cc).saturating_sub(bytes / 64),
                cycles,
            )
        } else {
            let mut cols: Vec<usize> = phases.iter().map(|p| p.1).collect();
            cols.sort_unstable();
            cols.dedup();
            let elems = b.bh * t.cc * cols.len() * self.x[3].div_ceil(sw);
            (
                (b.bh * sw).min(phases.len() * t.cc),
                elems - elems * self.xes() / 64,
                0,
            )
        };
        let (blocks, band_loads, w_loads, macs) = if self.depthwise() {
            let chunks = c.div_ceil(t.cc);
            let blocks = n * chunks * bands;
            (
                blocks,
                blocks,
                n * chunks,
                (n * c * bands * b.m * taps * 2 / 8) as u64,
            )
        } else {
            let (kg, nk, ncc) = (
                k / self.groups,
                (k / self.groups).div_ceil(t.kc),
                cg.div_ceil(t.cc),
            );
            let blocks = n * self.groups * nk * bands * ncc;
            let band_loads = if bands * ncc == 1 {
                n * self.groups
            } else {
                blocks
            };
            let w_loads = if ncc == 1 {
                n * self.groups * nk
            } else {
                blocks
            };
            // int8 MATMULs run four times as many MACs a cycle.
            let rate = if self.q.is_some() { 4 } else { 1 };
            (
                blocks,
                band_loads,
                w_loads,
                (n * self.groups * (kg + self.sum_row()) * cg * bands * b.m * taps / rate) as u64,
            )
        };
        let dma = (band_loads as u64 * band_b
            + w_loads as u64 * w_b
            + (n * k * oh * ow * self.xes()) as u64)
            / 64
            + (band_loads * row_excess) as u64
            + 66 * (band_loads * band_dmas + w_loads + blocks) as u64;
        let per_block = if self.depthwise() { 2 * taps } else { taps };
        let nmoves = if t.split { phases.len() } else { 0 };
        let insns =
            (blocks * (per_block + 3) + band_loads * (band_dmas + 1 + nmoves) + 2 * w_loads) as u64;
        let compute = macs / 256 + 2 * insns + (band_loads * moves) as u64;
        // Command bytes matter beside cycles: an instruction weighs as much
        // as INSN_WEIGHT cycles of the slower engine.
        let time = if t.single {
            dma + compute
        } else {
            dma.max(compute)
        };
        time + INSN_WEIGHT * insns
    }

    fn choose(&self, e: &mut Emitter) -> Option<(Tiles, [Slots; 8], [u32; 8])> {
        let nb = e.nbuf();
        let kg = self.w[0] / self.groups;
        let cg = if self.depthwise() {
            self.x[1]
        } else {
            self.w[1]
        };
        let halvings = |n: usize| {
            let mut v = vec![n];
            let mut x = n;
            while x > 1 {
                x = x.div_ceil(2);
                v.push(x);
            }
            v
        };
        let mut best: Option<(u64, Tiles)> = None;
        // With a fused pool, bands of whole pooling windows: a multiple of
        // its stride (or all rows in one band) where windows neither
        // overlap nor pad; else `(P - 1) * stride + kernel` rows for `P`
        // pooled rows, the bands after the first starting in the image.
        let row_choices = match self.pool {
            Some(p) if p.kernel[0] <= p.stride[0] && p.pad[0] == 0 => {
                let sh = p.stride[0];
                let mut v: Vec<usize> = halvings(self.out_hw[0].div_ceil(sh))
                    .into_iter()
                    .map(|n| (n * sh).min(self.out_hw[0]))
                    .filter(|&r| r >= p.kernel[0])
                    .collect();
                v.dedup();
                v
            }
            Some(p) => halvings(p.out_hw[0])
                .into_iter()
                .filter(|&n| n * p.stride[0] >= p.pad[0])
                .map(|n| (n - 1) * p.stride[0] + p.kernel[0])
                .filter(|&r| self.bands(r).iter().all(|b| b.1 > 0))
                .collect(),
            None => halvings(self.out_hw[0]),
        };
        for rows in row_choices {
            for kc in if self.depthwise() {
                vec![1]
            } else {
                halvings(kg)
            } {
                for (cc, single, split) in halvings(cg).into_iter().flat_map(|cc| {
                    [false, true]
                        .into_iter()
                        .flat_map(move |single| [(cc, single, false), (cc, single, true)])
                }) {
                    if (single && nb == 1) || (split && self.win.stride[1] == 1) {
                        continue;
                    }
                    let t = Tiles {
                        rows,
                        kc,
                        cc,
                        single,
                        split,
                    };
                    let bytes = self.slot_bytes(t);
                    let counts = self.slot_counts(t, nb);
                    let total: u64 = bytes
                        .iter()
                        .zip(counts)
                        .map(|(b, n)| b.max(&4).next_multiple_of(64) * n as u64)
                        .sum();
                    if total > e.params.sram_size as u64
                        || bytes.iter().any(|b| *b >= u32::MAX as u64)
                    {
                        continue;
                    }
                    let score = self.score(t);
                    if best.is_none_or(|(s, _)| score < s) {
                        best = Some((score, t));
                    }
                }
            }
        }
        let (_, t) = best?;
        e.sram_reset();
        let b = self.slot_bytes(t);
        let n = self.slot_counts(t, nb);
        let slots = [
            e.sram_alloc(b[0], n[0]).ok()?,
            e.sram_alloc(b[1], n[1]).ok()?,
            e.sram_alloc(b[2], n[2]).ok()?,
            e.sram_alloc(b[3], n[3]).ok()?,
            e.sram_alloc(b[4], n[4]).ok()?,
            e.sram_alloc(b[5], n[5]).ok()?,
            e.sram_alloc(b[6], n[6]).ok()?,
            e.sram_alloc(b[7], n[7]).ok()?,
        ];
        Some((t, slots, n))
    }
}

/// One unit of work: accumulate input channels `c0..c0+ccn` of band
/// `band` into output channels `k0..k0+kcn` (absolute channel indices).
#[derive(Clone, Copy, Debug)]
struct Step {
    img: usize,
    /// First input channel (absolute) and count.
    c0: usize,
    ccn: usize,
    /// First output channel (absolute) and count.
    k0: usize,
    kcn: usize,
    y0: usize,
    nrows: usize,
    /// With a fused pool, the plane rows above `y0` (the pool's padding
    /// rows of the first band).
    top: usize,
    /// Index of the packed weight block.
    wblock: usize,
    /// First and last input-channel block of the accumulation.
    first: bool,
    last: bool,
}

pub(super) fn direct_conv(e: &mut Emitter, s: &DirectConv<'_>) -> Result<(), String> {
    let (n, c, h, w) = (s.x[0], s.x[1], s.x[2], s.x[3]);
    let [k, cg, r, sw_] = s.w;
    let (oh, ow) = (s.out_hw[0], s.out_hw[1]);
    let dw = s.depthwise();
    let (t, slots, counts) = s.choose(e).ok_or_else(|| format!("one output row of {ow} pixels with one channel and its {r}x{sw_} filter taps does not fit"))?;
    let [sband, swt, sbias, sacc, stmp, swide, sscale, schan] = slots;
    let (xe, we, extra) = (s.xes(), s.wes(), s.sum_row());
    let kg = k / s.groups;
    let taps = r * sw_;
    log::debug!("direct conv {:?} -> {k}x{oh}x{ow}: tiles {t:?}", s.x);

    // Pack the weights and biases per block, and list the steps.
    let mut steps = Vec::new();
    let mut blocks: Vec<(Loc, Option<Loc>)> = Vec::new();
    let bands = s.bands(t.rows);
    if dw {
        for c0 in (0..c).step_by(t.cc) {
            let ccn = (c - c0).min(t.cc);
            let zw = |ch: usize| s.q.as_ref().map_or(0, |q| q.zw[ch] as i32);
            let wl = e.constant_with(taps * ccn * ES, |out| {
                let mut dst = out.chunks_exact_mut(ES);
                for tap in 0..taps {
                    for ch in c0..c0 + ccn {
                        if let Some(d) = dst.next() {
                            d.copy_from_slice(&match s.weight {
                                Filter::F32(w) => w[ch * taps + tap].to_le_bytes(),
                                Filter::I8(w) => (w[ch * taps + tap] as i32 - zw(ch)).to_le_bytes(),
                            });
                        }
                    }
                }
            });
            let bl = channel_consts(e, s, c0, ccn);
            blocks.push((wl, bl));
            for img in 0..n {
                for &(y0, nrows, top) in &bands {
                    steps.push(Step {
                        img,
                        c0,
                        ccn,
                        k0: c0,
                        kcn: ccn,
                        y0,
                        nrows,
                        top,
                        wblock: blocks.len() - 1,
                        first: true,
                        last: true,
                    });
                }
            }
        }
        // Images outermost, so each image's channels are contiguous work.
        steps.sort_by_key(|st| st.img);
    } else {
        let mut index = std::collections::HashMap::new();
        for gi in 0..s.groups {
            for kk in (0..kg).step_by(t.kc) {
                let kcn = (kg - kk).min(t.kc);
                let bl = channel_consts(e, s, gi * kg + kk, kcn);
                for cc0 in (0..cg).step_by(t.cc) {
                    let ccn = (cg - cc0).min(t.cc);
                    let wl = e.constant_with(taps * (kcn + extra) * ccn * we, |out| {
                        let mut dst = out.chunks_exact_mut(we);
                        for tap in 0..taps {
                            for ko in gi * kg + kk..gi * kg + kk + kcn {
                                let base = (ko * cg + cc0) * taps;
                                for ci in 0..ccn {
                                    if let Some(d) = dst.next() {
                                        let i = base + ci * taps + tap;
                                        match s.weight {
                                            Filter::F32(w) => {
                                                d.copy_from_slice(&w[i].to_le_bytes())
                                            }
                                            Filter::I8(w) => d[0] = w[i] as u8,
                                        }
                                    }
                                }
                            }
                            // The ones row: the window sums of x.
                            for _ in 0..extra * ccn {
                                if let Some(d) = dst.next() {
                                    d[0] = 1;
                                }
                            }
                        }
                    });
                    index.insert((gi, kk, cc0), blocks.len());
                    blocks.push((wl, bl));
                }
            }
        }
        for img in 0..n {
            for gi in 0..s.groups {
                for kk in (0..kg).step_by(t.kc) {
                    let kcn = (kg - kk).min(t.kc);
                    for &(y0, nrows, top) in &bands {
                        for cc0 in (0..cg).step_by(t.cc) {
                            let ccn = (cg - cc0).min(t.cc);
                            steps.push(Step {
                                img,
                                c0: gi * cg + cc0,
                                ccn,
                                k0: gi * kg + kk,
                                kcn,
                                y0,
                                nrows,
                                top,
                                wblock: index[&(gi, kk, cc0)],
                                first: cc0 == 0,
                                last: cc0 + ccn == cg,
                            });
                        }
                    }
                }
            }
        }
    }

    // Which loads each step issues, and into which slots: a band or a
    // weight block is loaded when it differs from the previous step's.
    let [nbb, nbw, _, nba, _, _, _, _] = counts.map(|c| c as usize);
    let mut plan = Vec::with_capacity(steps.len());
    let (mut nband, mut nw, mut nacc) = (0usize, 0usize, 0usize);
    let mut prev: Option<Step> = None;
    for st in &steps {
        // (Two bands of a fused pool may start on the same row, 0, with
        // different row counts: see `bands`.)
        let new_band =
            prev.is_none_or(|p| (p.img, p.c0, p.y0, p.nrows) != (st.img, st.c0, st.y0, st.nrows));
        let new_w = prev.is_none_or(|p| p.wblock != st.wblock);
        if new_band {
            nband += 1;
        }
        if new_w {
            nw += 1;
        }
        if st.first {
            nacc += 1;
        }
        plan.push((
            new_band,
            new_w,
            ((nband - 1) % nbb) as u32,
            ((nw - 1) % nbw) as u32,
            ((nacc - 1) % nba) as u32,
        ));
        prev = Some(*st);
    }

    let phases = s.phases();
    let [sh, sw] = s.win.stride;
    let [dh, dwl] = s.win.dilation;
    let [pad_h, pad_w] = s.win.padding;
    // The padding: real 0 (the int8 input's zero point).
    let pad_pattern = u32::from_ne_bytes([s.q.as_ref().map_or(0, |q| q.zx as u8); 4]);
    let hw = (h * w * xe) as u32;
    // The band of step `st` into band slot `bslot`: with `t.split` its
    // rows whole (see `split_phases`), else each phase's elements.
    let load_band = |e: &mut Emitter, st: Step, bslot: u32| {
        let b = s.band(st.nrows);
        let base = sband.at(bslot);
        let plane = b.ph * b.pw;
        let iy_lo = (st.y0 * sh) as isize - pad_h as isize;
        let rows: Vec<usize> = (0..b.bh)
            .filter(|rb| (0..h as isize).contains(&(iy_lo + *rb as isize)))
            .collect();
        if t.split {
            // Whole rows: per row phase, one load of its rows of every
            // channel into the staging area that `split_phases` splits.
            let p = st.ccn * plane;
            let used = s.row_phases();
            let mine = |py: usize| rows.iter().copied().filter(move |rb| rb % sh == py);
            // Padding, or phase rows past the image, to fill.
            let covered = pad_w == 0
                && s.pad_end[1] == 0
                && w % sw == 0
                && used.iter().all(|&py| mine(py).count() == b.ph);
            if let (false, Some(first), Some(last)) = (covered, used.first(), used.last()) {
                let lo = s.stage_offset(*first, p) * xe / 4 * 4;
                let hi = ((s.stage_offset(*last, p) + sw * p) * xe).next_multiple_of(4);
                e.push(Insn::Fill {
                    dst: base + lo as u32,
                    len: (hi - lo) as u32,
                    pattern: pad_pattern,
                });
            }
            for &py in &used {
                let mut it = mine(py);
                let Some(rb0) = it.next() else { continue };
                let nrows = 1 + it.count();
                let iy = (iy_lo + rb0 as isize) as usize;
                let off = ((st.img * c + st.c0) * h + iy) * w * xe;
                let dst =
                    base + ((s.stage_offset(py, p) + (rb0 / sh) * sw * b.pw + pad_w) * xe) as u32;
                let shape = [(w * xe) as u32, nrows as u32, st.ccn as u32];
                e.load(
                    s.xl,
                    off as u64,
                    dst,
                    Strided {
                        shape,
                        stride: [(sh * w * xe) as u32, hw],
                    },
                    Strided {
                        shape,
                        stride: [(sw * b.pw * xe) as u32, (sw * plane * xe) as u32],
                    },
                );
            }
            return;
        }
        // Zero the padding (and phase cells past the image) unless the
        // loads cover the whole band.
        let covered = pad_h == 0
            && pad_w == 0
            && s.pad_end == [0, 0]
            && sh == 1
            && sw == 1
            && iy_lo + b.bh as isize <= h as isize;
        if !covered {
            let len = ((sh * sw * st.ccn * plane + s.tail()) * xe).next_multiple_of(4) as u32;
            e.push(Insn::Fill {
                dst: base,
                len,
                pattern: pad_pattern,
            });
        }
        let chan = |e: &mut Emitter, rb0: usize, nrows: usize, row_step: usize, px: usize| {
            // Columns cp (padded) with cp % sw == px inside the image.
            let cp0 = pad_w + (px + sw - pad_w % sw) % sw;
            if cp0 >= pad_w + w || nrows == 0 {
                return;
            }
            let count = (pad_w + w - 1 - cp0) / sw + 1;
            let iy = (iy_lo + rb0 as isize) as usize;
            let off = (((st.img * c + st.c0) * h + iy) * w + (cp0 - pad_w)) * xe;
            let py = rb0 % sh;
            let dst = base
                + ((((s.phase_index(py, px) * st.ccn) * plane) + (rb0 / sh) * b.pw + cp0 / sw) * xe)
                    as u32;
            if sw == 1 {
                // Whole rows: rows of the phase, planes are channels.
                let rowb = (count * xe) as u32;
                e.load(
                    s.xl,
                    off as u64,
                    dst,
                    Strided {
                        shape: [rowb, nrows as u32, st.ccn as u32],
                        stride: [(row_step * w * xe) as u32, hw],
                    },
                    Strided {
                        shape: [rowb, nrows as u32, st.ccn as u32],
                        stride: [(b.pw * xe) as u32, (plane * xe) as u32],
                    },
                );
            } else {
                // One input row: elements `sw` apart, planes are channels.
                e.load(
                    s.xl,
                    off as u64,
                    dst,
                    Strided {
                        shape: [xe as u32, count as u32, st.ccn as u32],
                        stride: [(sw * xe) as u32, hw],
                    },
                    Strided {
                        shape: [xe as u32, count as u32, st.ccn as u32],
                        stride: [xe as u32, (plane * xe) as u32],
                    },
                );
            }
        };
        if sw == 1 {
            // Per row phase: the valid rows of that phase in one load.
            for py in 0..sh {
                if !phases.iter().any(|p| p.0 == py) {
                    continue;
                }
                let mine: Vec<usize> = rows.iter().copied().filter(|rb| rb % sh == py).collect();
                if let Some(&rb0) = mine.first() {
                    chan(e, rb0, mine.len(), sh, 0);
                }
            }
        } else if rows.len() * phases.len() / sh <= phases.len() * st.ccn {
            for &rb in &rows {
                for &(py, px) in &phases {
                    if rb % sh == py {
                        chan(e, rb, 1, sh, px);
                    }
                }
            }
        } else {
            // Few channels: one load per phase and channel, rows
            // `sh` and columns `sw` apart.
            for &(py, px) in &phases {
                let mine: Vec<usize> = rows.iter().copied().filter(|rb| rb % sh == py).collect();
                let cp0 = pad_w + (px + sw - pad_w % sw) % sw;
                let Some(&rb0) = mine.first() else { continue };
                if cp0 >= pad_w + w {
                    continue;
                }
                let count = ((pad_w + w - 1 - cp0) / sw + 1) as u32;
                let iy = (iy_lo + rb0 as isize) as usize;
                for ch in 0..st.ccn {
                    let off = (((st.img * c + st.c0 + ch) * h + iy) * w + (cp0 - pad_w)) * xe;
                    let dst = base
                        + (((s.phase_index(py, px) * st.ccn + ch) * plane
                            + (rb0 / sh) * b.pw
                            + cp0 / sw)
                            * xe) as u32;
                    let shape = [xe as u32, count, mine.len() as u32];
                    e.load(
                        s.xl,
                        off as u64,
                        dst,
                        Strided {
                            shape,
                            stride: [(sw * xe) as u32, (sh * w * xe) as u32],
                        },
                        Strided {
                            shape,
                            stride: [xe as u32, (b.pw * xe) as u32],
                        },
                    );
                }
            }
        }
    };
    // `early`: the loads into double-buffered operands (issued before the
    // previous step's compute); else the single-slot ones (after it).
    let load = |e: &mut Emitter, i: usize, early: bool| {
        let st = steps[i];
        let (new_band, new_w, bslot, wslot, _) = plan[i];
        if new_band && (nbb == 2) == early {
            load_band(e, st, bslot);
            if let Some(sc) = s.scale {
                // The band's channels' factors, beside it.
                let first = if sc.per_image { st.img * c } else { 0 } + st.c0;
                let bytes = (st.ccn * ES) as u32;
                e.load(
                    sc.at,
                    (first * ES) as u64,
                    sscale.at(bslot),
                    Strided::contiguous(bytes),
                    Strided::contiguous(bytes),
                );
            }
        }
        if st.first && (nba == 2) == early {
            // The chain's per-channel operands for the tile's channels.
            let (_, _, _, _, aslot) = plan[i];
            let bytes = (st.kcn * ES) as u32;
            for (j, ch) in s.chans.iter().enumerate() {
                let first = if ch.per_image { st.img * k } else { 0 } + st.k0;
                e.load(
                    ch.at,
                    (first * ES) as u64,
                    schan.at(aslot) + (j * s.chan_bytes(t)) as u32,
                    Strided::contiguous(bytes),
                    Strided::contiguous(bytes),
                );
            }
        }
        if let (Some(rl), true, true) = (s.residual, st.first, (nba == 2) == early) {
            // The residual tile starts the accumulator, laid out like it.
            let (_, _, _, _, aslot) = plan[i];
            let b = s.band(st.nrows);
            let acc_ld = s.acc_ld(t);
            let rowb = (ow * ES) as u32;
            let shape = [rowb, st.nrows as u32, st.kcn as u32];
            e.load(
                rl,
                (((st.img * k + st.k0) * oh + st.y0) * ow * ES) as u64,
                sacc.at(aslot) + (st.top * b.pw * ES) as u32,
                Strided {
                    shape,
                    stride: [rowb, (oh * ow * ES) as u32],
                },
                Strided {
                    shape,
                    stride: [(b.pw * ES) as u32, (acc_ld * ES) as u32],
                },
            );
        }
        if new_w && (nbw == 2) == early {
            let (wl, bl) = blocks[st.wblock];
            let wbytes = (taps
                * if dw {
                    st.ccn * ES
                } else {
                    (st.kcn + extra) * st.ccn * we
                }) as u32;
            e.load(
                wl,
                0,
                swt.at(wslot),
                Strided::contiguous(wbytes),
                Strided::contiguous(wbytes),
            );
            if let Some(bl) = bl {
                let bb = (st.kcn * ES * s.const_words()) as u32;
                e.load(
                    bl,
                    0,
                    sbias.at(wslot),
                    Strided::contiguous(bb),
                    Strided::contiguous(bb),
                );
            }
        }
    };
    let int8 = s.q.is_some();
    // Depthwise int8 computes on the band widened to i32 (minus zx).
    let wide = int8 && dw;
    // The depthwise taps' vector arithmetic: i32 on the widened band.
    let dw_dtype = if int8 {
        isa::DType::I32
    } else {
        isa::DType::F32
    };
    // The staged rows of a band loaded whole (`load_band`) into its phase
    // planes: one strided move per phase. Row phase `py`'s rows are
    // staged with row pitch `sw * pw` and channel pitch `sw * ph * pw`
    // (`stage_offset`), so phase `(py, px)` is every `sw`-th element of
    // them from `px` on, in phase-plane order. The moves go in phase
    // order; each writes only planes no later move reads (the last one of
    // a row phase overwrites its own source, which a move may: it reads
    // all of it first). A widened band is split by its CONVERTs instead.
    let split_phases = |e: &mut Emitter, st: Step, bslot: u32| {
        let b = s.band(st.nrows);
        let base = sband.at(bslot);
        let p = st.ccn * b.ph * b.pw;
        for &(py, px) in &phases {
            let src = Tile {
                addr: base + ((s.stage_offset(py, p) + px) * xe) as u32,
                ld: sw as u32,
            };
            let at = s.phase_index(py, px) * p;
            e.push(if wide {
                Insn::Convert {
                    conv: isa::Conversion::I8ToI32,
                    rows: p as u32,
                    cols: 1,
                    src,
                    dst: Tile {
                        addr: swide.at(0) + (at * ES) as u32,
                        ld: 1,
                    },
                    zero_point: s.q.as_ref().map_or(0, |q| q.zx as i32),
                    scale: 0.0,
                }
            } else {
                Insn::Unary {
                    op: isa::UnaryOp::Move,
                    dtype: if int8 {
                        isa::DType::I8
                    } else {
                        isa::DType::F32
                    },
                    rows: p as u32,
                    cols: 1,
                    src,
                    dst: Tile {
                        addr: base + (at * xe) as u32,
                        ld: 1,
                    },
                    lo: 0,
                    hi: 0,
                }
            });
        }
    };
    let body = |e: &mut Emitter, i: usize| {
        let st = steps[i];
        let (new_band, _, bslot, wslot, aslot) = plan[i];
        let b = s.band(st.nrows);
        let plane = b.ph * b.pw;
        let acc_ld = s.acc_ld(t) as u32;
        // Below the band's first row: the pool's padding rows, if any.
        let top = (st.top * b.pw * ES) as u32;
        let acc = Tile {
            addr: sacc.at(aslot) + top,
            ld: acc_ld,
        };
        let m = b.m as u32;
        if t.split && new_band {
            split_phases(e, st, bslot);
        }
        if let (Some(_), true) = (s.scale, new_band) {
            // One phase plane per channel (stride 1), input elements only.
            let band = Tile {
                addr: sband.at(bslot),
                ld: plane as u32,
            };
            e.push(Insn::Binary {
                op: isa::BinaryOp::Mul,
                dtype: isa::DType::F32,
                bcast: Broadcast::PerRow,
                rows: st.ccn as u32,
                cols: plane as u32,
                a: band,
                b: Tile {
                    addr: sscale.at(bslot),
                    ld: 0,
                },
                out: band,
                scalar: 0,
            });
        }
        let (band_base, be) = if wide {
            if new_band && !t.split {
                let cells = (sh * sw * st.ccn * plane + s.tail()) as u32;
                e.push(Insn::Convert {
                    conv: isa::Conversion::I8ToI32,
                    rows: 1,
                    cols: cells,
                    src: Tile {
                        addr: sband.at(bslot),
                        ld: cells,
                    },
                    dst: Tile {
                        addr: swide.at(0),
                        ld: cells,
                    },
                    zero_point: s.q.as_ref().map_or(0, |q| q.zx as i32),
                    scale: 0.0,
                });
            }
            (swide.at(0), ES)
        } else {
            (sband.at(bslot), xe)
        };
        for ri in 0..r {
            for si in 0..sw_ {
                let tap = ri * sw_ + si;
                let (py, qy) = ((ri * dh) % sh, (ri * dh) / sh);
                let (px, qx) = ((si * dwl) % sw, (si * dwl) / sw);
                let src = band_base
                    + ((s.phase_index(py, px) * st.ccn * plane + qy * b.pw + qx) * be) as u32;
                let src = Tile {
                    addr: src,
                    ld: plane as u32,
                };
                if dw {
                    let wv = Tile {
                        addr: swt.at(wslot) + (tap * st.ccn * ES) as u32,
                        ld: 0,
                    };
                    let (dst, first) = if tap == 0 && s.residual.is_none() {
                        (acc, true)
                    } else {
                        (
                            Tile {
                                addr: stmp.at(0),
                                ld: acc_ld,
                            },
                            false,
                        )
                    };
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Mul,
                        dtype: dw_dtype,
                        bcast: Broadcast::PerRow,
                        rows: st.ccn as u32,
                        cols: m,
                        a: src,
                        b: wv,
                        out: dst,
                        scalar: 0,
                    });
                    if !first {
                        e.push(Insn::Binary {
                            op: isa::BinaryOp::Add,
                            dtype: dw_dtype,
                            bcast: Broadcast::None,
                            rows: st.ccn as u32,
                            cols: m,
                            a: acc,
                            b: dst,
                            out: acc,
                            scalar: 0,
                        });
                    }
                } else {
                    let rows = st.kcn + extra;
                    e.push(Insn::Matmul {
                        dtype: if int8 {
                            isa::DType::I8
                        } else {
                            isa::DType::F32
                        },
                        accumulate: !(st.first && tap == 0) || s.residual.is_some(),
                        transpose_b: false,
                        m: rows as u32,
                        n: m,
                        k: st.ccn as u32,
                        a: Tile {
                            addr: swt.at(wslot) + (tap * rows * st.ccn * we) as u32,
                            ld: st.ccn as u32,
                        },
                        b: src,
                        c: acc,
                    });
                }
            }
        }
        if !st.last {
            return;
        }
        let kcn = st.kcn as u32;
        let (res, oes) = match &s.q {
            None => {
                if s.bias.is_some() {
                    let bv = Tile {
                        addr: sbias.at(wslot),
                        ld: 0,
                    };
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Add,
                        dtype: isa::DType::F32,
                        bcast: Broadcast::PerRow,
                        rows: kcn,
                        cols: m,
                        a: acc,
                        b: bv,
                        out: acc,
                        scalar: 0,
                    });
                }
                if let Some(act) = s.act {
                    e.push(super::ops::unary_insn(act, kcn, m, acc, acc));
                }
                match s.chain {
                    Some(c) => {
                        let rb = s.reg_bytes(t) as u32;
                        let regs: Vec<Tile> = std::iter::once(acc)
                            .chain((1..c.regs as u32).map(|r| Tile {
                                addr: stmp.at(0) + (r - 1) * rb + top,
                                ld: acc_ld,
                            }))
                            .collect();
                        let chans: Vec<u32> = (0..c.chans.len())
                            .map(|j| schan.at(aslot) + (j * s.chan_bytes(t)) as u32)
                            .collect();
                        c.emit(e, kcn, m, &regs, &chans);
                        (regs[c.out as usize].addr, ES)
                    }
                    None => (acc.addr, ES),
                }
            }
            Some(q) => {
                let sums = Tile {
                    addr: acc.addr + kcn * acc_ld * ES as u32,
                    ld: acc_ld,
                };
                if s.zw_per_channel() {
                    // acc[k][i] -= zw[k] * sum_x[i]: the outer product in tmp.
                    let t = Tile {
                        addr: stmp.at(0),
                        ld: acc_ld,
                    };
                    let zw = Tile {
                        addr: sbias.at(wslot) + kcn * ES as u32 * (1 + q.scales.is_ok() as u32),
                        ld: 0,
                    };
                    e.push(Insn::Fill {
                        dst: t.addr,
                        len: kcn * acc_ld * ES as u32,
                        pattern: 0,
                    });
                    for (op, bcast, a, b, out) in [
                        (isa::BinaryOp::Add, Broadcast::PerCol, t, sums, t),
                        (isa::BinaryOp::Mul, Broadcast::PerRow, t, zw, t),
                        (isa::BinaryOp::Sub, Broadcast::None, acc, t, acc),
                    ] {
                        e.push(Insn::Binary {
                            op,
                            dtype: isa::DType::I32,
                            bcast,
                            rows: kcn,
                            cols: m,
                            a,
                            b,
                            out,
                            scalar: 0,
                        });
                    }
                } else if extra == 1 {
                    // acc[k][i] -= zw * sum_x[i] (the row after the channels).
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Mul,
                        dtype: isa::DType::I32,
                        bcast: Broadcast::Scalar,
                        rows: 1,
                        cols: m,
                        a: sums,
                        b: sums,
                        out: sums,
                        scalar: q.zw[0] as i32 as u32,
                    });
                    e.push(Insn::Binary {
                        op: isa::BinaryOp::Sub,
                        dtype: isa::DType::I32,
                        bcast: Broadcast::PerCol,
                        rows: kcn,
                        cols: m,
                        a: acc,
                        b: sums,
                        out: acc,
                        scalar: 0,
                    });
                }
                let dst = Tile {
                    addr: stmp.at(0),
                    ld: acc_ld,
                };
                let consts = sbias.at(wslot);
                super::ops::requant_tile(
                    e,
                    Broadcast::PerRow,
                    kcn,
                    m,
                    acc,
                    dst,
                    Some(consts),
                    match q.scales {
                        Ok(_) => Ok(consts + kcn * ES as u32),
                        Err(x) => Err(x),
                    },
                    q.zero_point,
                    q.lo,
                    q.hi,
                );
                (dst.addr, 1)
            }
        };
        if let Some(p) = s.pool {
            // Pool the band's planes `[channel][t.rows][pw]` (rows past
            // this band's and columns past `ow` only feed dropped
            // results), then store the pooled rows that exist.
            let (ph, pw) = s.pooled(t);
            let [qh, qw] = p.out_hw;
            let p0 = (st.y0 + p.pad[0] - st.top) / p.stride[0];
            let prows = ph.min(qh.saturating_sub(p0));
            if prows == 0 {
                return;
            }
            let dst = swide.at(aslot.min(counts[5] - 1));
            // The planes `[channel][t.rows][pw]` from the band's first row
            // less `top`; the padding the kept windows read, -inf (CLAMP
            // to [-inf, -inf]: a max pool's padding, see `PoolFuse`).
            let planes = res - top;
            let neg_inf = |e: &mut Emitter, rows: usize, cols: usize, at: usize, ld: usize| {
                if rows > 0 && cols > 0 {
                    let tile = Tile {
                        addr: planes + (at * ES) as u32,
                        ld: ld as u32,
                    };
                    e.push(Insn::Unary {
                        op: isa::UnaryOp::Clamp,
                        dtype: isa::DType::F32,
                        rows: rows as u32,
                        cols: cols as u32,
                        src: tile,
                        dst: tile,
                        lo: f32::NEG_INFINITY.to_bits(),
                        hi: f32::NEG_INFINITY.to_bits(),
                    });
                }
            };
            let plane = acc_ld as usize;
            if st.y0 == 0 {
                neg_inf(e, kcn as usize, st.top * b.pw, 0, plane);
            }
            // Rows past the image the kept windows read.
            let end = st.top + st.nrows;
            let read = (prows - 1) * p.stride[0] + p.kernel[0];
            if read > end {
                neg_inf(e, kcn as usize, (read - end) * b.pw, end * b.pw, plane);
            }
            // Computed columns past the right edge the kept windows read.
            let cols_read = ((qw - 1) * p.stride[1] + p.kernel[1]).saturating_sub(p.pad[1]);
            if cols_read > ow && b.pw > ow {
                let rows = (kcn as usize - 1) * t.rows + read;
                neg_inf(e, rows, b.pw.min(cols_read) - ow, ow, b.pw);
            }
            e.push(Insn::Pool {
                op: match p.kind {
                    crate::ir::PoolKind::Max => isa::PoolOp::Max,
                    crate::ir::PoolKind::Avg => isa::PoolOp::Avg,
                },
                geom: isa::PoolGeom {
                    channels: kcn,
                    in_h: t.rows as u32,
                    in_w: b.pw as u32,
                    out_h: ph as u32,
                    out_w: pw as u32,
                    kernel: [p.kernel[0] as u8, p.kernel[1] as u8],
                    stride: [p.stride[0] as u8, p.stride[1] as u8],
                    pad: [0, p.pad[1] as u8],
                },
                src: planes,
                dst,
            });
            let rowb = (qw * ES) as u32;
            e.store(
                s.out,
                (((st.img * k + st.k0) * qh + p0) * qw * ES) as u64,
                dst,
                Strided {
                    shape: [rowb, prows as u32, kcn],
                    stride: [rowb, (qh * qw * ES) as u32],
                },
                Strided {
                    shape: [rowb, prows as u32, kcn],
                    stride: [(pw * ES) as u32, (ph * pw * ES) as u32],
                },
            );
            // The next band of these channels takes the last `kept` rows
            // of these planes as its first (`kept_rows`): they go where
            // its result planes will be, above the rows it computes.
            let kept = s.kept_rows();
            let next = steps
                .get(i + 1)
                .filter(|n| (n.img, n.k0, n.first) == (st.img, st.k0, true) && n.y0 > st.y0);
            if let (true, Some(_)) = (kept > 0, next) {
                let next_slot = plan[i + 1].4;
                let to = match s.chain {
                    Some(c) if c.out != 0 => planes,
                    _ => sacc.at(next_slot),
                };
                let from = planes + ((t.rows - kept) * b.pw * ES) as u32;
                e.push(Insn::Unary {
                    op: isa::UnaryOp::Move,
                    dtype: isa::DType::F32,
                    rows: kcn,
                    cols: (kept * b.pw) as u32,
                    src: Tile {
                        addr: from,
                        ld: acc_ld,
                    },
                    dst: Tile {
                        addr: to,
                        ld: acc_ld,
                    },
                    lo: 0,
                    hi: 0,
                });
            }
            return;
        }
        // Output rows of the band: `ow` of every `pw` computed pixels.
        let off = (((st.img * k + st.k0) * oh + st.y0) * ow * oes) as u64;
        let rowb = (ow * oes) as u32;
        let ld_bytes = acc_ld * oes as u32;
        e.store(
            s.out,
            off,
            res,
            Strided {
                shape: [rowb, st.nrows as u32, kcn],
                stride: [rowb, (oh * ow * oes) as u32],
            },
            Strided {
                shape: [rowb, st.nrows as u32, kcn],
                stride: [(b.pw * oes) as u32, ld_bytes],
            },
        );
    };
    load(e, 0, true);
    load(e, 0, false);
    for i in 0..steps.len() {
        if i + 1 < steps.len() {
            load(e, i + 1, true);
        }
        body(e, i);
        if i + 1 < steps.len() {
            load(e, i + 1, false);
        }
    }
    Ok(())
}

/// The per-channel constants of output channels `k0..k0+kcn`: the f32
/// bias, or int8's `[bias | scales]` (i32, f32), packed together.
fn channel_consts(e: &mut Emitter, s: &DirectConv<'_>, k0: usize, kcn: usize) -> Option<Loc> {
    match &s.q {
        None => s
            .bias
            .map(|b| e.constant(&super::ops::f32_bytes(&b[k0..k0 + kcn]))),
        Some(q) => {
            let mut bytes = super::ops::i32_bytes(&q.bias[k0..k0 + kcn]);
            if let Ok(sc) = &q.scales {
                bytes.extend(super::ops::f32_bytes(&sc[k0..k0 + kcn]));
            }
            if s.zw_per_channel() {
                let zw: Vec<i32> = q.zw[k0..k0 + kcn].iter().map(|&z| z as i32).collect();
                bytes.extend(super::ops::i32_bytes(&zw));
            }
            Some(e.constant(&bytes))
        }
    }
}
