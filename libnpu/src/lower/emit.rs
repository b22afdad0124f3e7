//! The instruction stream being built, its VA relocations, and the SRAM
//! slot allocator of the op being lowered.

use super::plan::Loc;
use super::{CompileOptions, DeviceParams, LowerError};
use npu_isa::{Insn, Strided};
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    Input,
    Output,
    /// Intermediates; the caller allocates it, contents are don't-care.
    Scratch,
}

/// One NPU buffer the program addresses; its VA is supplied at bind time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferDesc {
    pub name: String,
    pub kind: BufferKind,
    pub size: u64,
}

/// A compiled kernel: instructions whose DMA addresses are offsets into
/// buffers, made absolute by [`Program::bind`].
#[derive(Clone, Debug)]
pub struct Program {
    insns: Vec<Insn>,
    /// (instruction index, buffer index) of every DMA whose `va` is relative.
    relocs: Vec<(usize, usize)>,
    buffers: Vec<BufferDesc>,
    io: Vec<(String, usize)>,
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
    /// Size of the command buffer in bytes.
    pub fn cmdbuf_size(&self) -> usize {
        self.insns.len() * npu_isa::INSN_SIZE
    }

    /// Encode the command buffer for buffers placed at `vas` (one NPU
    /// virtual address per entry of [`Program::buffers`]).
    pub fn bind(&self, vas: &[u64]) -> Result<Vec<u8>, LowerError> {
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
                if let Insn::DmaLoad { va, .. } | Insn::DmaStore { va, .. } = &mut insn {
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
        }
    }

    pub fn finish(mut self, io: Vec<(String, usize)>) -> Program {
        self.insns.push(Insn::End);
        Program {
            insns: self.insns,
            relocs: self.relocs,
            buffers: self.buffers,
            io,
        }
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
        self.relocs.push((self.insns.len(), loc.buffer));
        self.insns.push(Insn::DmaLoad {
            va: loc.offset + off,
            sram,
            mem,
            sram_layout,
        });
    }

    pub fn store(&mut self, loc: Loc, off: u64, sram: u32, mem: Strided, sram_layout: Strided) {
        self.relocs.push((self.insns.len(), loc.buffer));
        self.insns.push(Insn::DmaStore {
            va: loc.offset + off,
            sram,
            mem,
            sram_layout,
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
