// SPDX-License-Identifier: GPL-2.0-only

//! An NPU address space: page tables, and the buffer objects mapped in them.
//! A file has a default context and those CONTEXT_CREATE makes; each is
//! bound to one of the device's hardware contexts only while it has jobs in
//! the ring (slots.rs).
//!
//! Every handle gives its object an address (also one imported through
//! PRIME, which is the same GEM object in another file): the GEM open
//! callback reserves it in the file's default context, kernel-chosen, so
//! BO_CREATE can return it; it is the object's address in every context of
//! the file. The object's pages are allocated, pinned and written into a
//! context's page tables only when a job of that context first uses the
//! object (`map_and_pin` in the default context, `map_at` in a created
//! one, from SUBMIT): an object never used by a job costs no memory. Each
//! job pins the mappings of the objects it uses until it is released; the
//! last of the handles and the pinning jobs unmaps the object from every
//! context (file.rs, `Vms`). A
//! context lives as long as its file (or CONTEXT_DESTROY) or any of its
//! jobs, whichever is last, so the device never walks freed page tables.
//!
//! Address-space lifetime: the device caches translations for the whole of
//! a job, so clearing page-table entries stops only jobs that start later.
//! An unmap therefore clears the entries at once, keeps the object (its
//! pages and their DMA mapping) until the job running at that moment has
//! ended, and its NPU address range until every job queued before the unmap
//! has ended (`Deferred`, reaped by the next map or unmap and at the end of
//! the context).

use kernel::{
    devres::Devres,
    drm::gem::BaseObject,
    new_mutex,
    prelude::*,
    sync::{aref::ARef, atomic::Atomic, Arc, Mutex},
};

use crate::drv::OnpuDevice;
use crate::engine::Engine;
use crate::gem::BoObject;
use crate::mmu::{PageTables, VaAllocator, PTE_READ, PTE_WRITE};

struct Mapping {
    /// The GEM object. Its handles and pinning jobs (`handles`, `pins`)
    /// keep the mapping listed; the mapping's own reference keeps the
    /// object (and its DMA-mapped pages) alive while it is listed, so
    /// unbind can reach it ([`Objects::release_dma`]).
    obj: ARef<BoObject>,
    va: u64,
    size: u64,
    /// Handles of this file on the object.
    handles: u32,
    /// Jobs using the object that have not been released (default
    /// context only): while there are any, closing the last handle leaves
    /// the object mapped and its address taken (file.rs, `Vms`).
    pins: u32,
    /// Written into the page tables (by the first job that used it).
    mapped: bool,
}

/// An unmapped object the device may still reach through translations
/// cached by a job queued before the unmap.
struct Deferred {
    /// Keeps the pages (and their DMA mapping) alive while the job that
    /// was running at the unmap may still reach them.
    bo: Option<ARef<BoObject>>,
    /// Let the pages go once every job up to this sequence number ended.
    pages_after: u64,
    va: u64,
    /// Hand the range out again once every job up to this one (every job
    /// queued before the unmap) has ended.
    after: u64,
}

impl Mapping {
    fn is(&self, bo: &BoObject) -> bool {
        core::ptr::eq(&*self.obj, bo)
    }
}

struct Vm {
    va: VaAllocator,
    mappings: KVec<Mapping>,
    /// Capacity for every mapping, so an unmap never allocates.
    deferred: KVec<Deferred>,
}

/// The objects an address space maps (its `vm` lock), shared with the
/// engine's list of live address spaces, through which unbind releases
/// their DMA mappings. It refers to neither the engine nor the context, so
/// the engine's reference makes no cycle: the context unlists it when it
/// goes (as binder keeps its processes: a list of `Arc`s, each removed by
/// its owner).
#[pin_data]
pub(crate) struct Objects {
    #[pin]
    vm: Mutex<Vm>,
}

impl Objects {
    /// The device is going away: drop the DMA mappings of every object
    /// this address space maps (the objects themselves live on with their
    /// handles).
    pub(crate) fn release_dma(&self) {
        let vm = self.vm.lock();
        let mapped = vm.mappings.iter().map(|m| &m.obj);
        let deferred = vm.deferred.iter().filter_map(|d| d.bo.as_ref());
        for bo in Iterator::chain(mapped, deferred) {
            // SAFETY: the tables are only used in sections of the DRM
            // device (page-table writes), and unbind unplugged it, waiting
            // for the last one, before calling this; the device is stopped,
            // so no job reaches the pages any more either.
            unsafe { bo.release_sg_table() };
        }
    }
}

