// SPDX-License-Identifier: GPL-2.0-only

//! DMA fences, sync objects and reservation objects: the small unsafe
//! wrappers around the C helpers (kernel 7.2 has no Rust abstraction for
//! them yet; kernel/patches/0006 exposes the bindings). Everything else in
//! the driver uses these safe types.
//!
//! A job's fence is a plain `struct dma_fence` allocated with kmalloc and
//! using the fence's inline lock. It has no release callback, so the core
//! frees it with dma_fence_free() (kfree_rcu): a fence that outlives the
//! module (held by a syncobj or another driver's reservation object) never
//! calls back into it once signalled, and the driver signals every fence it
//! creates before the device goes away.

use core::ptr::NonNull;
use kernel::{
    bindings, c_str,
    drm,
    error::to_result,
    prelude::*,
    types::Opaque,
};

use crate::file::File;

extern "C" fn driver_name(_fence: *mut bindings::dma_fence) -> *const c_char {
    c_str!("onpu").as_char_ptr()
}

extern "C" fn timeline_name(_fence: *mut bindings::dma_fence) -> *const c_char {
    c_str!("onpu-ring").as_char_ptr()
}

static FENCE_OPS: bindings::dma_fence_ops = {
    // SAFETY: all-zero is a valid dma_fence_ops (every callback optional
    // but the two names, set below).
    let mut ops: bindings::dma_fence_ops = unsafe { core::mem::zeroed() };
    ops.get_driver_name = Some(driver_name);
    ops.get_timeline_name = Some(timeline_name);
    ops
};

/// A DMA-fence signalling critical section (Documentation/driver-api/
/// dma-buf.rst, "DMA Fence Signalling Annotations"): from `begin` to the
/// guard's drop, the code is on the path that signals the ring's fences, so
/// it must not allocate memory, take a reservation lock or wait for a
/// fence. On a kernel with lockdep the section is annotated, so lockdep
/// reports any lock taken inside it that is also held around an allocation
/// or a fence wait elsewhere; elsewhere the guard is empty.
pub(crate) struct Signalling {
    #[cfg(CONFIG_LOCKDEP)]
    cookie: bool,
}

impl Signalling {
    pub(crate) fn begin() -> Self {
        Self {
            #[cfg(CONFIG_LOCKDEP)]
            // SAFETY: no preconditions; the cookie goes back to
            // dma_fence_end_signalling() in drop, on this thread.
            cookie: unsafe { bindings::dma_fence_begin_signalling() },
        }
    }
}

impl Drop for Signalling {
    fn drop(&mut self) {
        #[cfg(CONFIG_LOCKDEP)]
        // SAFETY: the cookie of the matching dma_fence_begin_signalling().
        unsafe {
            bindings::dma_fence_end_signalling(self.cookie)
        };
    }
}

/// A fence context: one timeline of fences signalled in order (the ring).
pub(crate) fn new_context() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bindings::dma_fence_context_alloc(1) }
}

/// A counted reference to a `struct dma_fence`.
///
/// # Invariants
///
/// `self.0` is a valid fence on which this object holds one reference.
pub(crate) struct Fence(NonNull<bindings::dma_fence>);

// SAFETY: dma_fence is reference counted and internally locked; it may be
// used and released from any thread.
unsafe impl Send for Fence {}
// SAFETY: as above.
unsafe impl Sync for Fence {}

impl Fence {
    /// A new, unsignalled fence with sequence number `seqno` on `context`.
    pub(crate) fn new(context: u64, seqno: u64) -> Result<Self> {
        let raw = KBox::into_raw(KBox::new(Opaque::<bindings::dma_fence>::uninit(), GFP_KERNEL)?);
        let ptr = Opaque::cast_into(raw);
        // SAFETY: `ptr` is a fresh kmalloc'ed `dma_fence`; a NULL lock
        // selects the fence's inline lock. The initial reference is ours
        // and, with no release callback, dma_fence_free() kfree()s the
        // allocation when the last reference goes.
        unsafe { bindings::dma_fence_init(ptr, &FENCE_OPS, core::ptr::null_mut(), context, seqno) };
        // INVARIANT: initialised above with one reference, owned here.
        Ok(Self(NonNull::new(ptr).ok_or(ENOMEM)?))
    }

    /// Take a reference to a fence the kernel handed out with one.
    ///
    /// # Safety
    ///
    /// `ptr` must be a valid fence whose reference the caller transfers.
    unsafe fn from_owned_raw(ptr: *mut bindings::dma_fence) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::dma_fence {
        self.0.as_ptr()
    }

