//! The command processor: fetches, validates and executes one job's command
//! buffer against the SRAM and the job's address space.
//!
//! Everything here comes from the guest: every size and range is checked
//! with overflow-safe arithmetic before it is used, and every problem ends
//! the job with a fault code instead of a panic.

use crate::cost::{CostModel, Engine, Timeline};
use crate::mem::{bus_read, bus_read_span, bus_readable, bus_write_rows};
use crate::mmu::{Access, JobFault, Mmu, PAGE_SIZE};
mod select;

use npu_isa::{
    bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, requantize, Axis, BinaryOp, Broadcast,
    Conversion, DType, Fault, Insn, PoolGeom, PoolI8Op, PoolOp, ReduceOp, Strided, Tile, UnaryOp,
    INSN_SIZE,
};

/// Work counters of one job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobStats {
    pub cycles: u64,
    pub instructions: u64,
    pub macs: u64,
    pub dma_read: u64,
    pub dma_written: u64,
    /// Cycles of the DMA and compute engines' completed instructions.
    pub dma_engine_cycles: u64,
    pub compute_engine_cycles: u64,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    pub status: Fault,
    pub fault_addr: u64,
    pub stats: JobStats,
    /// Tags of the MARK instructions executed, in order.
    pub marks: Vec<u32>,
}

/// The on-chip SRAM. Word-backed so that 4-byte elements are aligned.
pub struct Sram {
    words: Vec<u32>,
}

impl Sram {
    pub fn new(bytes: u32) -> Self {
        Sram {
            words: vec![0; bytes.div_ceil(4) as usize],
        }
    }
    pub fn len(&self) -> u64 {
        self.words.len() as u64 * 4
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.words)
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.words)
    }
    fn check(&self, lo: u64, len: u64) -> Result<(u64, u64), Fault> {
        let hi = lo.checked_add(len).ok_or(Fault::SramRange)?;
        if hi > self.len() {
            return Err(Fault::SramRange);
        }
        Ok((lo, hi))
    }
}

type Res<T> = Result<T, Fault>;

/// Geometry of a checked 2-D element tile.
#[derive(Clone, Copy)]
struct TileRef {
    base: usize,
    rows: usize,
    cols: usize,
    ld: usize,
    lo: u64,
    hi: u64,
}