#[pin_data(PinnedDrop)]
pub(crate) struct Context {
    engine: Arc<Engine>,
    /// Jobs of this context that have not ended (a destroyed context stays
    /// on its file's list, for unmapping, until they have).
    pub(crate) jobs: Atomic<u32>,
    /// What the slot manager knows this address space by (slots.rs): it
    /// has a hardware context only while a job of it is in the ring, or
    /// until another needs the slot.
    id: u64,
    /// Bus address of the level-2 table (the descriptor's root).
    root: u64,
    /// The objects mapped (`Objects::vm`; lock order: `vm`, then a section
    /// of the DRM device (`Engine::with_bound`), then `tables`). Also on
    /// the engine's list of live address spaces until this context goes.
    objects: Arc<Objects>,
    /// Device memory: freed at unbind even while the file stays open.
    tables: Devres<Mutex<PageTables>>,
}

impl Context {
    pub(crate) fn new(drm: &OnpuDevice) -> Result<Arc<Self>> {
        let engine = &drm.engine;
        let (tables, root) = Engine::enter(drm, |dev| {
            // The engine's work items enter sections through it too: an
            // open may come before probe handed it over.
            engine.set_drm(drm);
            let tables = PageTables::new(dev)?;
            let root = tables.root();
            Ok((Devres::new(dev, new_mutex!(tables))?, root))
        })?;
        let objects = Arc::pin_init(
            try_pin_init!(Objects {
                vm <- new_mutex!(Vm { va: VaAllocator::new(), mappings: KVec::new(), deferred: KVec::new() }),
            }),
            GFP_KERNEL,
        )?;
        // Listed before the context exists: its drop unlists it.
        engine.register_objects(objects.clone())?;
        let id = engine.new_context_id();
        let listed = objects.clone();
        Arc::pin_init(
            try_pin_init!(Self {
                engine: engine.clone(),
                jobs: Atomic::new(0),
                id,
                root,
                objects,
                tables,
            }),
            GFP_KERNEL,
        )
        .inspect_err(|_| engine.unregister_objects(&listed))
    }

    /// A created context leaves its file's list (destroyed, and every job
    /// of it ended, though not every one released): the file no longer
    /// unmaps closed objects from it, and a job that ended (listed in the
    /// file until WAIT reaps it) may keep it alive long after the file
    /// closed the objects it mapped. Clear its entries and forget those
    /// objects now, so that the context does not keep them alive (the
    /// mappings hold references). No job of this context runs again.
    pub(crate) fn forget_mappings(&self) {
        let mut vm = self.objects.vm.lock();
        for m in vm.mappings.iter().filter(|m| m.mapped) {
            // Unbound: the tables are gone with the device.
            let _ = self
                .engine
                .with_bound(|dev| self.tables.access(dev)?.lock().unmap(m.va, m.size));
        }
        let forgotten = core::mem::replace(&mut vm.mappings, KVec::new());
        drop(vm);
        // Outside the lock (the handles keep the objects, but a last
        // reference would free one, taking its reservation lock).
        drop(forgotten);
    }

