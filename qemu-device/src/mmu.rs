//! The NPU MMU: three levels of 512 64-bit entries (Sv39-like), walked in
//! host memory for every job access. Translations are cached for one job.

use crate::mem::{bus_read, bus_read_u64, bus_write, HostMemory};
use npu_isa::Fault;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Translations cached per job. The cache is emptied when full, so a job
/// touching millions of pages (all aliased to one frame) cannot grow it.
const TLB_ENTRIES: usize = 4096;

/// Slots of the direct-mapped front of the TLB (a power of two).
const MICRO_TLB: usize = 64;

/// Hashes a page number with one multiply (the TLB's keys are page
/// numbers, not attacker-chosen strings: a bad spread only costs time, and
/// the TLB is bounded by TLB_ENTRIES either way).
#[derive(Default)]
struct VpnHasher(u64);

impl Hasher for VpnHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ self.0)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

pub const PAGE_SIZE: u64 = 4096;
pub const VA_BITS: u32 = 39;
pub const PTE_VALID: u64 = 1 << 0;
pub const PTE_READ: u64 = 1 << 1;
pub const PTE_WRITE: u64 = 1 << 2;
/// Bits 12..51 hold the bus address of the next table or page.
pub const PTE_ADDR_MASK: u64 = ((1u64 << 52) - 1) & !(PAGE_SIZE - 1);
const TABLE_RESERVED: u64 = !(PTE_ADDR_MASK | PTE_VALID);
const LEAF_RESERVED: u64 = !(PTE_ADDR_MASK | PTE_VALID | PTE_READ | PTE_WRITE);

/// A job-ending fault and the address it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobFault {
    pub fault: Fault,
    pub addr: u64,
}

impl JobFault {
    pub fn new(fault: Fault, addr: u64) -> Self {
        JobFault { fault, addr }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One job's view of NPU virtual memory.
pub struct Mmu {
    mem: Arc<HostMemory>,
    root: u64,
    tlb: HashMap<u64, u64, BuildHasherDefault<VpnHasher>>,
    /// A direct-mapped copy of some of `tlb`'s entries (slot `vpn % 64`,
    /// as `(vpn, pte)`), looked up first; emptied with it, so it never holds
    /// what `tlb` does not and hits and walks are as without it.
    micro: [(u64, u64); MICRO_TLB],
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Page-table walks (TLB misses), which the cost model charges.
    pub walks: u64,
}

impl Mmu {
    pub fn new(mem: &HostMemory, root: u64) -> Self {
        Self::with_memory(Arc::new(mem.clone()), root)
    }

    pub fn with_memory(mem: Arc<HostMemory>, root: u64) -> Self {
        Mmu {
            mem,
            root,
            tlb: HashMap::default(),
            micro: [(u64::MAX, 0); MICRO_TLB],
            bytes_read: 0,
            bytes_written: 0,
            walks: 0,
        }
    }

    /// Continue the job on a new view of host memory (after a DMA_UNMAP or
    /// a change of bus mastering). Cached translations stay: they are NPU
    /// page-table contents, not host memory.
    pub fn set_memory(&mut self, mem: Arc<HostMemory>) {
        self.mem = mem;
    }

    /// Translate `va` for `access`; returns the bus address.
    pub fn translate(&mut self, va: u64, access: Access) -> Result<u64, JobFault> {
        if va >> VA_BITS != 0 {
            return Err(JobFault::new(Fault::MmuVaRange, va));
        }
        let vpn = va / PAGE_SIZE;
        // u64::MAX marks an empty slot: no VA below 2^39 has that page number.
        let slot = vpn as usize % MICRO_TLB;
        let pte = if self.micro[slot].0 == vpn {
            self.micro[slot].1
        } else {
            let pte = match self.tlb.get(&vpn) {
                Some(&pte) => pte,
                None => {
                    self.walks += 1;
                    let pte = self.walk(va)?;
                    if self.tlb.len() >= TLB_ENTRIES {
                        self.tlb.clear();
                        self.micro = [(u64::MAX, 0); MICRO_TLB];
                    }
                    self.tlb.insert(vpn, pte);
                    pte
                }
            };
            self.micro[slot] = (vpn, pte);
            pte
        };
        let allowed = match access {
            Access::Read => pte & PTE_READ != 0,
            Access::Write => pte & PTE_WRITE != 0,
        };
        if !allowed {
            return Err(JobFault::new(Fault::MmuPermission, va));
        }
        Ok((pte & PTE_ADDR_MASK) | (va & (PAGE_SIZE - 1)))
    }

    fn walk(&self, va: u64) -> Result<u64, JobFault> {
        let mut table = self.root;
        for level in (0..3).rev() {
            let index = (va >> (12 + 9 * level)) & 0x1ff;
            let pte = bus_read_u64(&self.mem, table + index * 8)
                .ok_or(JobFault::new(Fault::DmaBusError, va))?;
            if pte & PTE_VALID == 0 {
                return Err(JobFault::new(Fault::MmuUnmapped, va));
            }
            let reserved = if level == 0 {
                LEAF_RESERVED
            } else {
                TABLE_RESERVED
            };
            if pte & reserved != 0 {
                // A malformed entry is treated as no translation.
                return Err(JobFault::new(Fault::MmuUnmapped, va));
            }
            if level == 0 {
                return Ok(pte);
            }
            table = pte & PTE_ADDR_MASK;
        }
        Err(JobFault::new(Fault::MmuUnmapped, va))
    }

    /// Copy from NPU memory, page by page.
    pub fn read(&mut self, va: u64, buf: &mut [u8]) -> Result<(), JobFault> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(JobFault::new(Fault::MmuVaRange, va))?;
            let in_page = (PAGE_SIZE - cur % PAGE_SIZE) as usize;
            let n = in_page.min(buf.len() - done);
            let pa = self.translate(cur, Access::Read)?;
            if !bus_read(&self.mem, pa, &mut buf[done..done + n]) {
                return Err(JobFault::new(Fault::DmaBusError, cur));
            }
            done += n;
        }
        self.bytes_read += buf.len() as u64;
        Ok(())
    }

    /// The memory a job's accesses reach.
    pub fn memory(&self) -> &HostMemory {
        &self.mem
    }

    /// Count bytes a job read without [`Mmu::read`].
    pub fn count_read(&mut self, n: u64) {
        self.bytes_read += n;
    }

    /// Count bytes a job wrote without [`Mmu::write`].
    pub fn count_written(&mut self, n: u64) {
        self.bytes_written += n;
    }

    /// Copy to NPU memory, page by page. Every page is translated before any
    /// byte is written, so a faulting store leaves memory unchanged.
    pub fn write(&mut self, va: u64, buf: &[u8]) -> Result<(), JobFault> {
        let mut chunks = Vec::new();
        let mut done = 0usize;
        while done < buf.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(JobFault::new(Fault::MmuVaRange, va))?;
            let in_page = (PAGE_SIZE - cur % PAGE_SIZE) as usize;
            let n = in_page.min(buf.len() - done);
            chunks.push((self.translate(cur, Access::Write)?, done, n, cur));
            done += n;
        }
        for (pa, off, n, cur) in chunks {
            if !bus_write(&self.mem, pa, &buf[off..off + n]) {
                return Err(JobFault::new(Fault::DmaBusError, cur));
            }
        }
        self.bytes_written += buf.len() as u64;
        Ok(())
    }
}