impl TileRef {
    fn new(sram: &Sram, t: Tile, rows: u32, cols: u32, esize: u32) -> Res<TileRef> {
        if !t.addr.is_multiple_of(esize) {
            return Err(Fault::BadOperand);
        }
        if rows > 1 && t.ld < cols {
            return Err(Fault::BadOperand);
        }
        // Up to (2^32 - 1)^2 elements of 4 bytes: overflows u64, and a
        // wrapped span would pass the SRAM check.
        let span = if rows == 0 || cols == 0 {
            0
        } else {
            ((rows as u64 - 1) * t.ld as u64 + cols as u64)
                .checked_mul(esize as u64)
                .ok_or(Fault::SramRange)?
        };
        let (lo, hi) = sram.check(t.addr as u64, span)?;
        // An empty tile touches nothing: 0 x N and N x 0 are both 0 x 0, so
        // that no loop runs up to 2^32 empty rows (or computes row offsets
        // past the SRAM from an unchecked ld).
        let (rows, cols) = if span == 0 { (0, 0) } else { (rows, cols) };
        Ok(TileRef {
            base: t.addr as usize / esize as usize,
            rows: rows as usize,
            cols: cols as usize,
            ld: t.ld as usize,
            lo,
            hi,
        })
    }
    fn range(&self) -> (u64, u64) {
        (self.lo, self.hi)
    }
    fn elems(&self) -> u64 {
        self.rows as u64 * self.cols as u64
    }
    /// Elements from the first of the tile to its last (0 when empty).
    fn span(&self) -> usize {
        match self.rows {
            0 => 0,
            r => (r - 1) * self.ld + self.cols,
        }
    }
    /// A tile of one-element rows (`cols == 1`, as the strided moves that
    /// split a band into its stride phases): its elements in `elems` (the
    /// SRAM as elements of the tile's size), a stride apart. The span is
    /// sliced once, checked by [`TileRef::new`]; no per-row slicing.
    fn column<'a, T>(&self, elems: &'a [T]) -> impl Iterator<Item = &'a T> {
        debug_assert!(self.cols <= 1);
        // An empty tile has rows 0 (span 0); one row may have ld 0.
        elems[self.base..self.base + self.span()]
            .iter()
            .step_by(self.ld.max(1))
    }
    /// [`TileRef::column`], writable.
    fn column_mut<'a, T>(&self, elems: &'a mut [T]) -> impl Iterator<Item = &'a mut T> {
        debug_assert!(self.cols <= 1);
        elems[self.base..self.base + self.span()]
            .iter_mut()
            .step_by(self.ld.max(1))
    }
    /// Gather the tile into a dense row-major vector of 32-bit words.
    /// [`TileRef::load32`] into `out`, reusing its allocation.
    fn load32_into(&self, sram: &Sram, out: &mut Vec<u32>) {
        out.clear();
        if self.cols == 1 {
            out.extend(self.column(&sram.words));
            return;
        }
        for r in 0..self.rows {
            let s = self.base + r * self.ld;
            out.extend_from_slice(&sram.words[s..s + self.cols]);
        }
    }
    fn load32(&self, sram: &Sram) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        self.load32_into(sram, &mut out);
        out
    }
    fn store32(&self, sram: &mut Sram, data: &[u32]) {
        if self.cols == 1 {
            for (d, &v) in self.column_mut(&mut sram.words).zip(data) {
                *d = v;
            }
            return;
        }
        for r in 0..self.rows {
            let s = self.base + r * self.ld;
            sram.words[s..s + self.cols].copy_from_slice(&data[r * self.cols..(r + 1) * self.cols]);
        }
    }
    /// Gather a tile of 2-byte (little-endian) elements.
    fn load16(&self, sram: &Sram) -> Vec<u16> {
        let bytes = sram.bytes();
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            let s = (self.base + r * self.ld) * 2;
            out.extend(
                bytes[s..s + self.cols * 2]
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]])),
            );
        }
        out
    }
    fn store16(&self, sram: &mut Sram, data: &[u16]) {
        let bytes = sram.bytes_mut();
        for r in 0..self.rows {
            let s = (self.base + r * self.ld) * 2;
            for (d, &v) in bytes[s..s + self.cols * 2]
                .chunks_exact_mut(2)
                .zip(&data[r * self.cols..(r + 1) * self.cols])
            {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn load8(&self, sram: &Sram) -> Vec<i8> {
        let bytes = sram.bytes();
        let mut out = Vec::with_capacity(self.rows * self.cols);
        if self.cols == 1 {
            out.extend(self.column(bytes).map(|&b| b as i8));
            return out;
        }
        for r in 0..self.rows {
            let s = self.base + r * self.ld;
            out.extend(bytes[s..s + self.cols].iter().map(|&b| b as i8));
        }
        out
    }
    fn store8(&self, sram: &mut Sram, data: &[i8]) {
        let bytes = sram.bytes_mut();
        if self.cols == 1 {
            for (d, &v) in self.column_mut(bytes).zip(data) {
                *d = v as u8;
            }
            return;
        }
        for r in 0..self.rows {
            let s = self.base + r * self.ld;
            for (d, &v) in bytes[s..s + self.cols]
                .iter_mut()
                .zip(&data[r * self.cols..(r + 1) * self.cols])
            {
                *d = v as u8;
            }
        }
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A contiguous vector of `n` 32-bit elements at `addr`.
fn vector(sram: &Sram, addr: u32, n: u32) -> Res<TileRef> {
    TileRef::new(sram, Tile { addr, ld: n }, 1, n, 4)
}

fn f32s(v: &[u32]) -> Vec<f32> {
    v.iter().map(|&x| f32::from_bits(x)).collect()
}
fn from_f32s(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Executes jobs. Holds the SRAM, which persists across jobs like real
/// on-chip memory (jobs must not rely on its contents).
pub struct Executor {
    pub sram: Sram,
    pub cost: CostModel,
    /// Buffers for operand copies, kept between instructions (at most the
    /// SRAM's size each) so elementwise ops do not allocate each time.
    scratch: [Vec<u32>; 2],
    /// The DMA engine's row grouping, kept between instructions.
    dma: InPageRows,
    /// SELECT's operand copies, kept between instructions.
    select: select::Scratch,
}

/// The command processor's hold on a running job: polled before every
/// instruction and inside every loop whose length the guest chooses, so a
/// reset, a DMA_UNMAP or bus mastering going off takes effect within one
/// row (or a run of POOL output elements, or one block of a MATMUL).
pub trait JobControl {
    /// `Err(fault)` ends the job with that fault (a reset: ABORTED). May
    /// switch `mmu` to a new view of host memory.
    fn poll(&mut self, mmu: &mut Mmu) -> Result<(), Fault>;
    /// The modelled cycles an instruction costs, told before its work is
    /// done (fuzzing checks host time against them).
    fn charge(&mut self, _cycles: u64) {}
}

impl JobControl for () {
    fn poll(&mut self, _mmu: &mut Mmu) -> Result<(), Fault> {
        Ok(())
    }
}

/// MACs of f32 MATMUL work between two polls: large, because each block
/// repacks B (the int8 kernels pack it once and take smaller blocks).
const MATMUL_BLOCK_MACS: u64 = 1 << 28;
const MATMUL_I8_BLOCK_MACS: u64 = 1 << 26;

impl Executor {
    pub fn new(sram_bytes: u32, cost: CostModel) -> Self {
        Executor {
            sram: Sram::new(sram_bytes),
            cost,
            scratch: Default::default(),
            dma: InPageRows::new(),
            select: Default::default(),
        }
    }

    /// Run one command buffer in the address space `mmu`.
    pub fn run(
        &mut self,
        mmu: &mut Mmu,
        cmdbuf: u64,
        size: u32,
        ctl: &mut dyn JobControl,
    ) -> JobOutcome {
        let mut tl = Timeline::default();
        let mut stats = JobStats::default();
        let mut marks = Vec::new();
        let count = size as u64 / INSN_SIZE as u64;
        let mut result: Result<(), JobFault> =
            Err(JobFault::new(Fault::CmdbufOverrun, size as u64));
        let mut i = 0;
        while i < count {
            if let Err(f) = ctl.poll(mmu) {
                result = Err(JobFault::new(f, 0));
                break;
            }
            let offset = i * INSN_SIZE as u64;
            let mut raw = [0u8; INSN_SIZE];
            let Some(va) = cmdbuf.checked_add(offset) else {
                result = Err(JobFault::new(Fault::MmuVaRange, cmdbuf));
                break;
            };
            if let Err(f) = mmu.read(va, &mut raw) {
                result = Err(f);
                break;
            }
            let insn = match Insn::decode(&raw) {
                Ok(insn) => insn,
                Err(e) => {
                    result = Err(JobFault::new(e.fault(), offset));
                    break;
                }
            };
            stats.instructions += 1;
            match insn {
                Insn::End => {
                    result = Ok(());
                    break;
                }
                Insn::Mark { tag } => marks.push(tag),
                _ => {}
            }
            if let Some(chain) = self.mac_chain(&insn, (cmdbuf, i, count), mmu, &mut tl, ctl) {
                match chain {
                    Ok(n) => {
                        stats.instructions += n - 1;
                        i += n;
                        continue;
                    }
                    Err(f) => {
                        let addr = if f.addr == u64::MAX { offset } else { f.addr };
                        result = Err(JobFault::new(f.fault, addr));
                        break;
                    }
                }
            }
            if let Err(f) = self.step(&insn, mmu, &mut tl, &mut stats, ctl) {
                // Operand faults carry the command-buffer offset; MMU and bus
                // faults carry the virtual address they hit.
                let addr = if f.addr == u64::MAX { offset } else { f.addr };
                result = Err(JobFault::new(f.fault, addr));
                break;
            }
            i += 1;
        }
        stats.cycles = tl.total();
        stats.dma_engine_cycles = tl.busy(Engine::Dma);
        stats.compute_engine_cycles = tl.busy(Engine::Compute);
        stats.dma_read = mmu.bytes_read;
        stats.dma_written = mmu.bytes_written;
        let (status, fault_addr) = match result {
            Ok(()) => (Fault::Ok, 0),
            Err(f) => (f.fault, f.addr),
        };
        JobOutcome {
            status,
            fault_addr,
            stats,
            marks,
        }
    }

    fn step(
        &mut self,
        insn: &Insn,
        mmu: &mut Mmu,
        tl: &mut Timeline,
        st: &mut JobStats,
        ctl: &mut dyn JobControl,
    ) -> Result<(), JobFault> {
        // Operand faults are reported at the instruction's offset (u64::MAX
        // asks the caller to fill it in).
        let op = |f: Fault| JobFault::new(f, u64::MAX);
        // A poll's fault (reset, revoked memory) at the instruction's offset.
        let poll = |ctl: &mut dyn JobControl, mmu: &mut Mmu| ctl.poll(mmu).map_err(op);
        let cost = self.cost;
        let walks_before = mmu.walks;
        match *insn {
            Insn::Nop | Insn::End | Insn::Mark { .. } => {}
            Insn::Barrier => tl.barrier(),
            Insn::DmaLoad {
                va,
                sram,
                mem,
                sram_layout,
            } => {
                let srange = self.strided_range(sram, &sram_layout).map_err(op)?;
                let bytes = mem.bytes().ok_or(op(Fault::BadOperand))?;
                let cycles = cost.dma_rows(bytes, rows_of(&mem));
                ctl.charge(cycles);
                // An empty transfer's row length is unchecked (up to 4 GiB).
                let n = if bytes == 0 { 0 } else { mem.shape[0] as usize };
                self.dma_rows(false, va, sram, &mem, &sram_layout, n, mmu, ctl)?;
                tl.issue(
                    Engine::Dma,
                    &[],
                    &[srange],
                    cycles + self.walk_cost(mmu, walks_before, ctl),
                );
            }
            Insn::DmaStore {
                va,
                sram,
                mem,
                sram_layout,
            } => {
                let srange = self.strided_range(sram, &sram_layout).map_err(op)?;
                let bytes = mem.bytes().ok_or(op(Fault::BadOperand))?;
                let cycles = cost.dma_rows(bytes, rows_of(&mem));
                ctl.charge(cycles);
                let n = if bytes == 0 { 0 } else { mem.shape[0] as usize };
                self.dma_rows(true, va, sram, &mem, &sram_layout, n, mmu, ctl)?;
                tl.issue(
                    Engine::Dma,
                    &[srange],
                    &[],
                    cycles + self.walk_cost(mmu, walks_before, ctl),
                );
            }
            Insn::Copy {
                src,
                dst,
                src_layout,
                dst_layout,
            } => {
                let r = self.strided_range(src, &src_layout).map_err(op)?;
                let w = self.strided_range(dst, &dst_layout).map_err(op)?;
                let bytes = src_layout.bytes().ok_or(op(Fault::BadOperand))?;
                let cycles = cost.dma_rows(bytes, rows_of(&src_layout));
                ctl.charge(cycles);
                // Snapshot the source range, then scatter from it: overlapping
                // copies behave as if through a temporary buffer. The range
                // is at most the SRAM, where rows gathered one by one could
                // add up to far more (planes may overlap rows).
                let n = src_layout.shape[0] as usize;
                // Without overlap the source stays as it was until the end:
                // the rows are copied in place, with no snapshot.
                let snap =
                    overlaps(r, w).then(|| self.sram.bytes()[r.0 as usize..r.1 as usize].to_vec());
                // Planes outer, rows inner, as DMA rows are moved.
                let (rows, planes) = (src_layout.shape[1] as usize, src_layout.shape[2] as usize);
                let planes = if src_layout.shape.contains(&0) {
                    0
                } else {
                    planes
                };
                let (ss, ds) = (src_layout.stride, dst_layout.stride);
                let bytes = self.sram.bytes_mut();
                for p in 0..planes {
                    let (sp, dp) = (p * ss[1] as usize, dst as usize + p * ds[1] as usize);
                    for row in 0..rows {
                        poll(ctl, mmu)?;
                        let (s, d) = (sp + row * ss[0] as usize, dp + row * ds[0] as usize);
                        match &snap {
                            Some(snap) => bytes[d..d + n].copy_from_slice(&snap[s..s + n]),
                            None => bytes.copy_within(r.0 as usize + s..r.0 as usize + s + n, d),
                        }
                    }
                }
                tl.issue(Engine::Dma, &[r], &[w], cycles);
            }
            Insn::Fill { dst, len, pattern } => {
                if dst % 4 != 0 || len % 4 != 0 {
                    return Err(op(Fault::BadOperand));
                }
                let (lo, hi) = self.sram.check(dst as u64, len as u64).map_err(op)?;
                ctl.charge(cost.dma(len as u64));
                self.sram.words[lo as usize / 4..hi as usize / 4].fill(pattern);
                tl.issue(Engine::Dma, &[], &[(lo, hi)], cost.dma(len as u64));
            }
            Insn::Gather {
                wrap_negative,
                va,
                sram,
                row_bytes,
                count,
                table_rows,
                table_stride,
                indices,
                sram_stride,
            } => {
                // An empty gather touches nothing (like any empty operand).
                if count == 0 || row_bytes == 0 {
                    return Ok(());
                }
                let idx = vector(&self.sram, indices, count).map_err(op)?;
                let layout = Strided::rows(row_bytes, count, sram_stride);
                let srange = self.strided_range(sram, &layout).map_err(op)?;
                // Both are bounded by the SRAM (checked above).
                let bytes = row_bytes as u64 * count as u64;
                let cycles = cost.dma_rows(bytes, count as u64);
                ctl.charge(cycles);
                // Every index is checked before any row moves: the device
                // never reads outside the table, whatever the indices hold.
                let mut rows = std::mem::take(&mut self.scratch[0]);
                idx.load32_into(&self.sram, &mut rows);
                for j in rows.iter_mut() {
                    let mut i = *j as i32 as i64;
                    if wrap_negative && i < 0 {
                        i += table_rows as i64;
                    }
                    if i < 0 || i >= table_rows as i64 {
                        self.scratch[0] = rows;
                        return Err(op(Fault::IndexRange));
                    }
                    *j = i as u32;
                }
                let n = row_bytes as usize;
                let mut result = Ok(());
                for (r, &j) in rows.iter().enumerate() {
                    // A reset or revoked memory is noticed between rows.
                    if let Err(f) = poll(ctl, mmu) {
                        result = Err(f);
                        break;
                    }
                    // < 2^64: both factors are below 2^32.
                    let off = j as u64 * table_stride as u64;
                    let Some(addr) = va.checked_add(off) else {
                        result = Err(JobFault::new(Fault::MmuVaRange, va));
                        break;
                    };
                    let s = sram as usize + r * sram_stride as usize;
                    if let Err(f) = mmu.read(addr, &mut self.sram.bytes_mut()[s..s + n]) {
                        result = Err(f);
                        break;
                    }
                }
                self.scratch[0] = rows;
                result?;
                tl.issue(
                    Engine::Dma,
                    &[idx.range()],
                    &[srange],
                    cycles + self.walk_cost(mmu, walks_before, ctl),
                );
            }
            Insn::Matmul {
                dtype,
                accumulate,
                transpose_b,
                m,
                n,
                k,
                a,
                b,
                c,
            } => {
                let (bs, bc) = if transpose_b { (n, k) } else { (k, n) };
                let es = dtype.size();
                let ta = TileRef::new(&self.sram, a, m, k, es).map_err(op)?;
                let tb = TileRef::new(&self.sram, b, bs, bc, es).map_err(op)?;
                let tc = TileRef::new(&self.sram, c, m, n, 4).map_err(op)?;
                let macs = m as u64 * n as u64 * k as u64;
                if dtype == DType::I32 {
                    return Err(op(Fault::BadOperand));
                }
                let cycles = cost.macs(macs, dtype == DType::I8);
                ctl.charge(cycles);
                // C's rows in blocks of about MATMUL_BLOCK_MACS, with a poll
                // between blocks. An empty C (m or n zero) has no rows.
                let (rows, nk) = (tc.rows, (n as u64 * k as u64).max(1));
                let block = (MATMUL_BLOCK_MACS / nk).clamp(1, rows.max(1) as u64) as usize;
                let (n, k) = (n as usize, k as usize);
                match dtype {
                    DType::F32
                        if !overlaps(tc.range(), ta.range())
                            && !overlaps(tc.range(), tb.range()) =>
                    {
                        // Operate on the SRAM in place: no tile copies.
                        let (a_off, b_off, c_off) = (ta.base, tb.base, tc.base);
                        let (lda, ldb, ldc) = (ta.ld.max(1), tb.ld.max(1), tc.ld.max(1));
                        for m0 in (0..rows).step_by(block) {
                            poll(ctl, mmu)?;
                            let mb = block.min(rows - m0);
                            // With k = 0, A is empty and its offset unused.
                            let a_at = if k == 0 { a_off } else { a_off + m0 * lda };
                            crate::gemm::sgemm_in_place(
                                self.sram.words.as_mut_slice(),
                                crate::gemm::GemmShape { m: mb, n, k },
                                (a_at, lda),
                                (b_off, ldb, transpose_b),
                                (c_off + m0 * ldc, ldc),
                                accumulate,
                            );
                        }
                    }
                    DType::F32 => {
                        let av = f32s(&ta.load32(&self.sram));
                        let bv = f32s(&tb.load32(&self.sram));
                        let mut cv = if accumulate {
                            f32s(&tc.load32(&self.sram))
                        } else {
                            vec![0.0; tc.rows * tc.cols]
                        };
                        for m0 in (0..rows).step_by(block) {
                            poll(ctl, mmu)?;
                            let mb = block.min(rows - m0);
                            let a_blk = if k == 0 {
                                &av[..0]
                            } else {
                                &av[m0 * k..(m0 + mb) * k]
                            };
                            crate::gemm::sgemm(
                                mb,
                                n,
                                k,
                                a_blk,
                                &bv,
                                transpose_b,
                                &mut cv[m0 * n..(m0 + mb) * n],
                            );
                        }
                        tc.store32(&mut self.sram, &from_f32s(&cv));
                    }
                    DType::I8
                        if !overlaps(tc.range(), ta.range())
                            && !overlaps(tc.range(), tb.range())
                            && crate::gemm::igemm_in_place_supported() =>
                    {
                        // Operate on the SRAM in place: no tile copies.
                        let block = (MATMUL_I8_BLOCK_MACS / nk).max(1) as usize;
                        let mut stopped = None;
                        crate::gemm::igemm_in_place(
                            self.sram.words.as_mut_slice(),
                            crate::gemm::GemmShape { m: rows, n, k },
                            (ta.base, ta.ld),
                            (tb.base, tb.ld, transpose_b),
                            (tc.base, tc.ld),
                            accumulate,
                            block,
                            &mut || match poll(ctl, mmu) {
                                Ok(()) => true,
                                Err(f) => {
                                    stopped = Some(f);
                                    false
                                }
                            },
                        );
                        if let Some(f) = stopped {
                            return Err(f);
                        }
                    }
                    _ => {
                        let av = ta.load8(&self.sram);
                        let bv = tb.load8(&self.sram);
                        let mut cv: Vec<i32> = if accumulate {
                            tc.load32(&self.sram)
                                .into_iter()
                                .map(|x| x as i32)
                                .collect()
                        } else {
                            vec![0; tc.rows * tc.cols]
                        };
                        let block = (MATMUL_I8_BLOCK_MACS / nk).max(1) as usize;
                        let mut stopped = None;
                        crate::gemm::igemm_with(
                            crate::gemm::int8_kernel(),
                            rows,
                            n,
                            k,
                            &av,
                            &bv,
                            transpose_b,
                            &mut cv,
                            block,
                            &mut || match poll(ctl, mmu) {
                                Ok(()) => true,
                                Err(f) => {
                                    stopped = Some(f);
                                    false
                                }
                            },
                        );
                        if let Some(f) = stopped {
                            return Err(f);
                        }
                        let words: Vec<u32> = cv.into_iter().map(|x| x as u32).collect();
                        tc.store32(&mut self.sram, &words);
                    }
                }
                st.macs += macs;
                tl.issue(
                    Engine::Compute,
                    &[ta.range(), tb.range()],
                    &[tc.range()],
                    cycles,
                );
            }
            Insn::Requant {
                rows,
                cols,
                src,
                dst,
                mult,
                per_channel,
                bias,
                shift,
                zero_point,
                lo,
                hi,
            } => {
                let ts = TileRef::new(&self.sram, src, rows, cols, 4).map_err(op)?;
                let td = TileRef::new(&self.sram, dst, rows, cols, 1).map_err(op)?;
                let mut reads = vec![ts.range()];
                // The vectors have `cols` entries and must lie in the SRAM
                // (checked); the immediate and zero defaults are sized by the
                // checked tile, never by the raw `cols` (an empty tile has 0).
                let c = ts.cols;
                let mults: Vec<i32> = if per_channel {
                    let v = vector(&self.sram, mult, cols).map_err(op)?;
                    reads.push(v.range());
                    v.load32(&self.sram).into_iter().map(|x| x as i32).collect()
                } else {
                    vec![mult as i32; c]
                };
                let biases: Vec<i32> = match bias {
                    Some(addr) => {
                        let v = vector(&self.sram, addr, cols).map_err(op)?;
                        reads.push(v.range());
                        v.load32(&self.sram).into_iter().map(|x| x as i32).collect()
                    }
                    None => vec![0; c],
                };
                let acc = ts.load32(&self.sram);
                let out: Vec<i8> = acc
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        requantize(
                            x as i32,
                            biases[i % c],
                            mults[i % c],
                            shift,
                            zero_point,
                            lo,
                            hi,
                        )
                    })
                    .collect();
                td.store8(&mut self.sram, &out);
                let cycles = cost.vector(ts.elems(), false);
                ctl.charge(cycles);
                tl.issue(Engine::Compute, &reads, &[td.range()], cycles);
            }
            Insn::Convert {
                conv,
                rows,
                cols,
                src,
                dst,
                zero_point,
                scale,
            } => {
                let (ssize, dsize) = conv.sizes();
                let ts = TileRef::new(&self.sram, src, rows, cols, ssize).map_err(op)?;
                let td = TileRef::new(&self.sram, dst, rows, cols, dsize).map_err(op)?;
                let widen = |sram: &Sram, f: fn(u16) -> f32| -> Vec<u32> {
                    ts.load16(sram).iter().map(|&h| f(h).to_bits()).collect()
                };
                let narrow = |sram: &Sram, f: fn(f32) -> u16| -> Vec<u16> {
                    ts.load32(sram)
                        .iter()
                        .map(|&x| f(f32::from_bits(x)))
                        .collect()
                };
                let out: Vec<u32> = match conv {
                    Conversion::I8ToI32 => ts
                        .load8(&self.sram)
                        .iter()
                        .map(|&x| (x as i32).wrapping_sub(zero_point) as u32)
                        .collect(),
                    Conversion::I8ToF32 => ts
                        .load8(&self.sram)
                        .iter()
                        .map(|&x| (((x as i32).wrapping_sub(zero_point)) as f32 * scale).to_bits())
                        .collect(),
                    Conversion::I32ToF32 => ts
                        .load32(&self.sram)
                        .iter()
                        .map(|&x| (x as i32 as f32).to_bits())
                        .collect(),
                    // `as` saturates and maps NaN to 0; round_ties_even first.
                    Conversion::F32ToI32 => ts
                        .load32(&self.sram)
                        .iter()
                        .map(|&x| f32::from_bits(x).round_ties_even() as i32 as u32)
                        .collect(),
                    Conversion::F16ToF32 => widen(&self.sram, f16_to_f32),
                    Conversion::Bf16ToF32 => widen(&self.sram, bf16_to_f32),
                    Conversion::F32ToF16 | Conversion::F32ToBf16 => {
                        let f = if conv == Conversion::F32ToF16 {
                            f32_to_f16
                        } else {
                            f32_to_bf16
                        };
                        let half = narrow(&self.sram, f);
                        td.store16(&mut self.sram, &half);
                        Vec::new()
                    }
                };
                if dsize == 4 {
                    td.store32(&mut self.sram, &out);
                }
                let cycles = cost.vector(ts.elems(), false);
                ctl.charge(cycles);
                tl.issue(Engine::Compute, &[ts.range()], &[td.range()], cycles);
            }
            Insn::Binary {
                op: bop,
                dtype,
                bcast,
                rows,
                cols,
                a,
                b,
                out,
                scalar,
            } => {
                let ta = TileRef::new(&self.sram, a, rows, cols, 4).map_err(op)?;
                let to = TileRef::new(&self.sram, out, rows, cols, 4).map_err(op)?;
                let [mut av, mut bv] = std::mem::take(&mut self.scratch);
                let (btile, brange) = match bcast {
                    Broadcast::None => {
                        let t = TileRef::new(&self.sram, b, rows, cols, 4).map_err(op)?;
                        (Some(t), Some(t.range()))
                    }
                    Broadcast::PerRow => {
                        let t = vector(&self.sram, b.addr, rows).map_err(op)?;
                        t.load32_into(&self.sram, &mut bv);
                        (None, Some(t.range()))
                    }
                    Broadcast::PerCol => {
                        let t = vector(&self.sram, b.addr, cols).map_err(op)?;
                        t.load32_into(&self.sram, &mut bv);
                        (None, Some(t.range()))
                    }
                    Broadcast::Scalar => {
                        bv.clear();
                        bv.push(scalar);
                        (None, None)
                    }
                };
                // Overlapping operands read what was there before the
                // instruction: an operand that is the output tile itself is
                // read in place (each element before it is written), one
                // the output only partly overlaps is read from a copy, and
                // one it does not touch is read where it is.
                let same = |t: &TileRef| t.base == to.base && t.ld == to.ld;
                let a_src = if same(&ta) {
                    Src::Out
                } else if overlaps(ta.range(), to.range()) {
                    ta.load32_into(&self.sram, &mut av);
                    Src::Copy(ta.cols)
                } else {
                    Src::Sram(ta.base, ta.ld)
                };
                let b_src = match btile {
                    Some(t) if same(&t) => Src::Out,
                    Some(t) if overlaps(t.range(), to.range()) => {
                        t.load32_into(&self.sram, &mut bv);
                        Src::Copy(t.cols)
                    }
                    Some(t) => Src::Sram(t.base, t.ld),
                    None => Src::Copy(0),
                };
                binary_tile(
                    bop,
                    dtype,
                    bcast,
                    (a_src, &av),
                    (b_src, &bv),
                    &to,
                    &mut self.sram.words,
                );
                self.scratch = [av, bv];
                let cycles = cost.vector(ta.elems(), bop == BinaryOp::Div);
                ctl.charge(cycles);
                let reads = [ta.range(), brange.unwrap_or_default()];
                let reads = &reads[..if brange.is_some() { 2 } else { 1 }];
                tl.issue(Engine::Compute, reads, &[to.range()], cycles);
            }
            Insn::Unary {
                op: uop,
                dtype,
                rows,
                cols,
                src,
                dst,
                lo,
                hi,
            } => {
                let es = dtype.size();
                let ts = TileRef::new(&self.sram, src, rows, cols, es).map_err(op)?;
                let td = TileRef::new(&self.sram, dst, rows, cols, es).map_err(op)?;
                if dtype == DType::I8 {
                    let v = ts.load8(&self.sram);
                    td.store8(&mut self.sram, &v);
                } else {
                    // As BINARY: in place, from where it is, or from a copy
                    // when the output partly overlaps it.
                    let mut v = std::mem::take(&mut self.scratch[0]);
                    let src = if ts.base == td.base && ts.ld == td.ld {
                        Src::Out
                    } else if overlaps(ts.range(), td.range()) {
                        ts.load32_into(&self.sram, &mut v);
                        Src::Copy(ts.cols)
                    } else {
                        Src::Sram(ts.base, ts.ld)
                    };
                    unary_tile(uop, dtype, lo, hi, (src, &v), &td, &mut self.sram.words);
                    self.scratch[0] = v;
                }
                let cycles = cost.vector(ts.elems(), uop.special());
                ctl.charge(cycles);
                tl.issue(Engine::Compute, &[ts.range()], &[td.range()], cycles);
            }
            Insn::Reduce {
                op: rop,
                axis,
                dtype,
                rows,
                cols,
                src,
                dst,
            } => {
                let ts = TileRef::new(&self.sram, src, rows, cols, 4).map_err(op)?;
                let n = match axis {
                    Axis::Cols => rows,
                    Axis::Rows => cols,
                };
                let td = vector(&self.sram, dst, n).map_err(op)?;
                let v = ts.load32(&self.sram);
                let (r, c) = (rows as usize, cols as usize);
                let mut out = Vec::with_capacity(n as usize);
                for o in 0..n as usize {
                    let it: Box<dyn Iterator<Item = u32>> = match axis {
                        Axis::Cols => Box::new(v[o * c..(o + 1) * c].iter().copied()),
                        Axis::Rows => Box::new((0..r).map(|i| v[i * c + o])),
                    };
                    out.push(reduce(rop, dtype, it));
                }
                td.store32(&mut self.sram, &out);
                let cycles = cost.vector(ts.elems(), false);
                ctl.charge(cycles);
                tl.issue(Engine::Compute, &[ts.range()], &[td.range()], cycles);
            }
            Insn::Pool {
                op: pop,
                geom,
                src,
                dst,
            } => {
                let (ins, outs) = pool_tiles(&self.sram, &geom, src, dst, 4).map_err(op)?;
                let work = outs.elems() * geom.kernel[0] as u64 * geom.kernel[1] as u64;
                let cycles = cost.vector(work, false);
                ctl.charge(cycles);
                // The input read in place unless the output overlaps it
                // (then from a copy); the output gathered in a scratch
                // buffer and stored once the last element is computed.
                let [mut copy, mut output] = std::mem::take(&mut self.scratch);
                let input = if overlaps(ins.range(), outs.range()) {
                    ins.load32_into(&self.sram, &mut copy);
                    &copy[..]
                } else {
                    &self.sram.words[ins.base..ins.base + ins.rows * ins.cols]
                };
                let done = pool(pop, &geom, input, &mut output, &mut || poll(ctl, mmu));
                if done.is_ok() {
                    outs.store32(&mut self.sram, &output);
                }
                self.scratch = [copy, output];
                done?;
                tl.issue(Engine::Compute, &[ins.range()], &[outs.range()], cycles);
            }
            Insn::PoolI8 {
                op: pop,
                geom,
                src,
                dst,
                requant,
                zp_in,
                zp_out,
                scale_in,
                scale_out,
            } => {
                let (ins, outs) = pool_tiles(&self.sram, &geom, src, dst, 1).map_err(op)?;
                let work = outs.elems() * geom.kernel[0] as u64 * geom.kernel[1] as u64;
                let cycles = cost.vector(work, false);
                ctl.charge(cycles);
                // The input copied out first (the output may overlap it).
                let input = ins.load8(&self.sram);
                let q = PoolI8Params {
                    op: pop,
                    requant,
                    zp_in,
                    zp_out,
                    scale_in,
                    scale_out,
                };
                let mut output = Vec::new();
                pool_i8(&q, &geom, &input, &mut output, &mut || poll(ctl, mmu))?;
                outs.store8(&mut self.sram, &output);
                tl.issue(Engine::Compute, &[ins.range()], &[outs.range()], cycles);
            }
            Insn::Select {
                dtype: _,
                rows,
                cols,
                cond,
                a,
                b,
                out,
            } => {
                let done = select::select(
                    &mut self.sram,
                    &mut self.select,
                    (rows, cols),
                    [cond, a, b],
                    out,
                )
                .map_err(op)?;
                let cycles = cost.vector(done.elems, false);
                ctl.charge(cycles);
                tl.issue(
                    Engine::Compute,
                    &done.reads[..done.nreads],
                    &[done.write],
                    cycles,
                );
            }
        }
        Ok(())
    }

    /// Run a depthwise convolution's taps at once: from the MUL at
    /// instruction `at`, pairs of
    ///
    /// ```text
    ///   MUL f32 tmp <- x_t * w_t (w_t per row)
    ///   ADD f32 acc <- acc + tmp
    /// ```
    ///
    /// on the same `tmp` and `acc` tiles, which overlap neither each other
    /// nor any `x_t` or `w_t`. Every element then goes through the same
    /// operations in the same order as instruction by instruction (`acc =
    /// (acc + x_0 w_0) + x_1 w_1 ...`, `tmp` left holding the last
    /// products), but in one pass over the tiles, row by row, instead of
    /// two per tap. Each instruction is fetched, counted, charged and
    /// scheduled as it would be, after a poll; a reset or revoked memory is
    /// noticed between rows. None when fewer than two pairs qualify: the
    /// instructions then run one by one (any fault of theirs is theirs),
    /// and the look-ahead's fetches are not counted. Some(Ok(n)): the
    /// instructions run.
    fn mac_chain(
        &mut self,
        head: &Insn,
        (cmdbuf, at, count): (u64, u64, u64),
        mmu: &mut Mmu,
        tl: &mut Timeline,
        ctl: &mut dyn JobControl,
    ) -> Option<Result<u64, JobFault>> {
        let Insn::Binary {
            op: BinaryOp::Mul,
            dtype: DType::F32,
            bcast: Broadcast::PerRow,
            rows,
            cols,
            out: tmp,
            ..
        } = *head
        else {
            return None;
        };
        let sram = &self.sram;
        let tmp_t = TileRef::new(sram, tmp, rows, cols, 4).ok()?;
        if tmp_t.elems() == 0 {
            return None;
        }
        let fetched_before = mmu.bytes_read;
        let fetch = |mmu: &mut Mmu, j: u64| -> Option<Insn> {
            let mut raw = [0u8; INSN_SIZE];
            let va = cmdbuf.checked_add(j.checked_mul(INSN_SIZE as u64)?)?;
            mmu.read(va, &mut raw).ok()?;
            Insn::decode(&raw).ok()
        };
        // (x_t, w_t) of each qualifying pair, and the accumulator.
        let mut taps: Vec<(TileRef, TileRef)> = Vec::new();
        let mut acc_t: Option<TileRef> = None;
        let mut consumed = mmu.bytes_read;
        let mut j = at;
        while taps.len() < MAC_CHAIN_PAIRS && j + 1 < count {
            let mul = if j == at { Some(*head) } else { fetch(mmu, j) };
            let Some(Insn::Binary {
                op: BinaryOp::Mul,
                dtype: DType::F32,
                bcast: Broadcast::PerRow,
                rows: r1,
                cols: c1,
                a: x,
                b: w,
                out: o1,
                ..
            }) = mul
            else {
                break;
            };
            let Some(Insn::Binary {
                op: BinaryOp::Add,
                dtype: DType::F32,
                bcast: Broadcast::None,
                rows: r2,
                cols: c2,
                a: acc_a,
                b: acc_b,
                out: acc_o,
                ..
            }) = fetch(mmu, j + 1)
            else {
                break;
            };
            if (r1, c1, r2, c2) != (rows, cols, rows, cols)
                || o1 != tmp
                || acc_b != tmp
                || acc_a != acc_o
                || acc_t
                    .is_some_and(|t| (t.base * 4) as u32 != acc_o.addr || t.ld as u32 != acc_o.ld)
            {
                break;
            }
            let (Ok(xt), Ok(wt), Ok(at_)) = (
                TileRef::new(sram, x, rows, cols, 4),
                vector(sram, w.addr, rows),
                TileRef::new(sram, acc_o, rows, cols, 4),
            ) else {
                break;
            };
            let writes = [tmp_t.range(), at_.range()];
            if overlaps(writes[0], writes[1])
                || writes
                    .iter()
                    .any(|&wr| overlaps(wr, xt.range()) || overlaps(wr, wt.range()))
            {
                break;
            }
            acc_t = Some(at_);
            taps.push((xt, wt));
            consumed = mmu.bytes_read;
            j += 2;
        }
        // What was fetched past the chain is fetched again, and counted, when
        // it runs.
        mmu.bytes_read = consumed;
        let acc_t = acc_t?;
        if taps.len() < 2 {
            mmu.bytes_read = fetched_before;
            return None;
        }
        let n = 2 * taps.len() as u64;
        // The polls before the instructions after the first (the caller
        // polled before it); a failing one runs them one by one instead.
        for _ in 1..n {
            if ctl.poll(mmu).is_err() {
                mmu.bytes_read = fetched_before;
                return None;
            }
        }
        let cycles = self.cost.vector(tmp_t.elems(), false);
        for (xt, wt) in &taps {
            ctl.charge(cycles);
            tl.issue(
                Engine::Compute,
                &[xt.range(), wt.range()],
                &[tmp_t.range()],
                cycles,
            );
            ctl.charge(cycles);
            tl.issue(
                Engine::Compute,
                &[acc_t.range(), tmp_t.range()],
                &[acc_t.range()],
                cycles,
            );
        }
        let [mut acc_row, mut tmp_row] = std::mem::take(&mut self.scratch);
        let done = mac_rows(
            &mut self.sram.words,
            &taps,
            (acc_t, tmp_t),
            (&mut acc_row, &mut tmp_row),
            &mut || ctl.poll(mmu).map_err(|f| JobFault::new(f, 0)),
        )
        .map(|()| n);
        self.scratch = [acc_row, tmp_row];
        Some(done)
    }

    /// Move the rows of a DMA_LOAD (`store` false) or DMA_STORE of `n`-byte
    /// rows, planes outer and rows inner, in groups of
    /// rows that lie in one page (see [`InPageRows`]); the SRAM side was
    /// checked by the caller.
    #[allow(clippy::too_many_arguments)]
    fn dma_rows(
        &mut self,
        store: bool,
        va: u64,
        sram: u32,
        mem: &Strided,
        sram_layout: &Strided,
        n: usize,
        mmu: &mut Mmu,
        ctl: &mut dyn JobControl,
    ) -> Result<(), JobFault> {
        let poll = |ctl: &mut dyn JobControl, mmu: &mut Mmu| {
            ctl.poll(mmu).map_err(|f| JobFault::new(f, u64::MAX))
        };
        let rows = &mut self.dma;
        rows.reset(n);
        // Any zero dimension moves nothing: 2^32 planes of zero rows must
        // not iterate (found by the cmdbuf fuzzer's time budget: 13 s, no
        // poll).
        let (nrows, planes) = if mem.shape.contains(&0) {
            (0, 0)
        } else {
            (mem.shape[1] as u64, mem.shape[2] as u64)
        };
        let (ms, ss) = (mem.stride, sram_layout.stride);
        for p in 0..planes {
            let mut r = 0;
            while r < nrows {
                let m_off = p * ms[1] as u64 + r * ms[0] as u64;
                let s = (sram as u64 + p * ss[1] as u64 + r * ss[0] as u64) as usize;
                let Some(addr) = va.checked_add(m_off) else {
                    rows.flush(store, &mut self.sram, mmu, ctl)?;
                    poll(ctl, mmu)?;
                    return Err(JobFault::new(Fault::MmuVaRange, va));
                };
                let run = Run {
                    addr,
                    stride: ms[0] as u64,
                    count: nrows - r,
                    sram: s,
                    sram_stride: ss[0] as usize,
                };
                let mut took = rows.push(run);
                if took == 0 {
                    rows.flush(store, &mut self.sram, mmu, ctl)?;
                    took = rows.push(run);
                }
                if took == 0 {
                    // A row across pages (or longer than one): alone.
                    poll(ctl, mmu)?;
                    if store {
                        mmu.write(addr, &self.sram.bytes()[s..s + n])?;
                    } else {
                        rows.read_alone(mmu, addr, &mut self.sram.bytes_mut()[s..s + n])?;
                    }
                    took = 1;
                }
                r += took;
            }
        }
        rows.flush(store, &mut self.sram, mmu, ctl)
    }

    /// Charge the page walks a DMA instruction made (known only after it).
    fn walk_cost(&self, mmu: &Mmu, before: u64, ctl: &mut dyn JobControl) -> u64 {
        let c = self.cost.walks(mmu.walks - before);
        ctl.charge(c);
        c
    }

    /// Check a strided SRAM region and return its byte range.
    fn strided_range(&self, base: u32, s: &Strided) -> Res<(u64, u64)> {
        let ext = s.extent().ok_or(Fault::BadOperand)?;
        // Rows must not be longer than their stride, or rows would overlap in
        // ways that make the result depend on the copy order.
        if (s.shape[1] > 1 && s.stride[0] < s.shape[0])
            || (s.shape[2] > 1 && s.stride[1] < s.shape[0])
        {
            return Err(Fault::BadOperand);
        }
        self.sram.check(base as u64, ext)
    }
}

/// The rows of a DMA transfer that lie in one page, in increasing order,
/// moved with one translation and one host-memory lookup (transfers of short
/// rows spent their time per row in the MMU and vm-memory). As row by row:
/// the same bytes reach the same places in the same order, the same pages
/// are translated in the same order, a fault is the one the page's first row
/// gets (the rows before it moved); a poll runs before each page's rows (at
/// most a page of work) instead of before each row. When the page is not
/// one region's, the rows go one by one through the MMU as before. Rows are
/// held as runs of evenly spaced rows (a plane's rows in the page), not one
/// by one: element gathers (strided convolutions) move 4-byte rows.
struct InPageRows {
    row: usize,
    /// The first held row's address; u64::MAX when no row is held.
    start: u64,
    end: u64,
    /// The held runs, at most one per row (so at most a page's worth).
    held: Vec<Run>,
    /// A page, or a row crossing pages that is not all in one region.
    buf: Vec<u8>,
    /// (bus address, offset, length, in one region) of each page of a row
    /// read alone.
    pages: Vec<(u64, usize, usize, bool)>,
}

/// `count` rows at `addr + i * stride` in memory and `sram + i *
/// sram_stride` in the SRAM.
#[derive(Clone, Copy)]
struct Run {
    addr: u64,
    stride: u64,
    count: u64,
    sram: usize,
    sram_stride: usize,
}

impl Run {
    /// (memory offset from `start`, SRAM offset) of each row.
    fn rows(&self, start: u64) -> impl Iterator<Item = (usize, usize)> + Clone {
        let Run {
            addr,
            stride,
            count,
            sram,
            sram_stride,
        } = *self;
        let first = (addr - start) as usize;
        (0..count as usize).map(move |i| (first + i * stride as usize, sram + i * sram_stride))
    }
}

impl InPageRows {
    fn new() -> Self {
        InPageRows {
            row: 0,
            start: u64::MAX,
            end: 0,
            held: Vec::new(),
            buf: vec![0; PAGE_SIZE as usize],
            pages: Vec::new(),
        }
    }

    /// Start a transfer of rows of `row` bytes.
    fn reset(&mut self, row: usize) {
        self.row = row;
        self.start = u64::MAX;
        self.held.clear();
    }

    /// Read a row that crosses pages straight into `dst` (the SRAM), as
    /// [`Mmu::read`] does, with the SRAM written only once every page is
    /// translated and readable: each page in order is translated, then
    /// checked to lie in one region (or, when not, read through the MMU
    /// into a row buffer, as before), so the faults, their order and the
    /// walks are [`Mmu::read`]'s, and a faulting row leaves the SRAM as it
    /// was. One copy, not two.
    fn read_alone(&mut self, mmu: &mut Mmu, va: u64, dst: &mut [u8]) -> Result<(), JobFault> {
        self.pages.clear();
        let mut done = 0usize;
        while done < dst.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(JobFault::new(Fault::MmuVaRange, va))?;
            let n = ((PAGE_SIZE - cur % PAGE_SIZE) as usize).min(dst.len() - done);
            let pa = mmu.translate(cur, Access::Read)?;
            let direct = bus_readable(mmu.memory(), pa, n);
            if !direct {
                if self.buf.len() < dst.len() {
                    self.buf.resize(dst.len(), 0);
                }
                if !bus_read(mmu.memory(), pa, &mut self.buf[done..done + n]) {
                    return Err(JobFault::new(Fault::DmaBusError, cur));
                }
            }
            self.pages.push((pa, done, n, direct));
            done += n;
        }
        for &(pa, off, n, direct) in &self.pages {
            let to = &mut dst[off..off + n];
            if !direct {
                to.copy_from_slice(&self.buf[off..off + n]);
            } else if !bus_read_span(mmu.memory(), pa, to) {
                // Checked above, in the same memory.
                return Err(JobFault::new(Fault::DmaBusError, va + off as u64));
            }
        }
        mmu.count_read(dst.len() as u64);
        Ok(())
    }

    /// Hold the first rows of `run` that join the held ones (same page,
    /// after them) or start a group: how many (0 when its first row must
    /// wait for a flush or cannot be held: it crosses a page). Exactly the
    /// rows that pushed one by one would have joined: a run's rows are in
    /// increasing order when its stride is at least a row, and otherwise
    /// the second row starts before the first ends, so only one is held.
    fn push(&mut self, run: Run) -> u64 {
        let (addr, n) = (run.addr, self.row as u64);
        let Some(last) = addr.checked_add(n.max(1) - 1) else {
            return 0;
        };
        // A row past the VA space is left to fault alone (and its page's
        // end might not be a u64).
        if n == 0 || addr / PAGE_SIZE != last / PAGE_SIZE || last >> crate::mmu::VA_BITS != 0 {
            return 0;
        }
        if self.start == u64::MAX {
            self.start = addr;
        } else if addr / PAGE_SIZE != self.start / PAGE_SIZE || addr < self.end {
            return 0;
        }
        // Rows i with addr + i * stride + n within the page.
        let take = if run.stride >= n {
            let room = PAGE_SIZE - addr % PAGE_SIZE - n;
            (room / run.stride + 1).min(run.count)
        } else {
            1
        };
        self.end = addr + (take - 1) * run.stride + n;
        self.held.push(Run { count: take, ..run });
        take
    }

    /// Move the held rows: memory to SRAM (`store` false) or back.
    fn flush(
        &mut self,
        store: bool,
        sram: &mut Sram,
        mmu: &mut Mmu,
        ctl: &mut dyn JobControl,
    ) -> Result<(), JobFault> {
        if self.start == u64::MAX {
            return Ok(());
        }
        let (start, n) = (self.start, self.row);
        self.start = u64::MAX;
        ctl.poll(mmu).map_err(|f| JobFault::new(f, u64::MAX))?;
        let span = (self.end - start) as usize;
        let access = if store { Access::Write } else { Access::Read };
        let pa = mmu.translate(start, access)?;
        let total = n as u64 * self.held.iter().map(|r| r.count).sum::<u64>();
        let done = if store {
            let bytes = sram.bytes();
            let rows = self
                .held
                .iter()
                .flat_map(|r| r.rows(start))
                .map(|(o, s)| (o, &bytes[s..s + n]));
            bus_write_rows(mmu.memory(), pa, span, rows)
        } else if bus_read_span(mmu.memory(), pa, &mut self.buf[..span]) {
            let bytes = sram.bytes_mut();
            let buf = &self.buf[..span];
            for run in &self.held {
                let count = run.count as usize;
                if n == 4 && run.sram_stride == 4 && run.stride >= 4 {
                    // Element gathers (strided convolutions) into a packed
                    // SRAM row: one slice each side, a fixed-size copy per
                    // element, no per-element index arithmetic.
                    let o = (run.addr - start) as usize;
                    let src = &buf[o..o + (count - 1) * run.stride as usize + 4];
                    let dst = &mut bytes[run.sram..run.sram + 4 * count];
                    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks(run.stride as usize)) {
                        d.copy_from_slice(&s[..4]);
                    }
                } else if n == 4 {
                    for (o, s) in run.rows(start) {
                        bytes[s..s + 4].copy_from_slice(&buf[o..o + 4]);
                    }
                } else {
                    for (o, s) in run.rows(start) {
                        bytes[s..s + n].copy_from_slice(&buf[o..o + n]);
                    }
                }
            }
            true
        } else {
            false
        };
        if done {
            if store {
                mmu.count_written(total);
            } else {
                mmu.count_read(total);
            }
        } else {
            // Not one region's page: row by row, for the exact fault.
            for run in &self.held {
                for (o, s) in run.rows(start) {
                    let addr = start + o as u64;
                    if store {
                        mmu.write(addr, &sram.bytes()[s..s + n])?;
                    } else {
                        let (row, _) = self.buf.split_at_mut(n);
                        mmu.read(addr, row)?;
                        sram.bytes_mut()[s..s + n].copy_from_slice(row);
                    }
                }
            }
        }
        self.held.clear();
        Ok(())
    }
}

/// Rows (times planes) of a strided transfer; none when rows are empty.
fn rows_of(s: &Strided) -> u64 {
    if s.shape[0] == 0 {
        0
    } else {
        s.shape[1] as u64 * s.shape[2] as u64
    }
}

/// IEEE 754-2019 maximumNumber: a NaN operand loses to a number, and +0 is
/// above -0 (npu-hw.rst, NaN and signed zeros). `f32::max` leaves the sign
/// of a zero result unspecified.
#[inline(always)]
fn fmax(x: f32, y: f32) -> f32 {
    if x.is_nan() {
        y
    } else if y.is_nan() || x > y || (x == y && y.is_sign_negative()) {
        x
    } else {
        y
    }
}

/// An f32 as a u32 whose order is maximumNumber's: -0 below +0, and every
/// NaN (0) below -inf, so a NaN never wins over a number. For a non-NaN
/// `acc`, `from_max_key(max_key(acc).max(max_key(v)))` is `fmax(acc, v)`.
#[inline(always)]
fn max_key(x: f32) -> u32 {
    let b = x.to_bits();
    // Without branches (pooling's inner loop): negative numbers
    // inverted, others with the sign bit set, NaNs 0.
    let key = b ^ (((b as i32 >> 31) as u32) | 1 << 31);
    let nan = b & !(1 << 31) > f32::INFINITY.to_bits();
    if nan {
        0
    } else {
        key
    }
}

/// The f32 of a [`max_key`] of a number.
#[inline(always)]
fn from_max_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 != 0 { k & !(1 << 31) } else { !k })
}

