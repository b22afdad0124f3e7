// SPDX-License-Identifier: GPL-2.0-only

//! Buffer objects: shmem-backed GEM objects, mapped by the CPU through the
//! DRM fake offset (unless created NO_MMAP), shared through PRIME, and given
//! an address in the NPU address space of every file that has a handle on
//! them (context.rs). Their pages are allocated and pinned on first use: by
//! the first job that uses them (context.rs maps them then) or the first
//! CPU mapping (the shmem helper's mmap).

use kernel::{
    drm::{self, gem, gem::BaseObject, DeviceContext},
    page,
    prelude::*,
    scatterlist::SGTable,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc,
    },
};

use crate::drv::{OnpuDevice, OnpuDriver};
use crate::file::File;
use crate::uapi;
use crate::userptr::UserPages;

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
        Ok(Arc::new(
            Self {
                live: Atomic::new(0),
                bytes: Atomic::new(0),
            },
            GFP_KERNEL,
        )?)
    }
}

/// Driver data of a buffer object.
#[pin_data(PinnedDrop)]
pub(crate) struct Bo {
    size: u64,
    /// DRM_ONPU_BO_* creation flags.
    flags: u32,
    /// A userptr object's pinned, DMA-mapped pages (userptr.rs).
    user_pages: Option<UserPages>,
    stats: Arc<BoStats>,
}

/// How to make a [`Bo`].
pub(crate) struct BoArgs {
    /// DRM_ONPU_BO_* creation flags.
    pub(crate) flags: u32,
    /// For a userptr object: its pages.
    pub(crate) user_pages: Option<UserPages>,
}

impl Bo {
    /// The DRM_ONPU_BO_* flags the object was created with.
    pub(crate) fn flags(&self) -> u32 {
        self.flags
    }

    /// The pages of a userptr object, mapped for the device (which the
    /// NPU page tables point at instead of the shmem pages).
    pub(crate) fn user_pages(&self) -> Option<&SGTable> {
        self.user_pages.as_ref().map(|p| &***p)
    }

    /// Whether the NPU may only read the object.
    pub(crate) fn read_only(&self) -> bool {
        self.flags & uapi::DRM_ONPU_BO_READ_ONLY != 0
    }
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
    type Args = BoArgs;

    fn new<Ctx: DeviceContext>(
        dev: &OnpuDevice<Ctx>,
        size: usize,
        args: BoArgs,
    ) -> impl PinInit<Self, Error> {
        let size = size as u64;
        let stats = dev.engine.bo_stats.clone();
        stats.live.add(1, Relaxed);
        stats.bytes.add(size, Relaxed);
        try_pin_init!(Self {
            size,
            flags: args.flags,
            user_pages: args.user_pages,
            stats
        })
    }

    /// A handle of `file` on the object was created (BO_CREATE or a PRIME
    /// import): reserve the object's address in the file's NPU address
    /// space (the first job using it maps it there).
    fn open(obj: &BoObject, file: &drm::File<File>) -> Result {
        file.inner().open_bo(obj)
    }

    /// A handle of `file` on the object closed.
    fn close(obj: &BoObject, file: &drm::File<File>) {
        file.inner().close_bo(obj)
    }
}

/// Create a buffer object of at least `size` bytes (whole pages) with the
/// DRM_ONPU_BO_* `flags`. No page is allocated yet.
pub(crate) fn create(dev: &OnpuDevice, size: u64, flags: u32) -> Result<ARef<BoObject>> {
    if size == 0
        || size > uapi::DRM_ONPU_BO_MAX_SIZE
        || flags & !uapi::DRM_ONPU_BO_CREATE_FLAGS != 0
    {
        return Err(EINVAL);
    }
    let size = page::page_align(usize::try_from(size)?).ok_or(EINVAL)?;
    // Cached CPU mappings unless asked otherwise: the device reaches memory
    // coherently (PCI), so both are correct. NO_MMAP refuses every CPU
    // mapping, also through a dma-buf exported from the object.
    let config = gem::shmem::ObjectConfig {
        map_wc: flags & uapi::DRM_ONPU_BO_CPU_WC != 0,
        parent_resv_obj: None,
        no_mmap: flags & uapi::DRM_ONPU_BO_NO_MMAP != 0,
        no_export: false,
    };
    gem::shmem::Object::new(
        dev,
        size,
        config,
        BoArgs {
            flags,
            user_pages: None,
        },
    )
    .map_err(shmem_errno)
}

/// The errno of a failed shmem object creation as BO_CREATE documents it:
/// shmem reports an inode it could not allocate as ENOSPC (mm/shmem.c),
/// which to userspace means a full NPU address space; it is out of memory.
pub(crate) fn shmem_errno(e: Error) -> Error {
    if e == ENOSPC {
        ENOMEM
    } else {
        e
    }
}

pub(crate) fn lookup(file: &drm::File<File>, handle: u32) -> Result<ARef<BoObject>> {
    BoObject::lookup_handle(file, handle)
}
