// SPDX-License-Identifier: GPL-2.0-only

//! The hardware-context slot manager: the device has NUM_CONTEXTS context
//! descriptors (0 is the kernel's), and software contexts (NPU address
//! spaces, as many as files create) are bound to them on demand.
//!
//! A context is bound to a slot when a job of it enters the ring, and stays
//! bound while it has jobs in the ring (the device reads the descriptor
//! when a job starts, and caches translations for that job only). A slot
//! whose context has no job in the ring is idle; when a context without a
//! slot needs one and none is free, the least recently used idle slot is
//! taken from its owner (who gets a slot again with its next job). With
//! every slot busy, the job waits until one turns idle ([`WouldBlock`]).
//!
//! The table lives under the engine's ring lock: binding happens where a
//! job is written into the ring, the job count drops where its completion
//! is handled (the fence signalling path: no allocation, no wait here; the
//! table is allocated at probe). The engine writes the descriptors (at
//! bind time, never on the signalling path).

use kernel::prelude::*;

/// The slot the kernel's own jobs use; never handed out.
pub(crate) const KERNEL_SLOT: u16 = 0;

/// Every slot has jobs in the ring: try again once one turns idle (the
/// engine notifies its ring-space waiters when jobs retire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WouldBlock;

/// What [`Slots::bind`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The hardware context index the job runs on.
    pub(crate) slot: u16,
    /// The slot was not bound to this owner before: its descriptor must
    /// be written before the job is (it may still point at the previous
    /// owner's tables, or at none).
    pub(crate) new: bool,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The software context bound here (its engine-wide id), 0 for none.
    owner: u64,
    /// Jobs of the owner in the ring.
    jobs: u32,
    /// When a job of the owner last entered the ring (a tick of `clock`).
    last_used: u64,
}

/// The binding of software contexts to the device's context slots.
pub(crate) struct Slots {
    /// Index = hardware context; slot 0 (the kernel's) is never used.
    slots: KVec<Slot>,
    clock: u64,
}

impl Slots {
    /// A table for a device with `contexts` hardware contexts.
    pub(crate) fn new(contexts: u32) -> Result<Self> {
        let mut slots = KVec::with_capacity(contexts as usize, GFP_KERNEL)?;
        for _ in 0..contexts {
            slots.push(Slot::default(), GFP_KERNEL)?;
        }
        Ok(Self { slots, clock: 0 })
    }

    /// Slots software contexts can have (all but the kernel's).
    pub(crate) fn count(&self) -> usize {
        self.slots.len().saturating_sub(1)
    }

    fn find(&self, owner: u64) -> Option<usize> {
        (1..self.slots.len()).find(|&i| self.slots[i].owner == owner)
    }

    /// The slot `owner` would get now: its own, a free one, or the least
    /// recently used idle one. None when every slot has jobs in the ring.
    fn pick(&self, owner: u64) -> Option<usize> {
        if let Some(i) = self.find(owner) {
            return Some(i);
        }
        let idle = (1..self.slots.len()).filter(|&i| self.slots[i].jobs == 0);
        idle.min_by_key(|&i| (self.slots[i].owner != 0, self.slots[i].last_used))
    }

    /// A job of `owner` (non-zero) enters the ring: the slot it runs on,
    /// counted busy until [`Slots::job_left`]. No allocation.
    pub(crate) fn bind(&mut self, owner: u64) -> Result<Binding, WouldBlock> {
        let i = self.pick(owner).ok_or(WouldBlock)?;
        self.clock += 1;
        let clock = self.clock;
        let s = &mut self.slots[i];
        let new = s.owner != owner;
        *s = Slot {
            owner,
            jobs: s.jobs + 1,
            last_used: clock,
        };
        // Index < NUM_CONTEXTS <= 256 (checked at probe).
        Ok(Binding {
            slot: i as u16,
            new,
        })
    }

    /// A job that entered the ring on `slot` ended (signalling path: no
    /// allocation). Whether the slot turned idle.
    pub(crate) fn job_left(&mut self, slot: u16) -> bool {
        match self.slots.get_mut(usize::from(slot)) {
            Some(s) if usize::from(slot) != usize::from(KERNEL_SLOT) && s.jobs > 0 => {
                s.jobs -= 1;
                s.jobs == 0
            }
            _ => false,
        }
    }

    /// `owner` goes away (it has no job in the ring: each holds it): its
    /// slot, whose descriptor the caller clears, if it had one.
    pub(crate) fn release(&mut self, owner: u64) -> Option<u16> {
        let i = self.find(owner)?;
        self.slots[i] = Slot::default();
        Some(i as u16)
    }

    /// Debugfs: the bound slots, their address spaces and jobs in the ring.
    pub(crate) fn describe(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        for (i, s) in self
            .slots
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, s)| s.owner != 0)
        {
            writeln!(
                out,
                "  slot {} address space {} jobs {}",
                i, s.owner, s.jobs
            )?;
        }
        Ok(())
    }

    /// The slot `owner` is bound to now, if any (for fdinfo and GET_PARAM).
    pub(crate) fn slot_of(&self, owner: u64) -> Option<u16> {
        self.find(owner).map(|i| i as u16)
    }
}