/// IEEE 754-2019 minimumNumber: a NaN operand loses, -0 is below +0.
#[inline(always)]
fn fmin(x: f32, y: f32) -> f32 {
    if x.is_nan() {
        y
    } else if y.is_nan() || x < y || (x == y && x.is_sign_negative()) {
        x
    } else {
        y
    }
}

/// Where an elementwise operand's rows are read from.
#[derive(Clone, Copy)]
enum Src {
    /// The output tile itself (the same elements, read before written).
    Out,
    /// A dense copy (rows of the given length; for a broadcast vector, the
    /// vector).
    Copy(usize),
    /// A tile in the SRAM that the output does not overlap: (base, ld) in
    /// words.
    Sram(usize, usize),
}

/// The output tile's words and the SRAM below and above them, so that
/// operands the output does not overlap are read in place while it is
/// written: (below, out, above, word offset of out).
fn split_out<'a>(
    words: &'a mut [u32],
    out: &TileRef,
) -> (&'a [u32], &'a mut [u32], &'a [u32], usize) {
    let (lo, hi) = (out.lo as usize / 4, out.hi as usize / 4);
    let (below, rest) = words.split_at_mut(lo);
    let (out, above) = rest.split_at_mut(hi - lo);
    (below, out, above, lo)
}

/// Row `r` (`cols` words) of an operand read from `src` (not
/// [`Src::Out`]): from `copy`, or from the SRAM around the output.
#[inline(always)]
fn src_row<'a>(
    src: Src,
    copy: &'a [u32],
    (below, above, base, out_len): (&'a [u32], &'a [u32], usize, usize),
    r: usize,
    cols: usize,
) -> &'a [u32] {
    match src {
        Src::Copy(n) => &copy[r * n..r * n + cols],
        Src::Sram(b, ld) => {
            let s = b + r * ld;
            if s < base {
                &below[s..s + cols]
            } else {
                let s = s - base - out_len;
                &above[s..s + cols]
            }
        }
        Src::Out => &[],
    }
}