    pub(crate) fn context(&self) -> u64 {
        // SAFETY: valid by the type invariant; `context` never changes.
        unsafe { (*self.as_raw()).context }
    }

    pub(crate) fn is_signaled(&self) -> bool {
        // SAFETY: valid by the type invariant.
        unsafe { bindings::dma_fence_is_signaled(self.as_raw()) }
    }

    /// Signal the fence, first recording `error` (0 or a negative errno).
    pub(crate) fn signal(&self, error: i32) {
        // SAFETY: valid by the type invariant. The error is written under
        // the fence's lock-free rules: before signalling, by the only
        // signaller (the ring, under its lock).
        unsafe {
            if error != 0 {
                (*self.as_raw()).error = error;
            }
            bindings::dma_fence_signal(self.as_raw());
        }
    }

    /// Wait for the fence, not interruptible by signals (for a fence that
    /// is known to signal within a bound).
    pub(crate) fn wait_uninterruptible(&self) -> Result {
        // SAFETY: valid by the type invariant.
        let r = unsafe { bindings::dma_fence_wait_timeout(self.as_raw(), false, isize::MAX as _) };
        if r < 0 {
            return Err(Error::from_errno(r as i32));
        }
        Ok(())
    }

    /// Wait for the fence; `Ok(true)` once signalled, `Ok(false)` when
    /// `jiffies` passed first, ERESTARTSYS on a signal.
    pub(crate) fn wait(&self, jiffies: kernel::time::Jiffies) -> Result<bool> {
        let timeout = isize::try_from(jiffies).unwrap_or(isize::MAX);
        // SAFETY: valid by the type invariant.
        let r = unsafe { bindings::dma_fence_wait_timeout(self.as_raw(), true, timeout as _) };
        if r < 0 {
            return Err(Error::from_errno(r as i32));
        }
        Ok(r > 0 || self.is_signaled())
    }
}

impl Clone for Fence {
    fn clone(&self) -> Self {
        // SAFETY: valid by the type invariant; the new reference is the
        // clone's.
        unsafe { bindings::dma_fence_get(self.as_raw()) };
        Self(self.0)
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant).
        unsafe { bindings::dma_fence_put(self.as_raw()) };
    }
}

/// The fence a sync object of `file` holds: ENOENT when the handle names
/// nothing, EINVAL when the sync object has no fence yet.
pub(crate) fn syncobj_fence(file: &drm::File<File>, handle: u32) -> Result<Fence> {
    let mut fence: *mut bindings::dma_fence = core::ptr::null_mut();
    // SAFETY: `file.as_raw()` is a valid open file; on success `fence`
    // receives a reference we take over below.
    to_result(unsafe { bindings::drm_syncobj_find_fence(file.as_raw(), handle, 0, 0, &mut fence) })?;
    // SAFETY: drm_syncobj_find_fence() handed us a reference.
    unsafe { Fence::from_owned_raw(fence) }.ok_or(EINVAL)
}

/// A counted reference to a sync object of a file.
pub(crate) struct SyncObj(NonNull<bindings::drm_syncobj>);

// SAFETY: drm_syncobj is reference counted and internally locked.
unsafe impl Send for SyncObj {}
// SAFETY: as above.
unsafe impl Sync for SyncObj {}

impl SyncObj {
    /// Look up `handle` in `file`; ENOENT when it names nothing.
    pub(crate) fn lookup(file: &drm::File<File>, handle: u32) -> Result<Self> {
        // SAFETY: `file.as_raw()` is a valid open file; the result is a
        // new reference or NULL.
        let obj = unsafe { bindings::drm_syncobj_find(file.as_raw(), handle) };
        NonNull::new(obj).map(Self).ok_or(ENOENT)
    }

    /// Make `fence` the sync object's fence.
    pub(crate) fn replace_fence(&self, fence: &Fence) {
        // SAFETY: both pointers are valid; the syncobj takes its own
        // reference to the fence.
        unsafe { bindings::drm_syncobj_replace_fence(self.0.as_ptr(), fence.as_raw()) };
    }
}

impl Drop for SyncObj {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { bindings::drm_syncobj_put(self.0.as_ptr()) };
    }
}

/// How a job uses a buffer object, for implicit synchronisation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// The reservation object of a GEM object.
pub(crate) struct Resv(*mut bindings::dma_resv);

impl Resv {
    /// # Safety
    ///
    /// `obj` must be a valid GEM object that outlives the returned value.
    pub(crate) unsafe fn of(obj: *mut bindings::drm_gem_object) -> Self {
        // SAFETY: `resv` of an initialised GEM object is set once at init.
        Self(unsafe { (*obj).resv })
    }

