//! Host memory as the device sees it: bus addresses backed by the regions
//! QEMU hands over with DMA_MAP (or anonymous memory in tests).

use std::sync::{Arc, RwLock};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

pub type HostMemory = GuestMemoryMmap<()>;

/// The set of mapped host memory regions. Jobs take a snapshot when they
/// start, so a DMA_UNMAP racing with a job never pulls memory from under it.
#[derive(Clone, Default)]
pub struct Bus(Arc<RwLock<Arc<HostMemory>>>);

impl Bus {
    pub fn new(mem: HostMemory) -> Self {
        Bus(Arc::new(RwLock::new(Arc::new(mem))))
    }

    pub fn snapshot(&self) -> Arc<HostMemory> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn map(&self, region: GuestRegionMmap<()>) -> Result<(), String> {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        let next = g
            .insert_region(Arc::new(region))
            .map_err(|e| e.to_string())?;
        *g = Arc::new(next);
        Ok(())
    }

    pub fn unmap(&self, base: u64, size: u64) -> Result<(), String> {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        let (next, _) = g
            .remove_region(GuestAddress(base), size)
            .map_err(|e| e.to_string())?;
        *g = Arc::new(next);
        Ok(())
    }
}

/// Read `buf.len()` bytes at a bus address; false when any byte is unmapped.
pub fn bus_read(mem: &HostMemory, addr: u64, buf: &mut [u8]) -> bool {
    mem.read_slice(buf, GuestAddress(addr)).is_ok()
}

pub fn bus_write(mem: &HostMemory, addr: u64, buf: &[u8]) -> bool {
    mem.write_slice(buf, GuestAddress(addr)).is_ok()
}

pub fn bus_read_u64(mem: &HostMemory, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    bus_read(mem, addr, &mut b).then(|| u64::from_le_bytes(b))
}