/// Calls `body(args...)` compiled for the widest vectors this CPU has (see
/// [`VectorIsa`]): the same body instantiated once per instruction set and
/// chosen at run time. Each argument is written `name: type`.
macro_rules! widest_vectors {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) -> $ret {
                $body($($arg),*)
            }
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) -> $ret {
                $body($($arg),*)
            }
            match vector_isa() {
                // SAFETY: the CPU has the instruction set (vector_isa checked).
                VectorIsa::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                VectorIsa::Avx2 => return unsafe { avx2($($arg),*) },
                VectorIsa::Base => {}
            }
        }
        $body($($arg),*)
    }};
}

/// `binary(op, dtype, a[i], b[j])` for every element `i` of the tile `out`
/// (in `words`), `a[i]` read from `a`'s source, `b[j]` as `bcast` says (the
/// whole tile from `b`'s source; or, in `b`'s copy, a value per row, per
/// column, or one). Each op, type and source is its own loop without
/// per-element dispatch or division, so they vectorise.
fn binary_tile(
    op: BinaryOp,
    dtype: DType,
    bcast: Broadcast,
    a: (Src, &[u32]),
    b: (Src, &[u32]),
    out: &TileRef,
    words: &mut [u32],
) {
    widest_vectors!(binary_tile_body(
        op: BinaryOp,
        dtype: DType,
        bcast: Broadcast,
        a: (Src, &[u32]),
        b: (Src, &[u32]),
        out: &TileRef,
        words: &mut [u32],
    ) -> ())
}

