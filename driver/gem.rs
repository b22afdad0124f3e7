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
    },
};

use crate::drv::{OnpuDevice, OnpuDriver};
use crate::file::File;
use crate::uapi;

pub(crate) type BoObject = gem::shmem::Object<Bo>;

/// Buffer objects alive in this module, and their bytes: debugfs shows
/// them, the lifetime tests check they go back to where they were.
pub(crate) static LIVE_BOS: Atomic<u64> = Atomic::new(0);
pub(crate) static LIVE_BO_BYTES: Atomic<u64> = Atomic::new(0);

/// Driver data of a buffer object.
#[pin_data(PinnedDrop)]
pub(crate) struct Bo {
    size: u64,
}

#[pinned_drop]
impl PinnedDrop for Bo {
    fn drop(self: Pin<&mut Self>) {
        LIVE_BOS.add(u64::MAX, Relaxed); // wrapping: minus one
        LIVE_BO_BYTES.add(self.size.wrapping_neg(), Relaxed);
    }
}

impl gem::DriverObject for Bo {
    type Driver = OnpuDriver;
    type Args = ();

    fn new<Ctx: DeviceContext>(_dev: &OnpuDevice<Ctx>, size: usize, _args: ()) -> impl PinInit<Self, Error> {
        let size = size as u64;
        LIVE_BOS.add(1, Relaxed);
        LIVE_BO_BYTES.add(size, Relaxed);
        try_pin_init!(Self { size })
    }

    /// A handle of `file` on the object was created (BO_CREATE or a PRIME
    /// import): map the object into the file's NPU address space.
    fn open(obj: &BoObject, file: &drm::File<File>) -> Result {
        file.inner().context().map(obj)
    }

    /// A handle of `file` on the object closed.
    fn close(obj: &BoObject, file: &drm::File<File>) {
        file.inner().context().unmap(obj)
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
