//! Target `cmdbuf`: arbitrary bytes as a job's command buffer, run by the
//! device model's executor (the command processor's job loop) against a
//! small address space with every kind of mapping a fault can come from.
//!
//! The executor is driven directly rather than through `Bench`'s rings and
//! CP thread: one job per input, no thread hand-off, so it is deterministic
//! and fast enough for libFuzzer. Input: byte 0 selects the set-up (see
//! `Setup`), byte 1 is its parameter, the rest is the command buffer.

use crate::budget::{Budget, MemoryWatch};
use crate::Input;
use npu_device::cost::CostModel;
use npu_device::exec::Executor;
use npu_device::mem::{bus_read, bus_write, HostMemory};
use npu_device::mmu::{Mmu, PAGE_SIZE, PTE_READ, PTE_VALID, PTE_WRITE, VA_BITS};
use npu_device::regs::CMDBUF_MAX;
use npu_isa::{Fault, Insn, INSN_SIZE};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const MEM_SIZE: u64 = 1 << 20;
/// The in-process bench's SRAM size: large enough for real tiles, small
/// enough that the biggest legal instruction stays well under a second.
pub const SRAM_SIZE: u32 = 256 << 10;
/// Heap a job may grow by: a few SRAM-sized tile copies and the bounded
/// TLB, with room to spare.
const HEAP_BUDGET: usize = 16 * SRAM_SIZE as usize + (4 << 20);
const ROOT: u64 = 0x1000;
const POOL: u64 = 0x2000;

pub const CMD_VA: u64 = 0x10_0000;
/// Four read-write pages.
pub const DATA_VA: u64 = 0x20_0000;
pub const RO_VA: u64 = 0x30_0000;
/// VALID but neither READ nor WRITE.
pub const NOPERM_VA: u64 = 0x30_1000;
/// A leaf pointing at a bus address outside host memory.
pub const BUS_VA: u64 = 0x30_2000;
/// A leaf with reserved bits set.
pub const RSVD_VA: u64 = 0x30_3000;
/// Under a level-2 entry whose table lies outside host memory.
pub const BADTABLE_VA: u64 = 0x40_0000_0000;
/// The last page below 2^39, read-write: accesses running off it hit
/// MMU_VA_RANGE.
pub const TOP_VA: u64 = (1 << VA_BITS) - PAGE_SIZE;

struct Space {
    mem: HostMemory,
    next: u64,
    tables: Vec<u64>,
}

impl Space {
    fn alloc(&mut self) -> u64 {
        let p = self.next;
        assert!(p + PAGE_SIZE <= MEM_SIZE, "fuzz set-up out of memory");
        self.next += PAGE_SIZE;
        p
    }
    fn set_pte(&mut self, va: u64, pte: u64) {
        let (mem, next, tables) = (&self.mem, &mut self.next, &mut self.tables);
        // Fresh host memory is zero: a new table needs no clearing.
        npu_device::testbench::set_pte(mem, ROOT, va, pte, || {
            let t = *next;
            assert!(t + PAGE_SIZE <= MEM_SIZE, "fuzz set-up out of memory");
            *next += PAGE_SIZE;
            tables.push(t);
            t
        });
    }
    /// Map `pages` fresh zeroed pages at `va`.
    fn map(&mut self, va: u64, pages: u64, flags: u64) -> Vec<u64> {
        (0..pages)
            .map(|i| {
                let f = self.alloc();
                self.set_pte(va + i * PAGE_SIZE, f | flags);
                f
            })
            .collect()
    }
    /// `data` into consecutive frames, as far as they reach.
    fn put(&self, frames: &[u64], data: &[u8]) {
        for (f, chunk) in frames.iter().zip(data.chunks(PAGE_SIZE as usize)) {
            bus_write(&self.mem, *f, chunk);
        }
    }
}

/// The opcodes of npu-hw.rst's ISA table ("0xNN  NAME" rows).
fn spec_opcodes() -> &'static [u8] {
    static OPCODES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    OPCODES.get_or_init(|| {
        include_str!("../../Documentation/hw/npu-hw.rst")
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let hex = f.next()?.strip_prefix("0x").filter(|h| h.len() == 2)?;
                let name = f.next()?;
                name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_').then(|| u8::from_str_radix(hex, 16).ok())?
            })
            .collect()
    })
}

