// SPDX-License-Identifier: GPL-2.0-only

//! The ring layer: the submission and completion rings, the context table
//! and the profile records in device memory, their formats, and the
//! driver's two ring indices. It writes entries into the submission ring,
//! rings the doorbell and reads completion records; it knows nothing of
//! jobs, files or counters: which job an entry or a record is, and what
//! its end means, is the job layer's (inflight.rs)
//! (Documentation/driver/onpu.rst, "Job life cycle").

use kernel::{
    dma::Coherent,
    dma_read, dma_write,
    io::Io,
    prelude::*,
    sync::barrier::{dma_rmb, dma_wmb, mb},
    transmute::{AsBytes, FromBytes},
};

use crate::hw::Bar0;
use crate::regs::*;
use crate::slots::KERNEL_SLOT;

/// Entries of each ring.
pub(crate) const RING_ENTRIES: u32 = 256;
/// The context the kernel uses for its own jobs (the probe self-test).
pub(crate) const KERNEL_CONTEXT: u16 = KERNEL_SLOT;

/// A submission-ring entry.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SqEntry {
    pub(crate) seqno: u64,
    pub(crate) cmdbuf: u64,
    pub(crate) size: u32,
    pub(crate) context: u16,
    pub(crate) flags: u16,
    /// Bus address of the profile record (with SQ_FLAG_PROFILE).
    pub(crate) profile: u64,
    pub(crate) reserved: [u64; 4],
}

/// A completion record.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CqEntry {
    pub(crate) seqno: u64,
    pub(crate) status: u32,
    pub(crate) context: u16,
    pub(crate) reserved: u16,
    pub(crate) fault_addr: u64,
    pub(crate) cycles: u32,
    pub(crate) flags: u32,
}

/// A profile record ("Job profile records"): the words of
/// &drm_onpu_job_profile, in its order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ProfileRecord {
    pub(crate) words: [u64; 8],
}

/// A context-table descriptor.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CtxDesc {
    pub(crate) root: u64,
    pub(crate) reserved: u64,
}

// SAFETY: plain integers with no padding (64, 32 and 16 bytes, checked
// below); every bit pattern is valid.
unsafe impl FromBytes for SqEntry {}
// SAFETY: as above: no padding, so no uninitialised bytes.
unsafe impl AsBytes for SqEntry {}
// SAFETY: as for SqEntry.
unsafe impl FromBytes for CqEntry {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for CqEntry {}
// SAFETY: as for SqEntry.
unsafe impl FromBytes for ProfileRecord {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for ProfileRecord {}
// SAFETY: as for SqEntry.
unsafe impl FromBytes for CtxDesc {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for CtxDesc {}

const _: () = {
    assert!(core::mem::size_of::<SqEntry>() == 64);
    assert!(core::mem::size_of::<CqEntry>() == 32);
    assert!(core::mem::size_of::<CtxDesc>() == 16);
    assert!(core::mem::size_of::<ProfileRecord>() == 64);
};

/// The device-visible memory of the engine: freed when the device unbinds
/// (through devres), even while open files keep the engine alive.
pub(crate) struct Rings {
    pub(crate) sq: Coherent<[SqEntry]>,
    pub(crate) cq: Coherent<[CqEntry]>,
    pub(crate) ctx_table: Coherent<[CtxDesc]>,
    /// The shadow doorbell page (used when the device has the capability).
    pub(crate) shadow: Coherent<[u32]>,
    /// One profile record per submission-ring slot: the job in slot `i`
    /// has its record at `profiles[i]` (64-byte aligned: the array starts
    /// on a page). Read at completion, copied into the job's outcome.
    pub(crate) profiles: Coherent<[ProfileRecord]>,
}

impl Rings {
    /// Bus address of the profile record of submission-ring slot `slot`.
    pub(crate) fn profile_addr(&self, slot: usize) -> u64 {
        self.profiles.dma_handle() + (slot * core::mem::size_of::<ProfileRecord>()) as u64
    }
}

/// Where the driver is in the two rings (under the engine's ring lock):
/// the submission ring's tail and the completion ring's head, as free
/// running counts (the slot is the count modulo RING_ENTRIES, the phase
/// the device writes is the count's pass over the ring).
#[derive(Clone, Copy, Default)]
pub(crate) struct RingIndices {
    pub(crate) sq_tail: u32,
    pub(crate) cq_head: u32,
}

impl RingIndices {
    /// The submission-ring slot the next entry goes to.
    pub(crate) fn next_slot(&self) -> usize {
        (self.sq_tail % RING_ENTRIES) as usize
    }
}

/// The rings of a bound (or not yet revoked) device: what the ring layer
/// writes and reads. Made under the ring lock by whoever holds the
/// registers and the ring memory; nothing here allocates, sleeps or takes
/// a lock, so every signalling path may use it.
pub(crate) struct Ring<'a> {
    bar: &'a Bar0,
    rings: &'a Rings,
    /// The device has CAPS.SHADOW_DOORBELL: indices go through the page.
    shadow: bool,
    /// CONTROL.CQ_EVENT is set (with the page): the device sends a
    /// completion message only for a record at the published head.
    cq_event: bool,
}

impl<'a> Ring<'a> {
    pub(crate) fn new(bar: &'a Bar0, rings: &'a Rings, shadow: bool, cq_event: bool) -> Self {
        Self {
            bar,
            rings,
            shadow,
            cq_event: shadow && cq_event,
        }
    }

    /// Write `entry` into the next submission-ring slot (not published:
    /// [`Ring::publish`] or [`Ring::doorbell`] does that).
    pub(crate) fn write(&self, idx: &mut RingIndices, entry: SqEntry) -> Result {
        dma_write!(self.rings.sq, [try: idx.next_slot()], entry);
        idx.sq_tail = idx.sq_tail.wrapping_add(1);
        Ok(())
    }