/// Most MUL/ADD pairs [`Executor::mac_chain`] runs at once: the work
/// between two of its polls is that many passes over one row.
const MAC_CHAIN_PAIRS: usize = 64;

/// Columns [`mac_rows`] keeps in registers at a time: four AVX-512 vectors.
const MAC_BLOCK: usize = 64;

/// Rows [`mac_rows`] runs the last columns of (those short of a block) at
/// a time.
const MAC_TAIL_ROWS: usize = 4;

/// The rows of [`Executor::mac_chain`]: per row, for each tap `tmp = x *
/// w; acc = acc + tmp`, each rounded (BINARY mul, then BINARY add; Rust
/// never fuses them); only the last tap's products are kept in tmp. `poll`
/// runs before each row's whole blocks and before each group of rows'
/// last columns.
fn mac_rows(
    words: &mut [u32],
    taps: &[(TileRef, TileRef)],
    tiles: (TileRef, TileRef),
    scratch: (&mut Vec<u32>, &mut Vec<u32>),
    poll: &mut dyn FnMut() -> Result<(), JobFault>,
) -> Result<(), JobFault> {
    #[inline(always)]
    fn body(
        words: &mut [u32],
        taps: &[(TileRef, TileRef)],
        (acc_t, tmp_t): (TileRef, TileRef),
        (acc_row, tmp_row): (&mut Vec<u32>, &mut Vec<u32>),
        poll: &mut dyn FnMut() -> Result<(), JobFault>,
    ) -> Result<(), JobFault> {
        let (last, rest) = taps.split_last().expect("a chain has taps");
        // Whole blocks of MAC_BLOCK columns: the block's accumulators stay
        // in registers across the taps and are stored once. mac_chain
        // checked that acc and tmp overlap no x or w, so a block is final
        // when stored.
        let blocks = tmp_t.cols / MAC_BLOCK * MAC_BLOCK;
        let cols = tmp_t.cols - blocks;
        for r in 0..if blocks > 0 { tmp_t.rows } else { 0 } {
            poll()?;
            let a0 = acc_t.base + r * acc_t.ld;
            let t0 = tmp_t.base + r * tmp_t.ld;
            let w = |wt: &TileRef, words: &[u32]| f32::from_bits(words[wt.base + r]);
            for c0 in (0..blocks).step_by(MAC_BLOCK) {
                let block = |base: usize, words: &[u32]| -> [f32; MAC_BLOCK] {
                    let row: &[u32; MAC_BLOCK] = words[base + c0..base + c0 + MAC_BLOCK]
                        .try_into()
                        .expect("a block is MAC_BLOCK long");
                    row.map(f32::from_bits)
                };
                let mut acc = block(a0, words);
                for (xt, wt) in rest {
                    let (x, w) = (block(xt.base + r * xt.ld, words), w(wt, words));
                    for (a, v) in acc.iter_mut().zip(x) {
                        *a += v * w;
                    }
                }
                let (xt, wt) = last;
                let (x, w) = (block(xt.base + r * xt.ld, words), w(wt, words));
                let tmp = x.map(|v| v * w);
                for (a, t) in acc.iter_mut().zip(tmp) {
                    *a += t;
                }
                words[a0 + c0..a0 + c0 + MAC_BLOCK].copy_from_slice(&acc.map(f32::to_bits));
                words[t0 + c0..t0 + c0 + MAC_BLOCK].copy_from_slice(&tmp.map(f32::to_bits));
            }
        }
        // The last columns, fewer than a block, MAC_TAIL_ROWS rows at a
        // time on copies of the rows: each tap goes over the rows in turn,
        // so that their addition chains (one per row, each waiting for the
        // tap before) overlap. At most MAC_TAIL_ROWS x 63 columns x
        // MAC_CHAIN_PAIRS taps between polls.
        if cols == 0 {
            return Ok(());
        }
        for r0 in (0..tmp_t.rows).step_by(MAC_TAIL_ROWS) {
            poll()?;
            let group = r0..(r0 + MAC_TAIL_ROWS).min(tmp_t.rows);
            let n = group.len() * cols;
            acc_row.clear();
            for r in group.clone() {
                let a0 = acc_t.base + r * acc_t.ld + blocks;
                acc_row.extend_from_slice(&words[a0..a0 + cols]);
            }
            tmp_row.clear();
            tmp_row.resize(n, 0);
            let acc: &mut [f32] = bytemuck::cast_slice_mut(&mut acc_row[..n]);
            let tmp: &mut [f32] = bytemuck::cast_slice_mut(&mut tmp_row[..n]);
            for (xt, wt) in rest {
                for (acc, r) in acc.chunks_exact_mut(cols).zip(group.clone()) {
                    let x0 = xt.base + r * xt.ld + blocks;
                    let w = f32::from_bits(words[wt.base + r]);
                    let x: &[f32] = bytemuck::cast_slice(&words[x0..x0 + cols]);
                    for (a, &v) in acc.iter_mut().zip(x) {
                        *a += v * w;
                    }
                }
            }
            let (xt, wt) = last;
            for ((acc, tmp), r) in acc
                .chunks_exact_mut(cols)
                .zip(tmp.chunks_exact_mut(cols))
                .zip(group.clone())
            {
                let x0 = xt.base + r * xt.ld + blocks;
                let w = f32::from_bits(words[wt.base + r]);
                let x: &[f32] = bytemuck::cast_slice(&words[x0..x0 + cols]);
                for ((a, t), &v) in acc.iter_mut().zip(tmp.iter_mut()).zip(x) {
                    *t = v * w;
                    *a += *t;
                }
            }
            for (k, r) in group.enumerate() {
                let a0 = acc_t.base + r * acc_t.ld + blocks;
                let t0 = tmp_t.base + r * tmp_t.ld + blocks;
                words[a0..a0 + cols].copy_from_slice(&acc_row[k * cols..(k + 1) * cols]);
                words[t0..t0 + cols].copy_from_slice(&tmp_row[k * cols..(k + 1) * cols]);
            }
        }
        Ok(())
    }
    widest_vectors!(body(
        words: &mut [u32],
        taps: &[(TileRef, TileRef)],
        tiles: (TileRef, TileRef),
        scratch: (&mut Vec<u32>, &mut Vec<u32>),
        poll: &mut dyn FnMut() -> Result<(), JobFault>,
    ) -> Result<(), JobFault>)
}

