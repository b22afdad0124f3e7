//! The instruction stream being built, its VA relocations, and the SRAM
//! slot allocator of the op being lowered.

use super::plan::Loc;
use super::{CompileOptions, DeviceParams, LowerError};
use crate::ir::ValueId;
use crate::reference::TensorData;
use npu_isa::{Insn, Strided};
use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    Input,
    Output,
    /// Intermediates; the caller allocates it, contents are don't-care.
    Scratch,
    /// The graph's constants in the layouts the program reads them in
    /// ([`Program::constants`]); read-only, the same for every run.
    Constant,
}

/// One NPU buffer the program addresses; its VA is supplied at bind time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferDesc {
    pub name: String,
    pub kind: BufferKind,
    pub size: u64,
}

/// Everything a [`Program`] is made of ([`Program::to_parts`]).
#[derive(Clone, Debug)]
pub struct ProgramParts {
    pub insns: Vec<Insn>,
    /// (instruction index, buffer index), in instruction order.
    pub relocs: Vec<(usize, usize)>,
    pub buffers: Vec<BufferDesc>,
    /// (graph input or output name, buffer index).
    pub io: Vec<(String, usize)>,
    pub constants: Vec<u8>,
    pub jobs: Vec<std::ops::Range<usize>>,
}

/// A compiled kernel: instructions whose DMA addresses are offsets into
/// buffers, made absolute by [`Program::bind`].
#[derive(Clone, Debug)]
pub struct Program {
    /// Every job's instructions, each job ending with END.
    insns: Vec<Insn>,
    /// (instruction index, buffer index) of every DMA whose `va` is relative.
    relocs: Vec<(usize, usize)>,
    buffers: Vec<BufferDesc>,
    io: Vec<(String, usize)>,
    /// Contents of the [`BufferKind::Constant`] buffer.
    constants: Vec<u8>,
    /// Instruction ranges of the jobs, in submission order.
    jobs: Vec<std::ops::Range<usize>>,
}