/// Set-up byte: bits 1:0 how the submitted size relates to the buffer,
/// bit 2 the command pages lack READ, bit 3 the buffer sits at TOP_VA.
struct Setup(u8);

impl Setup {
    fn size(&self, len: usize, param: u8) -> u32 {
        let len = len as u32;
        let s = match self.0 & 3 {
            0 => len,
            1 => len + param as u32 * INSN_SIZE as u32,
            2 => (param as u32 * INSN_SIZE as u32).min(len),
            _ => CMDBUF_MAX,
        };
        // What the CP accepts from a submission (others never reach the
        // executor): a non-zero multiple of 64, at most CMDBUF_MAX.
        (s / INSN_SIZE as u32 * INSN_SIZE as u32).clamp(INSN_SIZE as u32, CMDBUF_MAX)
    }
    fn cmd_readable(&self) -> bool {
        self.0 & 4 == 0
    }
    fn cmd_va(&self) -> u64 {
        if self.0 & 8 != 0 {
            TOP_VA
        } else {
            CMD_VA
        }
    }
}

pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let setup = Setup(input.u8());
    let param = input.u8();
    let cmd = input.0;

    // Every 64-byte word the decoder accepts encodes back to the same bytes
    // (reserved bits must be zero, so there is exactly one encoding), and
    // its opcode is one the spec's table lists (the encoding itself is
    // checked against the spec by npu-isa's golden test).
    for chunk in cmd.chunks_exact(INSN_SIZE) {
        let raw: &[u8; INSN_SIZE] = chunk.try_into().unwrap_or(&[0; INSN_SIZE]);
        if let Ok(insn) = Insn::decode(raw) {
            assert_eq!(&insn.encode(), raw, "decode/encode round trip of {insn:?}");
            assert!(spec_opcodes().contains(&raw[0]), "{insn:?}: opcode {:#04x} is not in npu-hw.rst", raw[0]);
        }
    }

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).expect("fuzz memory");
    let mut sp = Space { mem: mem.into(), next: POOL, tables: vec![ROOT] };
    let cmd_va = setup.cmd_va();
    // At TOP_VA only one page fits below 2^39.
    let max_pages = if cmd_va == TOP_VA { 1 } else { 16 };
    let cmd_pages = (cmd.len() as u64).div_ceil(PAGE_SIZE).clamp(1, max_pages);
    let cmd_flags = PTE_VALID | if setup.cmd_readable() { PTE_READ } else { 0 };
    let cmd_frames = sp.map(cmd_va, cmd_pages, cmd_flags);
    sp.put(&cmd_frames, cmd);
    // The data pages hold the input too, so loads see varied values.
    let mut data_frames = sp.map(DATA_VA, 4, PTE_VALID | PTE_READ | PTE_WRITE);
    if cmd_va != TOP_VA {
        data_frames.extend(sp.map(TOP_VA, 1, PTE_VALID | PTE_READ | PTE_WRITE));
    }
    let ro_frames = sp.map(RO_VA, 1, PTE_VALID | PTE_READ);
    data_frames.extend(&ro_frames);
    let filler: Vec<u8> = cmd.iter().copied().cycle().take(if cmd.is_empty() { 0 } else { data_frames.len() * PAGE_SIZE as usize }).collect();
    sp.put(&data_frames, &filler);
    sp.map(NOPERM_VA, 1, PTE_VALID);
    sp.set_pte(BUS_VA, (MEM_SIZE * 16) | PTE_VALID | PTE_READ | PTE_WRITE);
    sp.set_pte(RSVD_VA, sp.next | PTE_VALID | PTE_READ | 1 << 60);
    let l2_slot = ROOT + ((BADTABLE_VA >> 30) & 0x1ff) * 8;
    bus_write(&sp.mem, l2_slot, &((MEM_SIZE * 64) | PTE_VALID).to_le_bytes());

    // Snapshot what the job may not change: page tables and read-only pages.
    let fixed: Vec<u64> = sp.tables.iter().chain(&ro_frames).chain(&cmd_frames).copied().collect();
    let snapshot = |mem: &HostMemory| -> Vec<u8> {
        let mut out = vec![0u8; fixed.len() * PAGE_SIZE as usize];
        for (f, chunk) in fixed.iter().zip(out.chunks_mut(PAGE_SIZE as usize)) {
            bus_read(mem, *f, chunk);
        }
        out
    };
    let before = snapshot(&sp.mem);

    let size = setup.size(cmd.len(), param);
    let mut exec = Executor::new(SRAM_SIZE, CostModel::default());
    let mut mmu = Mmu::new(&sp.mem, ROOT);
    // The whole job under a time budget from its modelled cost and a heap
    // budget from the SRAM size (tile copies, a row buffer, the TLB).
    let memory = MemoryWatch::start();
    let mut budget = Budget::default();
    let out = exec.run(&mut mmu, cmd_va, size, &mut budget);
    budget.check();
    memory.check(HEAP_BUDGET);
    if budget.stopped_at.is_some() {
        // An honest job stopped at the cap: its outcome is ABORTED, which
        // the checks below do not expect from a job that ran to its end.
        assert_eq!(out.status, Fault::Aborted, "{out:?}");
        return;
    }

    check_outcome(cmd, cmd_va, cmd_pages, setup.cmd_readable(), size, &out);
    assert!(before == snapshot(&sp.mem), "a job wrote a page table or a read-only page");
}