/// The widest vectors this CPU has, for the elementwise engines: their
/// loops compiled for it compute the same bits (each element is one IEEE
/// operation, or the same sequence of them, whatever the vector width; Rust
/// never contracts a multiply and an add), only faster.
#[derive(Clone, Copy)]
enum VectorIsa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Base,
}

fn vector_isa() -> VectorIsa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return VectorIsa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return VectorIsa::Avx2;
        }
    }
    VectorIsa::Base
}

#[inline(always)]
fn binary_tile_body(
    op: BinaryOp,
    dtype: DType,
    bcast: Broadcast,
    a: (Src, &[u32]),
    b: (Src, &[u32]),
    out: &TileRef,
    words: &mut [u32],
) {
    if out.cols == 0 || out.rows == 0 {
        return;
    }
    #[inline(always)]
    fn each(
        bcast: Broadcast,
        (asrc, acopy): (Src, &[u32]),
        (bsrc, bcopy): (Src, &[u32]),
        out: &TileRef,
        words: &mut [u32],
        f: impl Fn(u32, u32) -> u32,
    ) {
        let cols = out.cols;
        let (below, ow, above, base) = split_out(words, out);
        let around = (below, above, base, ow.len());
        for r in 0..out.rows {
            let orow = &mut ow[r * out.ld..r * out.ld + cols];
            match bcast {
                Broadcast::None => match (asrc, bsrc) {
                    (Src::Out, Src::Out) => orow.iter_mut().for_each(|o| *o = f(*o, *o)),
                    (Src::Out, _) => {
                        let brow = src_row(bsrc, bcopy, around, r, cols);
                        for (o, &y) in orow.iter_mut().zip(brow) {
                            *o = f(*o, y);
                        }
                    }
                    (_, Src::Out) => {
                        let arow = src_row(asrc, acopy, around, r, cols);
                        for (o, &x) in orow.iter_mut().zip(arow) {
                            *o = f(x, *o);
                        }
                    }
                    _ => {
                        let arow = src_row(asrc, acopy, around, r, cols);
                        let brow = src_row(bsrc, bcopy, around, r, cols);
                        for ((o, &x), &y) in orow.iter_mut().zip(arow).zip(brow) {
                            *o = f(x, y);
                        }
                    }
                },
                Broadcast::Scalar | Broadcast::PerRow => {
                    let y = if bcast == Broadcast::Scalar {
                        bcopy[0]
                    } else {
                        bcopy[r]
                    };
                    match asrc {
                        Src::Out => orow.iter_mut().for_each(|o| *o = f(*o, y)),
                        _ => {
                            let arow = src_row(asrc, acopy, around, r, cols);
                            for (o, &x) in orow.iter_mut().zip(arow) {
                                *o = f(x, y);
                            }
                        }
                    }
                }
                Broadcast::PerCol => {
                    let bv = &bcopy[..cols];
                    match asrc {
                        Src::Out => {
                            for (o, &y) in orow.iter_mut().zip(bv) {
                                *o = f(*o, y);
                            }
                        }
                        _ => {
                            let arow = src_row(asrc, acopy, around, r, cols);
                            for ((o, &x), &y) in orow.iter_mut().zip(arow).zip(bv) {
                                *o = f(x, y);
                            }
                        }
                    }
                }
            }
        }
    }
    // Integer types share one arm of `binary`.
    let int = DType::I32;
    macro_rules! with_op {
        ($($op:ident),*) => {
            match (dtype, op) {
                $(
                    (DType::F32, BinaryOp::$op) => {
                        each(bcast, a, b, out, words, |x, y| binary(BinaryOp::$op, DType::F32, x, y))
                    }
                    (_, BinaryOp::$op) => {
                        each(bcast, a, b, out, words, |x, y| binary(BinaryOp::$op, int, x, y))
                    }
                )*
            }
        };
    }
    with_op!(Add, Sub, Mul, Div, Max, Min, Prelu, Eq, Ne, Lt, Le, Gt, Ge, And, Or, Xor);
}

/// `unary(op, dtype, x, lo, hi)` of every element of the tile `out` (in
/// `words`), `x` read from `src`; one loop per op, compiled for the widest
/// vectors the CPU has (see [`VectorIsa`]).
fn unary_tile(
    op: UnaryOp,
    dtype: DType,
    lo: u32,
    hi: u32,
    src: (Src, &[u32]),
    out: &TileRef,
    words: &mut [u32],
) {
    widest_vectors!(unary_tile_body(
        op: UnaryOp,
        dtype: DType,
        lo: u32,
        hi: u32,
        src: (Src, &[u32]),
        out: &TileRef,
        words: &mut [u32],
    ) -> ())
}