impl Program {
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }
    pub fn buffers(&self) -> &[BufferDesc] {
        &self.buffers
    }
    /// Buffer index of the graph input or output called `name`.
    pub fn buffer_of(&self, name: &str) -> Option<usize> {
        self.io.iter().find(|(n, _)| n == name).map(|(_, b)| *b)
    }
    /// Size of the command buffers in bytes (all jobs).
    pub fn cmdbuf_size(&self) -> usize {
        self.insns.len() * npu_isa::INSN_SIZE
    }

    /// The jobs the program runs as, in order: ranges of [`Program::insns`],
    /// each ending with END and within the per-job command-buffer limit
    /// ([`super::CompileOptions::max_job_bytes`]). They must run one after
    /// the other, on the same buffers.
    pub fn jobs(&self) -> &[std::ops::Range<usize>] {
        &self.jobs
    }

    /// Byte sizes of the jobs' command buffers, in order.
    pub fn job_sizes(&self) -> Vec<usize> {
        self.jobs
            .iter()
            .map(|r| r.len() * npu_isa::INSN_SIZE)
            .collect()
    }

    /// The program's parts, for writing it to a file
    /// ([`Program::from_parts`] reads them back).
    pub fn to_parts(&self) -> ProgramParts {
        ProgramParts {
            insns: self.insns.clone(),
            relocs: self.relocs.clone(),
            buffers: self.buffers.clone(),
            io: self.io.clone(),
            constants: self.constants.clone(),
            jobs: self.jobs.clone(),
        }
    }

    /// A program from parts read from a file, which may be anything: every
    /// index, range and relocation is checked, so that binding and running
    /// it never panics (a wrong program may still fault on the device).
    pub fn from_parts(p: ProgramParts) -> Result<Program, String> {
        let n = p.insns.len();
        if p.buffers.iter().any(|b| b.size == 0) {
            return Err("a buffer of 0 bytes".into());
        }
        let mut last = None;
        for &(i, b) in &p.relocs {
            if last.is_some_and(|l| l >= i) {
                return Err("relocations out of order".into());
            }
            last = Some(i);
            let size = p
                .buffers
                .get(b)
                .ok_or_else(|| format!("a relocation names buffer {b} of {}", p.buffers.len()))?
                .size;
            match p.insns.get(i) {
                Some(Insn::DmaLoad { va, .. } | Insn::DmaStore { va, .. }) if *va < size => {}
                _ => {
                    return Err(format!(
                        "relocation of instruction {i}: not a DMA inside its buffer"
                    ))
                }
            }
        }
        if let Some((name, b)) = p.io.iter().find(|(_, b)| *b >= p.buffers.len()) {
            return Err(format!("`{name}` names buffer {b} of {}", p.buffers.len()));
        }
        let mut at = 0;
        for r in &p.jobs {
            if r.start != at || r.end <= r.start || r.end > n || p.insns[r.end - 1] != Insn::End {
                return Err(format!(
                    "job {r:?} does not continue at {at} and end with END"
                ));
            }
            at = r.end;
        }
        if at != n || p.jobs.is_empty() {
            return Err("the jobs do not cover the instructions".into());
        }
        if !p.constants.is_empty() {
            match p.buffers.iter().find(|b| b.kind == BufferKind::Constant) {
                Some(b) if p.constants.len() as u64 <= b.size => {}
                _ => return Err("constants without a constant buffer that holds them".into()),
            }
        }
        Ok(Program {
            insns: p.insns,
            relocs: p.relocs,
            buffers: p.buffers,
            io: p.io,
            constants: p.constants,
            jobs: p.jobs,
        })
    }

    /// What the [`BufferKind::Constant`] buffer holds (empty without one).
    pub fn constants(&self) -> &[u8] {
        &self.constants
    }

    /// Encode a single-job program for buffers placed at `vas`; a program
    /// of several jobs is an error (use [`Program::bind_jobs`]).
    pub fn bind(&self, vas: &[u64]) -> Result<Vec<u8>, LowerError> {
        if self.jobs.len() > 1 {
            return Err(LowerError::TooLarge(format!(
                "the program runs as {} jobs; bind it with bind_jobs and submit them in order",
                self.jobs.len()
            )));
        }
        self.bind_jobs(vas)
    }

    /// Encode every job's command buffer, concatenated in order (job `i`
    /// is bytes `[64 * jobs()[i].start, 64 * jobs()[i].end)`), for buffers
    /// placed at `vas` (one NPU virtual address per entry of
    /// [`Program::buffers`]).
    pub fn bind_jobs(&self, vas: &[u64]) -> Result<Vec<u8>, LowerError> {
        if vas.len() != self.buffers.len() {
            return Err(LowerError::BindCount {
                want: self.buffers.len(),
                got: vas.len(),
            });
        }
        for (b, va) in self.buffers.iter().zip(vas) {
            if va % 64 != 0 || va.checked_add(b.size).is_none() {
                return Err(LowerError::BindAddress {
                    name: b.name.clone(),
                    va: *va,
                });
            }
        }
        let mut out = Vec::with_capacity(self.cmdbuf_size());
        let mut relocs = self.relocs.iter().peekable();
        for (i, insn) in self.insns.iter().enumerate() {
            let mut insn = *insn;
            if let Some(&(_, buf)) = relocs.next_if(|(ri, _)| *ri == i) {
                if let Insn::DmaLoad { va, .. }
                | Insn::DmaStore { va, .. }
                | Insn::Gather { va, .. } = &mut insn
                {
                    *va += vas[buf];
                }
            }
            out.extend_from_slice(&insn.encode());
        }
        Ok(out)
    }

    /// A readable listing (buffer-relative addresses, as `bufN+offset`).
    pub fn disassemble(&self) -> String {
        let mut s = String::new();
        for (i, b) in self.buffers.iter().enumerate() {
            let _ = writeln!(s, "; buf{i} {:?} `{}` {} bytes", b.kind, b.name, b.size);
        }
        let mut relocs = self.relocs.iter().peekable();
        for (i, insn) in self.insns.iter().enumerate() {
            let buf = relocs.next_if(|(ri, _)| *ri == i).map(|r| r.1);
            let _ = match buf {
                Some(b) => writeln!(
                    s,
                    "{:5}: {insn}    ; va relative to buf{b}",
                    i * npu_isa::INSN_SIZE
                ),
                None => writeln!(s, "{:5}: {insn}", i * npu_isa::INSN_SIZE),
            };
        }
        s
    }
}

