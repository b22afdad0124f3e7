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
fn foreign_fences(
    resv: &kernel::dma_resv::DmaResvGuard<'_>,
    access: Access,
    own: u64,
) -> Result<KVec<ARef<Fence>>> {
    let mut foreign = KVec::new();
    resv.for_each_fence(access.usage().wait_for(), |f| {
        if f.context() != own && !f.is_signaled() {
            foreign.push(ARef::from(f), GFP_KERNEL)?;
        }
        Ok(())
    })?;
    Ok(foreign)
}

/// Publish `fence` as a user of the object with `access`; the unsignalled
/// fences of timelines other than `own` that such a user must wait for,
/// collected under the same reservation lock (so none added in between is
/// missed). Never waits for a fence.
pub(crate) fn publish(
    resv: &DmaResv,
    fence: &Fence,
    access: Access,
    own: u64,
) -> Result<KVec<ARef<Fence>>> {
    let mut guard = resv.lock()?;
    let foreign = foreign_fences(&guard, access, own)?;
    guard.reserve_fences(1)?;
    guard.add_fence(fence, access.usage())?;
    Ok(foreign)
}

/// Wait until no job uses the object (`Ok(false)` when `jiffies` passed
/// first).
pub(crate) fn wait_idle(resv: &DmaResv, jiffies: Jiffies) -> Result<bool> {
    resv.wait_timeout(Access::Write.usage().wait_for(), true, jiffies)
}