#[inline(always)]
fn unary_tile_body(
    op: UnaryOp,
    dtype: DType,
    lo: u32,
    hi: u32,
    (src, copy): (Src, &[u32]),
    out: &TileRef,
    words: &mut [u32],
) {
    if out.cols == 0 || out.rows == 0 {
        return;
    }
    #[inline(always)]
    fn each(src: Src, copy: &[u32], out: &TileRef, words: &mut [u32], f: impl Fn(u32) -> u32) {
        let cols = out.cols;
        let (below, ow, above, base) = split_out(words, out);
        if cols == 1 {
            // One-element rows (the moves that split a band into its
            // stride phases): one strided loop over the output's span
            // `ow`, the source read a stride apart likewise, rather than
            // a slice per row.
            let out_len = ow.len();
            let outs = ow.iter_mut().step_by(out.ld.max(1));
            match src {
                Src::Out => outs.for_each(|o| *o = f(*o)),
                Src::Copy(_) => outs.zip(copy).for_each(|(o, &x)| *o = f(x)),
                Src::Sram(b, ld) => {
                    // Wholly below or above the output (else a copy).
                    let from = if b < base {
                        &below[b..]
                    } else {
                        &above[b - base - out_len..]
                    };
                    let xs = from.iter().step_by(ld.max(1));
                    outs.zip(xs).for_each(|(o, &x)| *o = f(x));
                }
            }
            return;
        }
        let around = (below, above, base, ow.len());
        for r in 0..out.rows {
            let orow = &mut ow[r * out.ld..r * out.ld + cols];
            match src {
                Src::Out => orow.iter_mut().for_each(|o| *o = f(*o)),
                _ => {
                    for (o, &x) in orow.iter_mut().zip(src_row(src, copy, around, r, cols)) {
                        *o = f(x);
                    }
                }
            }
        }
    }
    macro_rules! with_op {
        ($($op:ident),*) => {
            match (dtype, op) {
                $(
                    (DType::I32, UnaryOp::$op) => {
                        each(src, copy, out, words, |x| unary(UnaryOp::$op, DType::I32, x, lo, hi))
                    }
                    (_, UnaryOp::$op) => {
                        each(src, copy, out, words, |x| unary(UnaryOp::$op, DType::F32, x, lo, hi))
                    }
                )*
            }
        };
    }
    with_op!(
        Relu,
        Clamp,
        Sigmoid,
        Tanh,
        Exp,
        Recip,
        Move,
        Sqrt,
        Rsqrt,
        Log,
        Erf,
        LeakyRelu,
        Elu,
        HardSigmoid,
        HardSwish,
        Gelu,
        GeluTanh
    );
}

/// A mask element: f32 1.0 where true, +0.0 where false.
#[inline(always)]
fn mask(b: bool) -> u32 {
    if b {
        1.0f32.to_bits()
    } else {
        0
    }
}

#[inline(always)]
fn binary(op: BinaryOp, dtype: DType, a: u32, b: u32) -> u32 {
    match dtype {
        DType::F32 => {
            let (x, y) = (f32::from_bits(a), f32::from_bits(b));
            let r = match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Max => fmax(x, y),
                BinaryOp::Min => fmin(x, y),
                BinaryOp::Prelu => {
                    if x < 0.0 {
                        x * y
                    } else {
                        x
                    }
                }
                // IEEE comparisons: false with a NaN, except ne.
                BinaryOp::Eq => return mask(x == y),
                BinaryOp::Ne => return mask(x != y),
                BinaryOp::Lt => return mask(x < y),
                BinaryOp::Le => return mask(x <= y),
                BinaryOp::Gt => return mask(x > y),
                BinaryOp::Ge => return mask(x >= y),
                BinaryOp::And => return mask(x != 0.0 && y != 0.0),
                BinaryOp::Or => return mask(x != 0.0 || y != 0.0),
                BinaryOp::Xor => return mask((x != 0.0) != (y != 0.0)),
            };
            r.to_bits()
        }
        _ => {
            let (x, y) = (a as i32, b as i32);
            let r = match op {
                BinaryOp::Add => x.wrapping_add(y),
                BinaryOp::Sub => x.wrapping_sub(y),
                BinaryOp::Mul => x.wrapping_mul(y),
                // Integer division by zero (and MIN / -1, which overflows)
                // yields 0 rather than a fault: the vector unit has no
                // exception path.
                BinaryOp::Div => x.checked_div(y).unwrap_or(0),
                BinaryOp::Max => x.max(y),
                BinaryOp::Min => x.min(y),
                // f32 only: the decoder refuses it for i32.
                BinaryOp::Prelu => x,
                // Masks are f32 for i32 operands too.
                BinaryOp::Eq => return mask(x == y),
                BinaryOp::Ne => return mask(x != y),
                BinaryOp::Lt => return mask(x < y),
                BinaryOp::Le => return mask(x <= y),
                BinaryOp::Gt => return mask(x > y),
                BinaryOp::Ge => return mask(x >= y),
                BinaryOp::And => return mask(x != 0 && y != 0),
                BinaryOp::Or => return mask(x != 0 || y != 0),
                BinaryOp::Xor => return mask((x != 0) != (y != 0)),
            };
            r as u32
        }
    }
}

#[inline(always)]
fn unary(op: UnaryOp, dtype: DType, x: u32, lo: u32, hi: u32) -> u32 {
    if dtype == DType::I32 {
        let v = x as i32;
        return match op {
            UnaryOp::Relu => v.max(0) as u32,
            UnaryOp::Clamp => v.max(lo as i32).min(hi as i32) as u32,
            _ => x,
        };
    }
    let v = f32::from_bits(x);
    let r = match op {
        UnaryOp::Relu => fmax(v, 0.0),
        UnaryOp::Clamp => fmin(fmax(v, f32::from_bits(lo)), f32::from_bits(hi)),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        UnaryOp::Tanh => v.tanh(),
        UnaryOp::Exp => v.exp(),
        UnaryOp::Recip => 1.0 / v,
        UnaryOp::Move => v,
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Rsqrt => 1.0 / v.sqrt(),
        // libm (a port of musl) rather than the host's C library, so the
        // results are the same on every host.
        UnaryOp::Log => libm::logf(v),
        UnaryOp::Erf => libm::erff(v),
        UnaryOp::LeakyRelu => {
            if v < 0.0 {
                f32::from_bits(lo) * v
            } else {
                v
            }
        }
        UnaryOp::Elu => {
            if v > 0.0 {
                v
            } else {
                f32::from_bits(lo) * libm::expm1f(v)
            }
        }
        UnaryOp::HardSigmoid => hard_sigmoid(v, f32::from_bits(lo), f32::from_bits(hi)),
        UnaryOp::HardSwish => {
            times_factor(v, hard_sigmoid(v, f32::from_bits(lo), f32::from_bits(hi)))
        }
        UnaryOp::Gelu => {
            let t = libm::erff(v * std::f32::consts::FRAC_1_SQRT_2);
            times_factor(v, 0.5 * (1.0 + t))
        }
        UnaryOp::GeluTanh => {
            // sqrt(2 / pi) rounded to f32.
            const C: f32 = 0.797_884_6;
            let inner = C * (v + 0.044_715 * (v * v * v));
            times_factor(v, 0.5 * (1.0 + inner.tanh()))
        }
    };
    r.to_bits()
}

/// `clamp(alpha * x + beta, 0, 1)`, each step rounded (no fused
/// multiply-add); NaN stays NaN (the spec's exception to clamp).
#[inline(always)]
fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    let y = alpha * x + beta;
    if y.is_nan() {
        y
    } else {
        fmin(fmax(y, 0.0), 1.0)
    }
}

/// `x * factor`, except that a zero factor gives a zero of `x`'s sign, also
/// for an infinite `x` (the limit, where IEEE would give NaN).
#[inline(always)]
fn times_factor(x: f32, factor: f32) -> f32 {
    if factor == 0.0 {
        0.0f32.copysign(x)
    } else {
        x * factor
    }
}

fn reduce(op: ReduceOp, dtype: DType, it: impl Iterator<Item = u32>) -> u32 {
    match dtype {
        DType::F32 => {
            let it = it.map(f32::from_bits);
            match op {
                ReduceOp::Sum => it.sum::<f32>().to_bits(),
                ReduceOp::Max => it.fold(f32::NEG_INFINITY, fmax).to_bits(),
            }
        }
        _ => {
            let it = it.map(|x| x as i32);
            match op {
                ReduceOp::Sum => it.fold(0i32, i32::wrapping_add) as u32,
                ReduceOp::Max => it.fold(i32::MIN, i32::max) as u32,
            }
        }
    }
}

/// The input and output planes of POOL (`esize` 4) or POOL_I8 (1).
fn pool_tiles(
    sram: &Sram,
    g: &PoolGeom,
    src: u32,
    dst: u32,
    esize: u32,
) -> Res<(TileRef, TileRef)> {
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || ph >= kh || pw >= kw {
        return Err(Fault::BadOperand);
    }
    // The output size must be what the geometry gives: no silent cropping.
    let expect = |inp: u32, k: u8, s: u8, p: u8| -> Option<u32> {
        let padded = inp as u64 + 2 * p as u64;
        (padded >= k as u64).then(|| ((padded - k as u64) / s as u64 + 1) as u32)
    };
    if expect(g.in_h, kh, sh, ph) != Some(g.out_h) || expect(g.in_w, kw, sw, pw) != Some(g.out_w) {
        return Err(Fault::BadOperand);
    }
    let rows_in = g.channels.checked_mul(g.in_h).ok_or(Fault::BadOperand)?;
    let rows_out = g.channels.checked_mul(g.out_h).ok_or(Fault::BadOperand)?;
    let ins = TileRef::new(
        sram,
        Tile {
            addr: src,
            ld: g.in_w,
        },
        rows_in,
        g.in_w,
        esize,
    )?;
    let outs = TileRef::new(
        sram,
        Tile {
            addr: dst,
            ld: g.out_w,
        },
        rows_out,
        g.out_w,
        esize,
    )?;
    Ok((ins, outs))
}

/// The window positions POOL visits between two polls: one largest
/// window (npu-hw.rst, Reset: the work between two reset checks).
const POOL_POLL_WORK: usize = 255 * 255;

/// Planes global average pooling sums side by side.
const AVG_LANES: usize = 8;

/// The window of output position `o` along one axis clipped to the input
/// (positions outside add nothing): `[lo, hi)`, empty when none is in.
fn clip_window(o: usize, stride: u8, pad: u8, k: u8, n: usize) -> (usize, usize) {
    let lo = (o * stride as usize).saturating_sub(pad as usize).min(n);
    let hi = (o * stride as usize + k as usize)
        .saturating_sub(pad as usize)
        .min(n);
    (lo, hi.max(lo))
}

/// The sums of the window (rows `ky0..ky1`, columns `kx0..kx1`) of each
/// of AVG_LANES planes `iw` wide, each in row-major order from +0. Not
/// inlined: in the large caller the sums were kept in memory.
#[inline(never)]
fn sum_planes(
    planes: &[&[u32]; AVG_LANES],
    iw: usize,
    (ky0, ky1): (usize, usize),
    (kx0, kx1): (usize, usize),
) -> [f32; AVG_LANES] {
    let mut sums = [0.0f32; AVG_LANES];
    for y in ky0..ky1 {
        for x in y * iw + kx0..y * iw + kx1 {
            for (sum, plane) in sums.iter_mut().zip(planes) {
                *sum += f32::from_bits(plane[x]);
            }
        }
    }
    sums
}