pub struct Emitter {
    pub params: DeviceParams,
    pub opts: CompileOptions,
    insns: Vec<Insn>,
    relocs: Vec<(usize, usize)>,
    buffers: Vec<BufferDesc>,
    sram_top: u32,
    /// Packed constants, and where each constant value was packed as is.
    consts: Vec<u8>,
    const_locs: HashMap<ValueId, Loc>,
    /// (first instruction, name) of every step: where jobs may split.
    steps: Vec<(usize, String)>,
}

impl Emitter {
    pub fn new(params: DeviceParams, opts: CompileOptions, buffers: Vec<BufferDesc>) -> Self {
        Emitter {
            params,
            opts,
            insns: Vec::new(),
            relocs: Vec::new(),
            buffers,
            sram_top: 0,
            consts: Vec::new(),
            const_locs: HashMap::new(),
            steps: Vec::new(),
        }
    }

    /// The buffer index of the constants (after every planned buffer).
    fn const_buffer(&self) -> usize {
        self.buffers.len()
    }

    /// Place `len` bytes, written by `fill`, in the constant buffer
    /// (64-byte aligned), packed in place.
    pub fn constant_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Loc {
        let offset = self.consts.len().next_multiple_of(64);
        self.consts.resize(offset + len, 0);
        fill(&mut self.consts[offset..]);
        Loc {
            buffer: self.const_buffer(),
            offset: offset as u64,
        }
    }

    /// Room for `bytes` more of constants (one allocation, not a series).
    pub fn reserve_constants(&mut self, bytes: usize) {
        self.consts.reserve(bytes);
    }

    /// Place `bytes` in the constant buffer (64-byte aligned).
    pub fn constant(&mut self, bytes: &[u8]) -> Loc {
        let offset = self.consts.len().next_multiple_of(64);
        self.consts.resize(offset, 0);
        self.consts.extend_from_slice(bytes);
        Loc {
            buffer: self.const_buffer(),
            offset: offset as u64,
        }
    }

    /// Where constant `v` lies in its graph layout (packed on first use).
    pub fn constant_value(&mut self, v: ValueId, data: &TensorData) -> Loc {
        if let Some(l) = self.const_locs.get(&v) {
            return *l;
        }
        let l = self.constant(&data.to_bytes());
        self.const_locs.insert(v, l);
        l
    }

    /// The next instructions lower the step called `name`; a job may end
    /// before them.
    pub fn begin_step(&mut self, name: &str) {
        self.steps.push((self.insns.len(), name.to_string()));
    }

