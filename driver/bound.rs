// SPDX-License-Identifier: GPL-2.0-only

//! The bound device for sleeping work in process context.
//!
//! The 7.2 kernel crate proves that a device is bound with
//! `&Device<Bound>`, which it hands out only to bus callbacks (probe,
//! unbind) and interrupt handlers, and revokes `Devres` resources at unbind
//! with RCU: `Devres::try_access` gives a resource to code that does not
//! sleep (the driver's ring writes, doorbells and descriptor updates use
//! it). Work that sleeps and needs the bound device itself (allocating
//! DMA-coherent page tables, DMA-mapping an object's pages, a device
//! coredump, a reset that polls) has no such scope in 7.2: the DRM core's
//! `drm_dev_enter()`/`drm_dev_exit()`, which C drivers (ivpu) use for it,
//! has no Rust abstraction yet. [`BoundGate`] is that scope, in one place:
//! a sleepable read side (a count of users) that unbind closes and drains
//! while the device is still bound (Documentation/driver/onpu.rst,
//! "Binding lifetime").

use kernel::{
    device::{self, Bound},
    devres, new_condvar, new_mutex,
    prelude::*,
    sync::{aref::ARef, Arc, CondVar, Mutex},
};

struct State {
    /// Cleared by [`BoundGate::close`]; never set again.
    open: bool,
    /// Threads inside [`BoundGate::enter`].
    users: u32,
}

/// Lets process context run sleeping code with the device proven bound.
///
/// # Invariants
///
/// While `state.users > 0`, `dev` is bound: [`BoundGate::close`] runs while
/// the device is bound (unbind, and at the latest the devres action
/// registered by [`BoundGate::new`], which runs before the device is marked
/// unbound) and returns only once `users` is 0 with `open` false, after
/// which no user gets in.
#[pin_data]
pub(crate) struct BoundGate {
    dev: ARef<device::Device>,
    #[pin]
    state: Mutex<State>,
    /// Signalled when the last user leaves a closed gate.
    #[pin]
    idle: CondVar,
}

/// Closes the gate when the device unbinds (devres), in case unbind did
/// not (a probe that fails before the engine is shut down).
struct CloseAtUnbind(Arc<BoundGate>);

impl Drop for CloseAtUnbind {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl BoundGate {
    pub(crate) fn new(dev: &device::Device<Bound>) -> Result<Arc<Self>> {
        let device: &device::Device = dev;
        let gate = Arc::pin_init(
            try_pin_init!(Self {
                dev: device.into(),
                state <- new_mutex!(State { open: true, users: 0 }),
                idle <- new_condvar!(),
            }),
            GFP_KERNEL,
        )?;
        devres::register(dev, CloseAtUnbind(gate.clone()), GFP_KERNEL)?;
        Ok(gate)
    }

    /// Run `f` with the device proven bound; ENODEV once the gate is
    /// closed. Holds no lock while `f` runs (it may sleep, allocate and
    /// take any lock that is not on unbind's path before its `close`).
    pub(crate) fn enter<R>(
        &self,
        f: impl FnOnce(&device::Device<Bound>) -> Result<R>,
    ) -> Result<R> {
        {
            let mut state = self.state.lock();
            if !state.open {
                return Err(ENODEV);
            }
            state.users += 1;
        }
        // SAFETY: we are counted in `users` until `f` returns, and by the
        // type invariant the device stays bound while `users > 0`.
        let dev = unsafe { self.dev.as_bound() };
        let r = f(dev);
        let mut state = self.state.lock();
        state.users -= 1;
        if state.users == 0 && !state.open {
            self.idle.notify_all();
        }
        r
    }

    /// Let no new user in (unbind's first step).
    pub(crate) fn shut(&self) {
        self.state.lock().open = false;
    }

    /// Let no new user in and wait for the ones inside to leave. Called
    /// while the device is bound (unbind, devres).
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.open = false;
        while state.users > 0 {
            self.idle.wait(&mut state);
        }
    }
}