/// Windows of up to 255 x 255: `poll` runs before each run of output
/// elements whose windows hold at most [`POOL_POLL_WORK`] positions (before
/// each element for the largest windows). `input` holds the planes (f32
/// bits, packed); the outputs go to `out`.
fn pool(
    op: PoolOp,
    g: &PoolGeom,
    input: &[u32],
    out: &mut Vec<u32>,
    poll: &mut dyn FnMut() -> Result<(), JobFault>,
) -> Result<(), JobFault> {
    let (ih, iw, oh, ow) = (
        g.in_h as usize,
        g.in_w as usize,
        g.out_h as usize,
        g.out_w as usize,
    );
    // Bounded by the checked output tile (at most the SRAM's words).
    let cols: Vec<(usize, usize)> = (0..ow)
        .map(|ox| clip_window(ox, g.stride[1], g.pad[1], g.kernel[1], iw))
        .collect();
    let per_poll = (POOL_POLL_WORK / (g.kernel[0] as usize * g.kernel[1] as usize)).max(1);
    let mut until_poll = 0;
    out.clear();
    out.reserve(g.channels as usize * oh * ow);
    let n = ih * iw;
    // The output columns whose windows lie inside the input row: their
    // row of outputs is computed window row by window row and tap by tap
    // across the whole run (no per-element loop set-up). Each element still
    // takes its window's values in row-major order (so average's sums round
    // as the spec says); max is order-free anyway. Used when a row's
    // windows are no more work than a poll allows.
    let (sw, pw, kw) = (
        g.stride[1] as usize,
        g.pad[1] as usize,
        g.kernel[1] as usize,
    );
    // (A run shorter than its windows are wide, global pooling's one
    // output, is faster element by element.)
    let inner = if ow <= per_poll && iw + pw >= kw {
        let lo = pw.div_ceil(sw).min(ow);
        let hi = ((iw + pw - kw) / sw + 1).min(ow);
        if hi >= lo + kw.max(8) {
            lo..hi
        } else {
            0..0
        }
    } else {
        0..0
    };
    // Global average pooling (one output per plane; the windows have no
    // inner run): planes AVG_LANES at a time, each lane its own plane's sum
    // in pool_window's order, so that the additions of different planes
    // overlap instead of each waiting for the one before.
    let mut first = 0;
    if matches!(op, PoolOp::Avg) && oh * ow == 1 && per_poll >= AVG_LANES {
        let (ky0, ky1) = clip_window(0, g.stride[0], g.pad[0], g.kernel[0], ih);
        let (kx0, kx1) = cols[0];
        let count = ((ky1 - ky0) * (kx1 - kx0)) as u32;
        while first + AVG_LANES <= g.channels as usize {
            if until_poll < AVG_LANES {
                poll()?;
                until_poll = per_poll;
            }
            until_poll -= AVG_LANES;
            let planes: [&[u32]; AVG_LANES] =
                std::array::from_fn(|l| &input[(first + l) * n..(first + l + 1) * n]);
            let sums = sum_planes(&planes, iw, (ky0, ky1), (kx0, kx1));
            out.extend(sums.map(|sum| {
                if count > 0 {
                    (sum / count as f32).to_bits()
                } else {
                    0f32.to_bits()
                }
            }));
            first += AVG_LANES;
        }
    }
    // A row's window-row maxima (bounded by the checked input tile).
    let mut keys: Vec<u32> = Vec::new();
    for c in first..g.channels as usize {
        let plane = &input[c * n..(c + 1) * n];
        for oy in 0..oh {
            let (ky0, ky1) = clip_window(oy, g.stride[0], g.pad[0], g.kernel[0], ih);
            if !inner.is_empty() {
                if until_poll < ow {
                    poll()?;
                    until_poll = per_poll;
                }
                until_poll -= ow;
                let row0 = out.len();
                for &(kx0, kx1) in &cols[..inner.start] {
                    out.push(pool_window(op, plane, iw, (ky0, ky1), (kx0, kx1)));
                }
                let run = out.len()..out.len() + inner.len();
                let x0 = inner.start * sw - pw;
                match op {
                    PoolOp::Max => {
                        // Max is order-free: the window rows' maximum over
                        // the whole row first (contiguous, vectorised),
                        // then each window's columns of it.
                        keys.clear();
                        keys.resize(iw, max_key(f32::NEG_INFINITY));
                        for y in ky0..ky1 {
                            for (k, &v) in keys.iter_mut().zip(&plane[y * iw..(y + 1) * iw]) {
                                *k = (*k).max(max_key(f32::from_bits(v)));
                            }
                        }
                        out.resize(run.end, 0);
                        let acc = &mut out[run.clone()];
                        let init = max_key(f32::NEG_INFINITY);
                        for (i, o) in acc.iter_mut().enumerate() {
                            let w = &keys[x0 + i * sw..x0 + i * sw + kw];
                            *o = from_max_key(w.iter().fold(init, |a, &k| a.max(k))).to_bits();
                        }
                    }
                    PoolOp::Avg => {
                        out.resize(run.end, 0f32.to_bits());
                        let acc: &mut [f32] = bytemuck::cast_slice_mut(&mut out[run.clone()]);
                        for y in ky0..ky1 {
                            let row = &plane[y * iw..(y + 1) * iw];
                            for kx in 0..kw {
                                let taps = row[x0 + kx..].iter().step_by(sw);
                                for (sum, &v) in acc.iter_mut().zip(taps) {
                                    *sum += f32::from_bits(v);
                                }
                            }
                        }
                        let count = ((ky1 - ky0) * kw) as u32;
                        for sum in acc.iter_mut() {
                            *sum = if count > 0 { *sum / count as f32 } else { 0.0 };
                        }
                    }
                }
                for &(kx0, kx1) in &cols[inner.end..] {
                    out.push(pool_window(op, plane, iw, (ky0, ky1), (kx0, kx1)));
                }
                debug_assert_eq!(out.len() - row0, ow);
                continue;
            }
            for &(kx0, kx1) in &cols {
                if until_poll == 0 {
                    poll()?;
                    until_poll = per_poll;
                }
                until_poll -= 1;
                out.push(pool_window(op, plane, iw, (ky0, ky1), (kx0, kx1)));
            }
        }
    }
    Ok(())
}

/// POOL_I8's operation and requantization (npu-hw.rst, POOL_I8).
struct PoolI8Params {
    op: PoolI8Op,
    requant: bool,
    zp_in: i8,
    zp_out: i8,
    scale_in: f32,
    scale_out: f32,
}

/// POOL_I8 over `input`'s packed i8 planes, element by element (each
/// window's positions in row-major order), `poll` before each run of
/// outputs whose windows hold at most [`POOL_POLL_WORK`] positions.
fn pool_i8(
    q: &PoolI8Params,
    g: &PoolGeom,
    input: &[i8],
    out: &mut Vec<i8>,
    poll: &mut dyn FnMut() -> Result<(), JobFault>,
) -> Result<(), JobFault> {
    let (ih, iw, oh, ow) = (
        g.in_h as usize,
        g.in_w as usize,
        g.out_h as usize,
        g.out_w as usize,
    );
    let per_poll = (POOL_POLL_WORK / (g.kernel[0] as usize * g.kernel[1] as usize)).max(1);
    let mut until_poll = 0;
    // rhe then saturate to i8 (CONVERT f32->i32, then a clamp).
    let sat = |x: i64| x.clamp(-128, 127) as i8;
    let rhe = |x: f32| x.round_ties_even() as i32 as i64;
    let (zi, zo) = (q.zp_in as i32, q.zp_out as i64);
    out.clear();
    out.reserve(g.channels as usize * oh * ow);
    for c in 0..g.channels as usize {
        let plane = &input[c * ih * iw..(c + 1) * ih * iw];
        for oy in 0..oh {
            let (y0, y1) = clip_window(oy, g.stride[0], g.pad[0], g.kernel[0], ih);
            for ox in 0..ow {
                if until_poll == 0 {
                    poll()?;
                    until_poll = per_poll;
                }
                until_poll -= 1;
                let (x0, x1) = clip_window(ox, g.stride[1], g.pad[1], g.kernel[1], iw);
                let window = (y0..y1).flat_map(|y| plane[y * iw + x0..y * iw + x1].iter());
                let n = ((y1 - y0) * (x1 - x0)) as f32;
                out.push(match q.op {
                    PoolI8Op::Max => {
                        let m = window.copied().max().unwrap_or(i8::MIN);
                        if q.requant {
                            let real = (m as i32 - zi) as f32 * q.scale_in;
                            sat(rhe(real / q.scale_out) + zo)
                        } else {
                            m
                        }
                    }
                    PoolI8Op::Avg => {
                        let mut y = 0.0f32;
                        for &v in window {
                            y += (v as i32 - zi) as f32 * q.scale_in;
                        }
                        sat(rhe(y / n / q.scale_out + q.zp_out as f32))
                    }
                    PoolI8Op::AvgInt => {
                        let acc: i32 = window.map(|&v| v as i32 - zi).sum();
                        let scale = q.scale_in / (q.scale_out * n);
                        sat(rhe(acc as f32 * scale) + zo)
                    }
                });
            }
        }
    }
    Ok(())
}

/// One POOL output: the window `[ky0, ky1) x [kx0, kx1)` of a plane `iw`
/// wide, row by row, each in order, as the spec's sums go.
#[inline(always)]
fn pool_window(
    op: PoolOp,
    plane: &[u32],
    iw: usize,
    (ky0, ky1): (usize, usize),
    (kx0, kx1): (usize, usize),
) -> u32 {
    match op {
        // fmax's fold without its branches (the accumulator is never NaN:
        // it starts at -inf and fmax drops NaNs).
        PoolOp::Max => {
            let mut k = max_key(f32::NEG_INFINITY);
            for y in ky0..ky1 {
                for &v in &plane[y * iw + kx0..y * iw + kx1] {
                    k = k.max(max_key(f32::from_bits(v)));
                }
            }
            from_max_key(k).to_bits()
        }
        PoolOp::Avg => {
            let count = ((ky1 - ky0) * (kx1 - kx0)) as u32;
            let mut sum = 0.0f32;
            for y in ky0..ky1 {
                for &v in &plane[y * iw + kx0..y * iw + kx1] {
                    sum += f32::from_bits(v);
                }
            }
            if count > 0 {
                (sum / count as f32).to_bits()
            } else {
                0f32.to_bits()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free max of pooling is maximumNumber (npu-hw.rst): the
    /// hand-written cases, and fmax on every pair of special values.
    #[test]
    fn max_keys_order_as_maximum_number() {
        let max = |a: f32, b: f32| from_max_key(max_key(a).max(max_key(b)));
        assert_eq!(max(-0.0, 0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(max(0.0, -0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(max(-0.0, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(max(f32::NEG_INFINITY, f32::NAN), f32::NEG_INFINITY);
        assert_eq!(max(-3.0, f32::NAN), -3.0);
        assert_eq!(max(-3.0, -2.5), -2.5);
        assert_eq!(max(1.0, f32::INFINITY), f32::INFINITY);
        let vals = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x8000_0001),
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            3.5,
            -1e-30,
        ];
        for &a in vals.iter().filter(|a| !a.is_nan()) {
            for &b in &vals {
                assert_eq!(max(a, b).to_bits(), fmax(a, b).to_bits(), "{a:?} {b:?}");
            }
        }
    }
}