    /// Split the stream into jobs of at most `opts.max_job_bytes` (END
    /// included), at step boundaries: steps share no SRAM state, so a job
    /// may end between any two.
    pub fn finish(mut self, io: Vec<(String, usize)>) -> Result<Program, LowerError> {
        let insn = npu_isa::INSN_SIZE;
        let max = (self.opts.max_job_bytes as usize / insn).saturating_sub(1);
        if max == 0 {
            return Err(LowerError::TooLarge(format!(
                "a job limit of {} bytes leaves no room for an instruction",
                self.opts.max_job_bytes
            )));
        }
        let total = self.insns.len();
        let mut cuts: Vec<usize> = self.steps.iter().map(|s| s.0).filter(|&c| c > 0).collect();
        cuts.push(total);
        cuts.dedup();
        let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut prev) = (0, 0);
        for &c in &cuts {
            if c - start > max && prev > start {
                spans.push(start..prev);
                start = prev;
            }
            if c - start > max {
                let name = self
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.0 <= start)
                    .map(|s| s.1.clone())
                    .unwrap_or_default();
                return Err(LowerError::TooLarge(format!(
                    "`{name}` lowers to {} bytes of commands, above the {}-byte limit of one job",
                    (c - start + 1) * insn,
                    self.opts.max_job_bytes
                )));
            }
            prev = c;
        }
        if total > start || spans.is_empty() {
            spans.push(start..total);
        }
        // Re-emit with an END closing each job; relocations move with their
        // instructions.
        let mut insns = Vec::with_capacity(total + spans.len());
        let mut relocs = Vec::with_capacity(self.relocs.len());
        let mut jobs = Vec::with_capacity(spans.len());
        let mut r = self.relocs.iter().peekable();
        for span in spans {
            let first = insns.len();
            for i in span {
                while let Some(&(_, b)) = r.next_if(|(ri, _)| *ri == i) {
                    relocs.push((insns.len(), b));
                }
                insns.push(self.insns[i]);
            }
            insns.push(Insn::End);
            jobs.push(first..insns.len());
        }
        if !self.consts.is_empty() {
            let size = self.consts.len() as u64;
            self.buffers.push(BufferDesc {
                name: "constants".into(),
                kind: BufferKind::Constant,
                size,
            });
        }
        // Every job lists all buffers and its command buffer; the driver
        // takes at most DRM_ONPU_MAX_JOB_BOS.
        let max_bos = npu_uapi::DRM_ONPU_MAX_JOB_BOS as usize;
        if self.buffers.len() + 1 > max_bos {
            return Err(LowerError::TooLarge(format!(
                "the program uses {} buffers (inputs, outputs, scratch, constants) and a command buffer; a job may use at most {max_bos}: make weights constants, not inputs",
                self.buffers.len()
            )));
        }
        Ok(Program {
            insns,
            relocs,
            buffers: self.buffers,
            io,
            constants: self.consts,
            jobs,
        })
    }

    /// Instructions emitted so far.
    pub fn emitted(&self) -> usize {
        self.insns.len()
    }

    pub fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }

    /// Number of SRAM slots per streamed operand.
    pub fn nbuf(&self) -> u32 {
        if self.opts.double_buffer {
            2
        } else {
            1
        }
    }

    /// Start allocating SRAM for a new op (ops do not share SRAM state).
    pub fn sram_reset(&mut self) {
        self.sram_top = 0;
    }

    /// `n` slots of `bytes` each, 64-byte aligned; returns the first.
    pub fn sram_alloc(&mut self, bytes: u64, n: u32) -> Result<Slots, ()> {
        let stride = bytes.max(4).next_multiple_of(64);
        let end = self.sram_top as u64 + stride * n as u64;
        if end > self.params.sram_size as u64 {
            return Err(());
        }
        let s = Slots {
            base: self.sram_top,
            stride: stride as u32,
        };
        self.sram_top = end as u32;
        Ok(s)
    }

    /// NPU memory -> SRAM; `off` is relative to `loc`.
    pub fn load(&mut self, loc: Loc, off: u64, sram: u32, mem: Strided, sram_layout: Strided) {
        let (mem, sram_layout) = coalesce(mem, sram_layout);
        self.relocs.push((self.insns.len(), loc.buffer));
        self.insns.push(Insn::DmaLoad {
            va: loc.offset + off,
            sram,
            mem,
            sram_layout,
        });
    }

    pub fn store(&mut self, loc: Loc, off: u64, sram: u32, mem: Strided, sram_layout: Strided) {
        let (mem, sram_layout) = coalesce(mem, sram_layout);
        self.relocs.push((self.insns.len(), loc.buffer));
        self.insns.push(Insn::DmaStore {
            va: loc.offset + off,
            sram,
            mem,
            sram_layout,
        });
    }

    /// Table rows picked by the SRAM index vector at `indices` -> SRAM
    /// (GATHER); `table` is the table's place, its rows `row_bytes` long and
    /// packed. Negative indices count from the end (ONNX Gather).
    pub fn gather(
        &mut self,
        table: Loc,
        (rows, row_bytes): (u32, u32),
        indices: u32,
        count: u32,
        sram: u32,
    ) {
        self.relocs.push((self.insns.len(), table.buffer));
        self.insns.push(Insn::Gather {
            wrap_negative: true,
            va: table.offset,
            sram,
            row_bytes,
            count,
            table_rows: rows,
            table_stride: row_bytes,
            indices,
            sram_stride: row_bytes,
        });
    }

    /// Run `n` steps as a software pipeline: with double buffering the loads
    /// of step s+1 are issued before the compute and store of step s, into
    /// the other slot, so the DMA engine works ahead of the compute engine.
    pub fn pipeline<L, B>(&mut self, n: usize, mut load: L, mut body: B) -> Result<(), LowerError>
    where
        L: FnMut(&mut Emitter, usize, u32) -> Result<(), LowerError>,
        B: FnMut(&mut Emitter, usize, u32) -> Result<(), LowerError>,
    {
        if self.opts.double_buffer {
            if n > 0 {
                load(self, 0, 0)?;
            }
            for s in 0..n {
                if s + 1 < n {
                    load(self, s + 1, ((s + 1) % 2) as u32)?;
                }
                body(self, s, (s % 2) as u32)?;
            }
        } else {
            for s in 0..n {
                load(self, s, 0)?;
                body(self, s, 0)?;
            }
        }
        Ok(())
    }
}

