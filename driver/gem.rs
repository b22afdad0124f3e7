// SPDX-License-Identifier: GPL-2.0-only

//! Buffer objects: shmem-backed GEM objects, mapped by the CPU through the
//! DRM fake offset, shared through PRIME, and mapped into the NPU address
//! space of every file that has a handle on them (context.rs).

use kernel::{
    drm::{self, gem, gem::BaseObject, DeviceContext},
    page,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc,
    },
};

use crate::drv::{OnpuDevice, OnpuDriver};
use crate::file::File;
use crate::uapi;

pub(crate) type BoObject = gem::shmem::Object<Bo>;

/// The buffer objects of one device alive, and their bytes: debugfs shows
/// them, the lifetime tests check they go back to where they were. Each
/// object holds a reference, so the count outlives the device's unbind
/// while objects do.
pub(crate) struct BoStats {
    pub(crate) live: Atomic<u64>,
    pub(crate) bytes: Atomic<u64>,
}

impl BoStats {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(Self { live: Atomic::new(0), bytes: Atomic::new(0) }, GFP_KERNEL)?)
    }
}

/// Driver data of a buffer object.
#[pin_data(PinnedDrop)]
pub(crate) struct Bo {
    size: u64,
    stats: Arc<BoStats>,
}

#[pinned_drop]
impl PinnedDrop for Bo {
    fn drop(self: Pin<&mut Self>) {
        self.stats.live.add(u64::MAX, Relaxed); // wrapping: minus one
        self.stats.bytes.add(self.size.wrapping_neg(), Relaxed);
    }
}

impl gem::DriverObject for Bo {
    type Driver = OnpuDriver;
    type Args = ();

    fn new<Ctx: DeviceContext>(dev: &OnpuDevice<Ctx>, size: usize, _args: ()) -> impl PinInit<Self, Error> {
        let size = size as u64;
        let stats = dev.engine.bo_stats.clone();
        stats.live.add(1, Relaxed);
        stats.bytes.add(size, Relaxed);
        try_pin_init!(Self { size, stats })
    }

    /// A handle of `file` on the object was created (BO_CREATE or a PRIME
    /// import): map the object into the file's NPU address space.
    fn open(obj: &BoObject, file: &drm::File<File>) -> Result {
        file.inner().open_bo(obj)
    }

    /// A handle of `file` on the object closed.
    fn close(obj: &BoObject, file: &drm::File<File>) {
        file.inner().close_bo(obj)
    }
}

/// Create a buffer object of at least `size` bytes (whole pages).
pub(crate) fn create(dev: &OnpuDevice, size: u64) -> Result<ARef<BoObject>> {
    if size == 0 || size > uapi::DRM_ONPU_BO_MAX_SIZE {
        return Err(EINVAL);
    }
    let size = page::page_align(usize::try_from(size)?).ok_or(EINVAL)?;
    // Cached CPU mappings: the device reaches memory coherently (PCI).
    let config = gem::shmem::ObjectConfig { map_wc: false, parent_resv_obj: None };
    gem::shmem::Object::new(dev, size, config, ())
}

pub(crate) fn lookup(file: &drm::File<File>, handle: u32) -> Result<ARef<BoObject>> {
    BoObject::lookup_handle(file, handle)
}
