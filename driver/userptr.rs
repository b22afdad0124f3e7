// SPDX-License-Identifier: GPL-2.0-only

//! Buffer objects of user memory (BO_CREATE_USERPTR): the pages of a
//! page-aligned range of the caller's address space, pinned long-term
//! (FOLL_LONGTERM; FOLL_WRITE unless the object is READ_ONLY) and mapped
//! for the device at creation, unpinned when the object is freed. The pins
//! are charged to the creating process's RLIMIT_MEMLOCK (`pinned_vm`, patch
//! 28: ENOMEM above it without CAP_IPC_LOCK); the charge lives in the pinned
//! pages, so it goes back to that process's mm with them.
//!
//! The object is a shmem GEM object like the others (one object type for
//! handles, PRIME and the job path), created NO_MMAP and unexportable: its
//! shmem pages are never allocated, since nothing but the NPU mapping
//! (context.rs, from `Bo::user_pages()`) reaches its memory.

use kernel::{
    dma::DataDirection,
    drm::gem,
    page::{PinnedUserPages, PAGE_SIZE},
    prelude::*,
    scatterlist::{Owned, SGTable},
    sync::aref::ARef,
};

use crate::drv::OnpuDevice;
use crate::engine::Engine;
use crate::gem::{BoArgs, BoObject};
use crate::uapi;

/// The pinned pages of a userptr object, DMA-mapped for the device (until
/// it unbinds at the latest).
pub(crate) type UserPages = Pin<KBox<SGTable<Owned<PinnedUserPages>>>>;

/// Create an object of the `size` bytes of user memory at `user_ptr`.
pub(crate) fn create(
    dev: &OnpuDevice,
    user_ptr: u64,
    size: u64,
    flags: u32,
) -> Result<ARef<BoObject>> {
    let page = PAGE_SIZE as u64;
    if flags & !uapi::DRM_ONPU_BO_READ_ONLY != 0
        || size == 0
        || size > uapi::DRM_ONPU_BO_MAX_SIZE
        || size % page != 0
        || user_ptr % page != 0
    {
        return Err(EINVAL);
    }
    // An address the CPU cannot have is a bad range, not a bad argument.
    let addr = usize::try_from(user_ptr).map_err(|_| EFAULT)?;
    let count = usize::try_from(size / page)?;
    let read_only = flags & uapi::DRM_ONPU_BO_READ_ONLY != 0;
    let pinned = PinnedUserPages::pin(addr, count, !read_only)?;
    let dir = if read_only {
        DataDirection::ToDevice
    } else {
        DataDirection::Bidirectional
    };
    let pages = Engine::enter(dev, |bound| {
        KBox::pin_init(
            SGTable::from_pinned_user_pages(bound, pinned, dir, GFP_KERNEL),
            GFP_KERNEL,
        )
    })?;
    let config = gem::shmem::ObjectConfig {
        map_wc: false,
        parent_resv_obj: None,
        no_mmap: true,
        no_export: true,
    };
    let args = BoArgs {
        flags: flags | uapi::DRM_ONPU_BO_NO_MMAP,
        user_pages: Some(pages),
    };
    gem::shmem::Object::new(dev, usize::try_from(size)?, config, args)
        .map_err(crate::gem::shmem_errno)
}
