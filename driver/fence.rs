// SPDX-License-Identifier: GPL-2.0-only

//! The ring's fences and implicit synchronisation through reservation
//! objects, on the kernel crate's DMA-fence, reservation-object and
//! sync-object abstractions.
//!
//! Every job gets a [`DriverFence`] of the ring's timeline. The fences have
//! no release callback (the core frees them), so one that outlives the
//! module (held by a sync object or another driver's reservation object)
//! never calls back into it once signalled; the engine signals every fence
//! it creates before the device goes away.

use kernel::{
    dma_fence::{Fence, FenceContext, FenceNames},
    dma_resv::{DmaResv, Usage},
    prelude::*,
    sync::aref::ARef,
    time::Jiffies,
};

pub(crate) use kernel::dma_fence::{DriverFence, SignallingSection as Signalling};

/// The names of the ring's fences.
pub(crate) struct RingFences;

impl FenceNames for RingFences {
    const DRIVER_NAME: &'static CStr = c"onpu";
    const TIMELINE_NAME: &'static CStr = c"onpu-ring";
}

/// The timeline of the ring: its fences signal in submission order.
pub(crate) type RingContext = FenceContext<RingFences>;

/// How a job uses a buffer object, for implicit synchronisation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

impl Access {
    /// The usage the job's fence is published with.
    fn usage(self) -> Usage {
        Usage::rw(self == Access::Write)
    }
}

/// The unsignalled fences of timelines other than `own` that a job with
/// `access` must wait for (writers for a reader, everyone for a writer).
/// The reservation lock is held: none can be added meanwhile.
fn foreign_fences(resv: &kernel::dma_resv::DmaResvGuard<'_>, access: Access, own: u64) -> Result<KVec<ARef<Fence>>> {
    let mut foreign = KVec::new();
    resv.for_each_fence(access.usage().wait_for(), |f| {
        if f.context() != own && !f.is_signaled() {
            foreign.push(ARef::from(f), GFP_KERNEL)?;
        }
        Ok(())
    })?;
    Ok(foreign)
}

fn wait_all(fences: &[ARef<Fence>], jiffies: Jiffies) -> Result<bool> {
    for fence in fences {
        if !fence.wait_timeout(true, jiffies)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Wait (interruptibly) until no fence of another timeline than `own` that
/// a job with `access` must follow is pending. `Ok(false)` when `jiffies`
/// passed first. The fences are collected under the reservation lock and
/// waited for without it.
pub(crate) fn wait_foreign(resv: &DmaResv, access: Access, own: u64, jiffies: Jiffies) -> Result<bool> {
    let foreign = foreign_fences(&resv.lock()?, access, own)?;
    wait_all(&foreign, jiffies)
}

/// Publish `fence` as a user of the object with `access`, after every
/// fence of another timeline than `own` that such a user must wait for has
/// signalled. The wait and the publication happen under the object's
/// reservation lock, so no foreign fence added in between is missed.
/// ETIMEDOUT when `jiffies` passed first.
pub(crate) fn add_fence(resv: &DmaResv, fence: &Fence, access: Access, own: u64, jiffies: Jiffies) -> Result {
    let mut guard = resv.lock()?;
    // (Waiting for fences with the reservation lock held is allowed:
    // signalling never takes one.)
    let foreign = foreign_fences(&guard, access, own)?;
    if !wait_all(&foreign, jiffies)? {
        return Err(ETIMEDOUT);
    }
    guard.reserve_fences(1)?;
    guard.add_fence(fence, access.usage())
}

/// Wait until no job uses the object (`Ok(false)` when `jiffies` passed
/// first).
pub(crate) fn wait_idle(resv: &DmaResv, jiffies: Jiffies) -> Result<bool> {
    resv.wait_timeout(Access::Write.usage().wait_for(), true, jiffies)
}