    /// Let go of the unmapped objects whose last possible user ended, and
    /// of their NPU address ranges.
    fn reap(&self, vm: &mut Vm) {
        if vm.deferred.is_empty() {
            return;
        }
        let done = self.engine.retired_seqno();
        let mut i = 0;
        while i < vm.deferred.len() {
            if vm.deferred[i].pages_after <= done {
                vm.deferred[i].bo = None;
            }
            if vm.deferred[i].after <= done {
                if let Ok(d) = vm.deferred.remove(i) {
                    vm.va.free(d.va);
                }
            } else {
                i += 1;
            }
        }
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn root(&self) -> u64 {
        self.root
    }

    /// The hardware context this address space is bound to now, if any.
    pub(crate) fn slot(&self) -> Option<u16> {
        self.engine.slot_of(self.id)
    }

    /// Where `bo` is mapped in this context.
    pub(crate) fn npu_addr(&self, bo: &BoObject) -> Option<u64> {
        self.objects
            .vm
            .lock()
            .mappings
            .iter()
            .find(|m| m.is(bo))
            .map(|m| m.va)
    }

    /// A new handle of this file on `bo`: reserve its NPU address on the
    /// first one. Nothing is mapped (nor any page allocated) yet.
    pub(crate) fn open_handle(&self, bo: &BoObject) -> Result {
        let mut vm = self.objects.vm.lock();
        if let Some(m) = vm.mappings.iter_mut().find(|m| m.is(bo)) {
            m.handles += 1;
            return Ok(());
        }
        self.reap(&mut vm);
        let size = bo.size() as u64;
        vm.mappings.reserve(1, GFP_KERNEL)?;
        // Room to defer the unmap of every mapping, this one included.
        let wanted = vm.mappings.len() + 1;
        vm.deferred.reserve(wanted, GFP_KERNEL)?;
        let va = vm.va.alloc(size)?;
        vm.mappings.push(
            Mapping {
                obj: ARef::from(bo),
                va,
                size,
                handles: 1,
                pins: 0,
                mapped: false,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// A job of this context uses `bo`: make sure the object's pages are
    /// there, pinned and in the page tables (read-only for a READ_ONLY
    /// object), and pin the mapping for the job ([`Context::pin`]); its
    /// NPU address. ENOENT when this file has no handle on it.
    ///
    /// All or nothing: when allocating the pages or a table fails, the
    /// entries written are cleared again and the next use tries anew.
    pub(crate) fn map_and_pin(&self, bo: &BoObject) -> Result<u64> {
        let mut vm = self.objects.vm.lock();
        let m = vm
            .mappings
            .iter_mut()
            .find(|m| m.is(bo) && m.handles > 0)
            .ok_or(ENOENT)?;
        if m.mapped {
            m.pins += 1;
            return Ok(m.va);
        }
        let flags = if bo.read_only() {
            PTE_READ
        } else {
            PTE_READ | PTE_WRITE
        };
        // The pages and their DMA mapping are made in a section: never for
        // an unbound device. They stay until the object is freed.
        self.engine.with_bound(|dev| {
            let sgt = match bo.user_pages() {
                Some(pinned) => pinned,
                None => bo.sg_table()?,
            };
            self.tables
                .access(dev)?
                .lock()
                .map(dev, m.va, m.size, sgt, flags)
        })?;
        m.mapped = true;
        m.pins += 1;
        Ok(m.va)
    }

    /// A context created by CONTEXT_CREATE: map `bo` at `va`, the address
    /// its file gave it, unless it is mapped already (a job of this context
    /// uses it), read-only for a READ_ONLY object. The file's lock keeps
    /// the handle open meanwhile.
    pub(crate) fn map_at(&self, bo: &BoObject, va: u64) -> Result {
        let mut vm = self.objects.vm.lock();
        if vm.mappings.iter().any(|m| m.is(bo)) {
            return Ok(());
        }
        vm.mappings.reserve(1, GFP_KERNEL)?;
        let size = bo.size() as u64;
        let flags = if bo.read_only() {
            PTE_READ
        } else {
            PTE_READ | PTE_WRITE
        };
        self.engine.with_bound(|dev| {
            let sgt = match bo.user_pages() {
                Some(pinned) => pinned,
                None => bo.sg_table()?,
            };
            self.tables
                .access(dev)?
                .lock()
                .map(dev, va, size, sgt, flags)
        })?;
        let m = Mapping {
            obj: ARef::from(bo),
            va,
            size,
            handles: 1,
            pins: 0,
            mapped: true,
        };
        vm.mappings.push_within_capacity(m).map_err(|_| ENOMEM)?;
        Ok(())
    }

    /// A context created by CONTEXT_CREATE: the file's last handle on `bo`
    /// is closing. Clear its entries here; the file's default context,
    /// unmapping right after, keeps the pages and the range until every
    /// job that may still reach them has ended. Whether it was mapped.
    pub(crate) fn unmap_now(&self, bo: &BoObject) -> bool {
        let mut vm = self.objects.vm.lock();
        let Some(i) = vm.mappings.iter().position(|m| m.is(bo)) else {
            return false;
        };
        let Ok(m) = vm.mappings.remove(i) else {
            return false;
        };
        let _ = self
            .engine
            .with_bound(|dev| self.tables.access(dev)?.lock().unmap(m.va, m.size));
        true
    }

    /// A job of a created context will use `bo` (default context, where
    /// the file's handles and pins are counted): its mapping stays until
    /// the job is released. ENOENT when this file has no handle on it.
    pub(crate) fn pin(&self, bo: &BoObject) -> Result {
        let mut vm = self.objects.vm.lock();
        let m = vm
            .mappings
            .iter_mut()
            .find(|m| m.is(bo) && m.handles > 0)
            .ok_or(ENOENT)?;
        m.pins += 1;
        Ok(())
    }

    /// A job that used `bo` was released: whether nothing refers to the
    /// mapping any more (the caller unmaps it, [`Context::remove_mapping`]).
    pub(crate) fn unpin(&self, bo: &BoObject) -> bool {
        let mut vm = self.objects.vm.lock();
        let Some(m) = vm.mappings.iter_mut().find(|m| m.is(bo)) else {
            return false;
        };
        m.pins = m.pins.saturating_sub(1);
        m.handles == 0 && m.pins == 0
    }

    /// Whether `bo` is mapped here with neither a handle nor a pin left
    /// (the file's lock held: nothing can add one meanwhile).
    pub(crate) fn unreferenced(&self, bo: &BoObject) -> bool {
        self.objects
            .vm
            .lock()
            .mappings
            .iter()
            .any(|m| m.is(bo) && m.handles == 0 && m.pins == 0)
    }

    /// A handle of this file on `bo` closed: whether nothing refers to the
    /// mapping any more (the last handle, and no job pins it).
    pub(crate) fn close_handle(&self, bo: &BoObject) -> bool {
        let mut vm = self.objects.vm.lock();
        let Some(m) = vm.mappings.iter_mut().find(|m| m.is(bo)) else {
            return false;
        };
        m.handles = m.handles.saturating_sub(1);
        m.handles == 0 && m.pins == 0
    }

    /// Unmap `bo`, which no handle and no job refer to any more.
    /// `mapped_elsewhere`: a created context of the file had it mapped
    /// (and cleared its entries just now), so the pages wait for the
    /// running job as they do after an unmap here.
    pub(crate) fn remove_mapping(&self, bo: &BoObject, mapped_elsewhere: bool) {
        let mut vm = self.objects.vm.lock();
        let Some(i) = vm
            .mappings
            .iter()
            .position(|m| m.is(bo) && m.handles == 0 && m.pins == 0)
        else {
            return;
        };
        let Ok(m) = vm.mappings.remove(i) else { return };
        // Jobs that start from now on fault on the range. Jobs queued
        // before may have cached its translations and keep reaching the
        // pages until they end: keep the pages and the range until then.
        // Unbound, the device is stopped and its tables gone: nothing to wait for.
        // Never mapped: no job reached the pages, but one queued before may
        // still hold the address, so the range waits all the same.
        let unmapped = self.engine.with_bound(|dev| {
            if m.mapped {
                self.tables.access(dev)?.lock().unmap(m.va, m.size)?;
            } else if !mapped_elsewhere {
                return Ok((0, self.engine.queued_seqno()));
            }
            // Queued (not started) jobs will walk the cleared entries and
            // fault; only the running one may have cached them.
            Ok((self.engine.running_seqno()?, self.engine.queued_seqno()))
        });
        match unmapped {
            Ok((pages_after, after)) if after > self.engine.retired_seqno() => {
                // The mapping's reference keeps the pages while the running
                // job may reach them.
                let bo = (pages_after != 0).then_some(m.obj);
                let d = Deferred {
                    bo,
                    pages_after,
                    va: m.va,
                    after,
                };
                // Never fails: open_handle() reserved room for every mapping.
                // Were it to, keeping the range forever beats reusing it.
                let _ = vm.deferred.push_within_capacity(d);
            }
            Ok(_) => vm.va.free(m.va),
            Err(e) if e == ENODEV => vm.va.free(m.va),
            // The entries may still be there: never hand the range out again.
            Err(_) => {}
        }
        self.reap(&mut vm);
    }
}

#[pinned_drop]
impl PinnedDrop for Context {
    fn drop(self: Pin<&mut Self>) {
        self.engine.unregister_objects(&self.objects);
        // No job uses the context any more (each holds a reference): unhook
        // the tables from its slot, if it has one, then free them with the
        // rest of the context.
        self.engine.release_context(self.id);
    }
}
