// SPDX-License-Identifier: GPL-2.0-only

//! NPU address spaces: the three-level page tables the device's MMU walks
//! (Documentation/hw/npu-hw.rst, "Context table and MMU") and the
//! allocator of NPU virtual addresses.
//!
//! Each open file owns one address space in its own hardware context, so a
//! job can reach exactly the buffer objects its file holds handles to. Page
//! tables live in coherent DMA memory, are allocated on first use and kept
//! until the address space goes; each buffer object gets an unmapped guard
//! page after it, so running off its end faults instead of reaching the
//! next one.

use kernel::{
    device::{self, Bound},
    dma::Coherent,
    dma_write,
    prelude::*,
    scatterlist::SGTable,
};

/// Page-table entries per 4 KiB table.
pub(crate) const PT_ENTRIES: usize = 512;
pub(crate) const PTE_VALID: u64 = 1 << 0;
pub(crate) const PTE_READ: u64 = 1 << 1;
pub(crate) const PTE_WRITE: u64 = 1 << 2;
const PAGE_SIZE: u64 = 4096;

/// Lowest NPU address handed out: the first megabyte stays unmapped so
/// that a null or small NPU pointer faults.
pub(crate) const VA_START: u64 = 1 << 20;
/// End of the addresses handed out (256 GiB, half of the 39-bit space).
pub(crate) const VA_END: u64 = 1 << 38;

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

struct Level1 {
    table: Coherent<[u64]>,
    level0: KVec<Option<Coherent<[u64]>>>,
}

fn nones<T>() -> Result<KVec<Option<T>>> {
    let mut v = KVec::with_capacity(PT_ENTRIES, GFP_KERNEL)?;
    for _ in 0..PT_ENTRIES {
        v.push(None, GFP_KERNEL)?;
    }
    Ok(v)
}

fn new_table(dev: &device::Device<Bound>) -> Result<Coherent<[u64]>> {
    Coherent::<u64>::zeroed_slice(dev, PT_ENTRIES, GFP_KERNEL)
}

/// The page tables of one hardware context.
pub(crate) struct PageTables {
    root: Coherent<[u64]>,
    level1: KVec<Option<Level1>>,
}

impl PageTables {
    pub(crate) fn new(dev: &device::Device<Bound>) -> Result<Self> {
        Ok(Self {
            root: new_table(dev)?,
            level1: nones()?,
        })
    }

    /// Bus address of the level-2 table, for the context descriptor.
    pub(crate) fn root(&self) -> u64 {
        self.root.dma_handle()
    }

    /// The level-0 table covering `va`, allocated (and hooked into the
    /// upper levels) when `dev` is given and it does not exist yet.
    fn level0(
        &mut self,
        dev: Option<&device::Device<Bound>>,
        va: u64,
    ) -> Result<Option<&Coherent<[u64]>>> {
        let (i2, i1) = (index(va, 2), index(va, 1));
        let slot1 = self.level1.get_mut(i2).ok_or(EINVAL)?;
        if slot1.is_none() {
            let Some(dev) = dev else { return Ok(None) };
            let l1 = Level1 {
                table: new_table(dev)?,
                level0: nones()?,
            };
            dma_write!(self.root, [try: i2], l1.table.dma_handle() | PTE_VALID);
            *slot1 = Some(l1);
        }
        let Some(l1) = slot1.as_mut() else {
            return Ok(None);
        };
        let slot0 = l1.level0.get_mut(i1).ok_or(EINVAL)?;
        if slot0.is_none() {
            let Some(dev) = dev else { return Ok(None) };
            let l0 = new_table(dev)?;
            dma_write!(l1.table, [try: i1], l0.dma_handle() | PTE_VALID);
            *slot0 = Some(l0);
        }
        Ok(slot0.as_ref())
    }

    /// Map the pages of `sgt` at `va`, `size` bytes (whole pages). All or
    /// nothing: on any error (a table allocation failing half way, a table
    /// shorter than the object) the entries written are cleared again, so
    /// the range can be handed out anew.
    pub(crate) fn map(
        &mut self,
        dev: &device::Device<Bound>,
        va: u64,
        size: u64,
        sgt: &SGTable,
        flags: u64,
    ) -> Result {
        let mut mapped = 0u64;
        let r = self.map_pages(dev, va, size, sgt, flags, &mut mapped);
        let r = match r {
            Ok(()) if mapped < size => Err(EINVAL),
            r => r,
        };
        if r.is_err() {
            // (Clearing needs no allocation: tables that exist stay.)
            let _ = self.unmap(va, mapped);
        }
        r
    }

    fn map_pages(
        &mut self,
        dev: &device::Device<Bound>,
        va: u64,
        size: u64,
        sgt: &SGTable,
        flags: u64,
        mapped: &mut u64,
    ) -> Result {
        for entry in sgt.iter() {
            // ResourceSize is u32 on 32-bit kernels without PAE.
            #[allow(clippy::useless_conversion)]
            let (bus, len) = (entry.dma_address(), u64::from(entry.dma_len()));
            let mut off = 0;
            while off < len && *mapped < size {
                let page_va = va + *mapped;
                let pte = (bus + off) | flags | PTE_VALID;
                if let Some(l0) = self.level0(Some(dev), page_va)? {
                    dma_write!(l0, [try: index(page_va, 0)], pte);
                }
                off += PAGE_SIZE;
                *mapped += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Clear the entries of `size` bytes at `va`.
    pub(crate) fn unmap(&mut self, va: u64, size: u64) -> Result {
        let mut off = 0;
        while off < size {
            if let Some(l0) = self.level0(None, va + off)? {
                dma_write!(l0, [try: index(va + off, 0)], 0u64);
            }
            off += PAGE_SIZE;
        }
        Ok(())
    }
}

/// First-fit allocator of NPU virtual address ranges.
pub(crate) struct VaAllocator {
    /// Allocated [start, end) ranges, sorted, including guard pages.
    used: KVec<(u64, u64)>,
}

impl VaAllocator {
    pub(crate) fn new() -> Self {
        Self { used: KVec::new() }
    }

    /// Reserve `size` bytes plus a guard page; the start address.
    pub(crate) fn alloc(&mut self, size: u64) -> Result<u64> {
        let span = size.checked_add(PAGE_SIZE).ok_or(ENOSPC)?;
        let mut start = VA_START;
        let mut at = self.used.len();
        for (i, &(s, e)) in self.used.iter().enumerate() {
            if start.checked_add(span).is_some_and(|end| end <= s) {
                at = i;
                break;
            }
            start = e;
        }
        let end = start.checked_add(span).ok_or(ENOSPC)?;
        if end > VA_END {
            return Err(ENOSPC);
        }
        self.used
            .insert_within_capacity(at, (start, end))
            .or_else(|_| {
                self.used.reserve(1, GFP_KERNEL)?;
                self.used
                    .insert_within_capacity(at, (start, end))
                    .map_err(|_| ENOMEM)
            })?;
        Ok(start)
    }

    pub(crate) fn free(&mut self, start: u64) {
        if let Some(i) = self.used.iter().position(|&(s, _)| s == start) {
            let _ = self.used.remove(i);
        }
    }
}
