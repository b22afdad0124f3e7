// SPDX-License-Identifier: GPL-2.0-only

//! A file's hardware context: one of the device's contexts, the page tables
//! its descriptor points at, and the NPU addresses of the buffer objects the
//! file holds handles to.
//!
//! Every handle maps its object (also one imported through PRIME, which is
//! the same GEM object in another file): the GEM open callback maps it at a
//! kernel-chosen address, the close callback of the last handle unmaps it.
//! The context lives as long as its file or any of its jobs, whichever is
//! last, so the device never walks freed page tables.

use kernel::{
    drm::gem::{BaseObject, IntoGEMObject},
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

use crate::engine::Engine;
use crate::gem::BoObject;
use crate::mmu::{PageTables, VaAllocator, PTE_READ, PTE_WRITE};

struct Mapping {
    /// The GEM object, by address: the handle (not the mapping) holds the
    /// reference.
    obj: usize,
    va: u64,
    size: u64,
    /// Handles of this file on the object.
    handles: u32,
}

struct Vm {
    tables: PageTables,
    va: VaAllocator,
    mappings: KVec<Mapping>,
}

#[pin_data(PinnedDrop)]
pub(crate) struct Context {
    engine: Arc<Engine>,
    index: u16,
    #[pin]
    vm: Mutex<Vm>,
}

fn key(bo: &BoObject) -> usize {
    bo.as_raw() as usize
}

impl Context {
    pub(crate) fn new(engine: &Arc<Engine>) -> Result<Arc<Self>> {
        let index = engine.alloc_context()?;
        let made = engine.with_bound(|dev| {
            let tables = PageTables::new(dev)?;
            engine.set_context(index, tables.root())?;
            Ok(tables)
        });
        let tables = match made {
            Ok(t) => t,
            Err(e) => {
                engine.free_context(index);
                return Err(e);
            }
        };
        // From here on, dropping the context releases the index.
        Arc::pin_init(
            try_pin_init!(Self {
                engine: engine.clone(),
                index,
                vm <- new_mutex!(Vm { tables, va: VaAllocator::new(), mappings: KVec::new() }),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn index(&self) -> u16 {
        self.index
    }

    /// Where `bo` is mapped in this context.
    pub(crate) fn npu_addr(&self, bo: &BoObject) -> Option<u64> {
        let k = key(bo);
        self.vm.lock().mappings.iter().find(|m| m.obj == k).map(|m| m.va)
    }

    /// A new handle of this file on `bo`: map it on the first one.
    pub(crate) fn map(&self, bo: &BoObject) -> Result {
        let k = key(bo);
        let mut vm = self.vm.lock();
        if let Some(m) = vm.mappings.iter_mut().find(|m| m.obj == k) {
            m.handles += 1;
            return Ok(());
        }
        let size = bo.size() as u64;
        let sgt = bo.sg_table()?;
        vm.mappings.reserve(1, GFP_KERNEL)?;
        let va = vm.va.alloc(size)?;
        let mapped = self.engine.with_bound(|dev| vm.tables.map(dev, va, size, sgt, PTE_READ | PTE_WRITE));
        if let Err(e) = mapped {
            vm.va.free(va);
            return Err(e);
        }
        vm.mappings.push(Mapping { obj: k, va, size, handles: 1 }, GFP_KERNEL)?;
        Ok(())
    }

    /// A handle of this file on `bo` closed: unmap with the last one.
    pub(crate) fn unmap(&self, bo: &BoObject) {
        let k = key(bo);
        let mut vm = self.vm.lock();
        let Some(i) = vm.mappings.iter().position(|m| m.obj == k) else { return };
        vm.mappings[i].handles -= 1;
        if vm.mappings[i].handles > 0 {
            return;
        }
        let Ok(m) = vm.mappings.remove(i) else { return };
        // Jobs still running on the object fault from their next access on:
        // the user closed what they use. The pages stay theirs (jobs hold
        // the object).
        let _ = vm.tables.unmap(m.va, m.size);
        vm.va.free(m.va);
    }
}

#[pinned_drop]
impl PinnedDrop for Context {
    fn drop(self: Pin<&mut Self>) {
        // No job uses the context any more (each holds a reference): unhook
        // the tables, then free them with the rest of the context.
        self.engine.free_context(self.index);
    }
}