    /// Publish the entries written since the tail was `old`; whether the CP
    /// slept and DOORBELL was written. With a shadow page, the CP polls the
    /// tail while it runs and publishes where it stopped (SQ_EVENT) before
    /// it sleeps: ring when the new tail passes that point (the NVMe/virtio
    /// event-index rule). A device that lies in SQ_EVENT only delays its own
    /// jobs, which the watchdog then times out.
    pub(crate) fn publish(&self, idx: &RingIndices, old: u32) -> bool {
        // (The page's indices are constants in range; ring if that fails.)
        if self.needs_doorbell(idx.sq_tail, old).unwrap_or(true) {
            self.doorbell(idx);
            true
        } else {
            false
        }
    }

    /// Write DOORBELL with the tail (after a restart: the CP starts from
    /// the rewound indices).
    pub(crate) fn doorbell(&self, idx: &RingIndices) {
        // writel orders the entries (coherent memory) before the doorbell.
        self.bar.write32(idx.sq_tail, DOORBELL);
    }

    fn needs_doorbell(&self, tail: u32, old: u32) -> Result<bool> {
        if !self.shadow {
            return Ok(true);
        }
        // The entry (coherent memory) before the tail that publishes it.
        dma_wmb();
        dma_write!(self.rings.shadow, [try: SHADOW_SQ_TAIL], tail);
        // The tail before the event read, against the CP's event write
        // before its tail read: one of the two sees the other. A full
        // barrier against the device, as NVMe's shadow doorbells use.
        mb();
        let event: u32 = dma_read!(self.rings.shadow, [try: SHADOW_SQ_EVENT]);
        Ok(tail.wrapping_sub(event).wrapping_sub(1) < tail.wrapping_sub(old))
    }

    /// Whether the device has written the record `nth` records past the
    /// head (its phase bit): a job whose record is not there yet may be
    /// running.
    pub(crate) fn record_written(&self, idx: &RingIndices, nth: u32) -> bool {
        let head = idx.cq_head.wrapping_add(nth);
        let slot = (head % RING_ENTRIES) as usize;
        // The device writes 1 in its first pass over the ring, 0 in the
        // second, and so on.
        let phase = u32::from((head / RING_ENTRIES) % 2 == 0);
        (|| -> Result<u32> { Ok(dma_read!(self.rings.cq, [try: slot].flags)) })()
            .is_ok_and(|flags| flags & 1 == phase)
    }

    /// The next completion record, if the device has written it; the head
    /// moves past it (released to the device by
    /// [`Ring::release_records`]).
    pub(crate) fn next_record(&self, idx: &mut RingIndices) -> Option<CqEntry> {
        if !self.record_written(idx, 0) {
            return None;
        }
        // The device writes the record before its phase word: read the
        // rest only after the phase.
        dma_rmb();
        let slot = (idx.cq_head % RING_ENTRIES) as usize;
        let rec = (|| -> Result<CqEntry> { Ok(dma_read!(self.rings.cq, [try: slot])) })().ok()?;
        idx.cq_head = idx.cq_head.wrapping_add(1);
        Some(rec)
    }

    /// Give the records read so far back to the device; whether a record
    /// is already waiting at the new head, which the caller must drain.
    /// With the completion event index, the device sends no message for a
    /// record written while the head it read was behind: publishing the
    /// head, then (after a full barrier, against the device's record write
    /// before its head read) looking at the ring once more, one of the two
    /// sides sees the other, so no record waits for ever.
    pub(crate) fn release_records(&self, idx: &RingIndices) -> bool {
        if self.shadow {
            // The CP reads the head from the page when it looks for room;
            // it never waits for room (at most RING_ENTRIES jobs are in
            // flight), so no register write is needed.
            let _ = (|| -> Result {
                dma_write!(self.rings.shadow, [try: SHADOW_CQ_HEAD], idx.cq_head);
                Ok(())
            })();
            if self.cq_event {
                mb();
                return self.record_written(idx, 0);
            }
        } else {
            self.bar.write32(idx.cq_head, CQ_HEAD);
        }
        false
    }

    /// After a device reset: the device restarts at index 0 of both rings,
    /// so clear the completion ring (stale records of the previous pass
    /// must not look new) and rewind the indices.
    pub(crate) fn rewind(&self, idx: &mut RingIndices) -> Result {
        for slot in 0..RING_ENTRIES as usize {
            dma_write!(self.rings.cq, [try: slot], CqEntry::default());
        }
        *idx = RingIndices::default();
        Ok(())
    }

    /// The entry in submission-ring slot `slot`, as the device read it.
    pub(crate) fn entry(&self, slot: usize) -> Result<SqEntry> {
        Ok(dma_read!(self.rings.sq, [try: slot]))
    }

    /// The profile record of submission-ring slot `slot`.
    pub(crate) fn profile(&self, slot: usize) -> Result<ProfileRecord> {
        Ok(dma_read!(self.rings.profiles, [try: slot]))
    }

    /// Bus address of the profile record of submission-ring slot `slot`.
    pub(crate) fn profile_addr(&self, slot: usize) -> u64 {
        self.rings.profile_addr(slot)
    }

    /// Point hardware context `slot` at the page tables rooted at `root`
    /// (0: no tables).
    pub(crate) fn set_context(&self, slot: u16, root: u64) -> Result {
        let desc = CtxDesc {
            root: if root != 0 {
                root | crate::mmu::PTE_VALID
            } else {
                0
            },
            reserved: 0,
        };
        dma_write!(self.rings.ctx_table, [try: usize::from(slot)], desc);
        Ok(())
    }
}