    /// Wait until no fence older than a job with `access` would have to wait
    /// for is pending: writers for a reader, everyone for a writer.
    /// `Ok(false)` when `jiffies` passed first.
    pub(crate) fn wait(&self, access: Access, jiffies: kernel::time::Jiffies) -> Result<bool> {
        let usage = match access {
            Access::Read => bindings::dma_resv_usage_DMA_RESV_USAGE_WRITE,
            Access::Write => bindings::dma_resv_usage_DMA_RESV_USAGE_READ,
        };
        let timeout = isize::try_from(jiffies).unwrap_or(isize::MAX);
        // SAFETY: the resv is valid (construction contract); this takes no
        // lock of ours.
        let r = unsafe { bindings::dma_resv_wait_timeout(self.0, usage, true, timeout as _) };
        if r < 0 {
            return Err(Error::from_errno(r as i32));
        }
        Ok(r > 0)
    }

    /// Like [`Resv::wait`], but only for fences of timelines other than
    /// `own` (fences of the ring itself are ordered by the ring).
    pub(crate) fn wait_foreign(&self, access: Access, own: u64, jiffies: kernel::time::Jiffies) -> Result<bool> {
        let mut foreign = KVec::new();
        // SAFETY: an all-zero iterator is what dma_resv_iter_begin() sets
        // up, but for the object and usage set here.
        let mut cursor: bindings::dma_resv_iter = unsafe { core::mem::zeroed() };
        cursor.obj = self.0;
        cursor.usage = match access {
            Access::Read => bindings::dma_resv_usage_DMA_RESV_USAGE_WRITE,
            Access::Write => bindings::dma_resv_usage_DMA_RESV_USAGE_READ,
        };
        // SAFETY: the cursor is initialised as dma_resv_iter_begin() would;
        // the unlocked walk takes the RCU read lock itself and holds a
        // reference on the fence it returns until the next step.
        let mut f = unsafe { bindings::dma_resv_iter_first_unlocked(&mut cursor) };
        let mut walk = Ok(());
        while !f.is_null() {
            // SAFETY: `f` is the cursor's referenced fence.
            let other = unsafe { (*f).context != own && !bindings::dma_fence_is_signaled(f) };
            if other && walk.is_ok() {
                // SAFETY: take our own reference for after the walk.
                let fence = Fence(unsafe { NonNull::new_unchecked(bindings::dma_fence_get(f)) });
                walk = foreign.push(fence, GFP_KERNEL).map_err(Error::from);
            }
            // SAFETY: the cursor is valid and walking.
            f = unsafe { bindings::dma_resv_iter_next_unlocked(&mut cursor) };
        }
        // SAFETY: dma_resv_iter_end(): drop the cursor's last reference.
        unsafe { bindings::dma_fence_put(cursor.fence) };
        walk?;
        for fence in foreign.iter() {
            if !fence.wait(jiffies)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Publish `fence` as a user of the object with `access`, after every
    /// fence of another timeline than `own` that such a user must wait for
    /// has signalled. The wait and the publication happen under the
    /// object's reservation lock, so no foreign fence added in between is
    /// missed. ETIMEDOUT when `jiffies` passed first.
    pub(crate) fn add_fence(&self, fence: &Fence, access: Access, own: u64, jiffies: kernel::time::Jiffies) -> Result {
        let usage = match access {
            Access::Read => bindings::dma_resv_usage_DMA_RESV_USAGE_READ,
            Access::Write => bindings::dma_resv_usage_DMA_RESV_USAGE_WRITE,
        };
        // SAFETY: the resv is valid; one lock at a time and no ww context,
        // so no lock ordering between objects arises.
        to_result(unsafe { bindings::dma_resv_lock(self.0, core::ptr::null_mut()) })?;
        // (Waiting for fences with the reservation lock held is allowed:
        // signalling never takes one.)
        let r = match self.wait_foreign(access, own, jiffies) {
            Ok(true) => {
                // SAFETY: the lock is held, as both calls require.
                to_result(unsafe {
                    let r = bindings::dma_resv_reserve_fences(self.0, 1);
                    if r == 0 {
                        bindings::dma_resv_add_fence(self.0, fence.as_raw(), usage);
                    }
                    r
                })
            }
            Ok(false) => Err(ETIMEDOUT),
            Err(e) => Err(e),
        };
        // SAFETY: locked above.
        unsafe { bindings::dma_resv_unlock(self.0) };
        r
    }
}