/// A group of equally sized SRAM slots.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub base: u32,
    pub stride: u32,
}

impl Slots {
    pub fn at(&self, i: u32) -> u32 {
        self.base + self.stride * i
    }
}

/// The same transfer in fewer, longer rows where both sides are
/// contiguous: rows that follow each other on both sides become one row,
/// and so do planes. The same bytes go to the same places; the device
/// charges a DMA at least a cycle per row (npu-hw.rst, "Cost model"), so
/// short contiguous rows (int8 planes of 7 to 28 bytes a row) cost more
/// than their bytes.
fn coalesce(a: Strided, b: Strided) -> (Strided, Strided) {
    let (mut a, mut b) = (a, b);
    let [row, rows, planes] = a.shape;
    if a.shape != b.shape {
        return (a, b);
    }
    if rows > 1 && a.stride[0] == row && b.stride[0] == row {
        if let Some(long) = row.checked_mul(rows) {
            for s in [&mut a, &mut b] {
                s.shape = [long, 1, planes];
                s.stride[0] = long;
            }
        }
    }
    let [row, rows, planes] = a.shape;
    if rows == 1 && planes > 1 && a.stride[1] == row && b.stride[1] == row {
        if let Some(long) = row.checked_mul(planes) {
            for s in [&mut a, &mut b] {
                *s = Strided::contiguous(long);
            }
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_rows_and_planes_coalesce_and_others_do_not() {
        let s = |shape, stride| Strided { shape, stride };
        // 14-byte rows, packed on both sides: one row of 14 * 14 * 3.
        let (a, b) = coalesce(s([14, 14, 3], [14, 196]), s([14, 14, 3], [14, 196]));
        assert_eq!((a, b), (Strided::contiguous(588), Strided::contiguous(588)));
        // Packed rows, planes apart in SRAM: a row per plane.
        let (a, b) = coalesce(s([14, 14, 3], [14, 196]), s([14, 14, 3], [14, 256]));
        assert_eq!(a, s([196, 1, 3], [196, 196]));
        assert_eq!(b, s([196, 1, 3], [196, 256]));
        // A row pitch on one side, or a broadcast: unchanged.
        for (x, y) in [
            (s([14, 14, 3], [14, 196]), s([14, 14, 3], [16, 224])),
            (s([14, 14, 1], [0, 0]), s([14, 14, 1], [14, 196])),
        ] {
            assert_eq!(coalesce(x, y), (x, y));
        }
    }
}