/// The status and fault address must be what npu-hw.rst's fault table
/// says for where the job stopped.
fn check_outcome(cmd: &[u8], cmd_va: u64, cmd_pages: u64, readable: bool, size: u32, out: &npu_device::exec::JobOutcome) {
    let executed = out.stats.instructions;
    let count = size as u64 / INSN_SIZE as u64;
    assert!(executed <= count, "{executed} instructions from a buffer of {count}");
    // The buffer as the device fetches it: the mapped bytes, zero-filled.
    let fetchable = if readable { cmd_pages * PAGE_SIZE } else { 0 };
    let insn_at = |i: u64| -> Option<[u8; INSN_SIZE]> {
        let off = (i * INSN_SIZE as u64) as usize;
        if off as u64 + INSN_SIZE as u64 > fetchable {
            return None;
        }
        let mut raw = [0u8; INSN_SIZE];
        let end = cmd.len().min(off + INSN_SIZE);
        if off < end {
            raw[..end - off].copy_from_slice(&cmd[off..end]);
        }
        Some(raw)
    };
    let decoded = |i: u64| insn_at(i).map(|raw| Insn::decode(&raw));
    // No instruction before the last one executed was END or undecodable.
    for i in 0..executed.saturating_sub(1) {
        match decoded(i) {
            Some(Ok(Insn::End)) | Some(Err(_)) | None => panic!("ran on past instruction {i}: {out:?}"),
            Some(Ok(_)) => {}
        }
    }
    let at = |i: u64| i * INSN_SIZE as u64;
    match out.status {
        Fault::Ok => {
            assert!(executed >= 1 && matches!(decoded(executed - 1), Some(Ok(Insn::End))), "OK without END: {out:?}");
            assert_eq!(out.fault_addr, 0);
        }
        Fault::CmdbufOverrun => {
            assert_eq!(executed, count, "{out:?}");
            assert_eq!(out.fault_addr, size as u64);
        }
        Fault::BadOpcode | Fault::BadOperand | Fault::SramRange | Fault::IndexRange => {
            // Either the next instruction did not decode, or the last one
            // executed had a bad operand; the address says which.
            let decode_fault = decoded(executed).and_then(|r| r.err()).map(|e| e.fault());
            let by_decode = out.fault_addr == at(executed) && decode_fault == Some(out.status);
            let by_operand = out.status != Fault::BadOpcode
                && executed >= 1
                && out.fault_addr == at(executed - 1)
                && matches!(decoded(executed - 1), Some(Ok(_)));
            assert!(by_decode || by_operand, "{out:?}");
        }
        Fault::MmuUnmapped | Fault::MmuPermission => {
            assert!(out.fault_addr >> VA_BITS == 0, "{out:?}");
            if executed == 0 && !readable {
                assert_eq!((out.status, out.fault_addr), (Fault::MmuPermission, cmd_va), "fetch fault");
            }
        }
        Fault::MmuVaRange => assert!(out.fault_addr >> VA_BITS != 0, "{out:?}"),
        Fault::DmaBusError => {}
        Fault::BadContext | Fault::BadSubmission | Fault::Aborted => {
            panic!("the executor cannot end a job with {:?}: {out:?}", out.status)
        }
    }
}
