//! Host memory as the device sees it: bus addresses backed by the regions
//! QEMU hands over with DMA_MAP (or anonymous memory in tests).
//!
//! The device never touches memory it is no longer allowed to: a DMA_UNMAP
//! or clearing the PCI command register's Bus Master Enable *revokes* the
//! memory a job started with. The command processor holds a [`Pin`] while
//! it uses memory and checks [`Pin::revoked`] inside every long loop;
//! [`Bus::unmap`] and [`Bus::set_master`] return only once no pin of an
//! older generation is left, so when they return the device has stopped
//! touching the old memory (libvfio-user's quiesce rule).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

/// Most DMA mappings the device accepts at once (QEMU maps a handful of
/// RAM regions; VFIO's type1 IOMMU defaults to 65535 entries).
pub const MAX_DMA_MAPPINGS: usize = 1024;

/// What a job may read and what it may write: regions mapped without
/// VFIO_USER_F_DMA_REGION_WRITE are only in `read`, and the reverse.
#[derive(Clone, Default)]
pub struct HostMemory {
    read: GuestMemoryMmap<()>,
    write: GuestMemoryMmap<()>,
    /// Regions in either view (a read-only and a write-only one are two).
    mappings: usize,
}

impl From<GuestMemoryMmap<()>> for HostMemory {
    /// Memory the device may read and write (tests, the in-process bench).
    fn from(m: GuestMemoryMmap<()>) -> Self {
        HostMemory {
            read: m.clone(),
            mappings: m.num_regions(),
            write: m,
        }
    }
}

impl HostMemory {
    fn regions(&self) -> usize {
        self.mappings
    }
}

struct Pins {
    /// Live pins per generation.
    by_gen: BTreeMap<u64, usize>,
}

struct Inner {
    mem: RwLock<Arc<HostMemory>>,
    /// PCI command register bit 2, as the vfio-user client last wrote it.
    master: AtomicBool,
    /// Bumped by every revocation (unmap, bus mastering off).
    generation: AtomicU64,
    pins: Mutex<Pins>,
    unpinned: Condvar,
}

/// The set of mapped host memory regions, shared by the vfio-user server
/// (which maps and unmaps) and the command processor (which uses them).
#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl Default for Bus {
    fn default() -> Self {
        Bus::new(GuestMemoryMmap::default())
    }
}

/// Memory in use by the device; see the module comment.
pub struct Pin {
    bus: Bus,
    mem: Arc<HostMemory>,
    generation: u64,
}

impl Pin {
    pub fn mem(&self) -> &HostMemory {
        &self.mem
    }
    pub fn mem_arc(&self) -> Arc<HostMemory> {
        self.mem.clone()
    }
    /// True once the memory this pin holds may no longer be touched.
    pub fn revoked(&self) -> bool {
        self.bus.0.generation.load(Ordering::Acquire) != self.generation
            || !self.bus.0.master.load(Ordering::Acquire)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut p = self.bus.0.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = p.by_gen.get_mut(&self.generation) {
            *n -= 1;
            if *n == 0 {
                p.by_gen.remove(&self.generation);
            }
        }
        self.bus.0.unpinned.notify_all();
    }
}

impl Bus {
    /// Bus mastering starts enabled: the in-process bench has no config
    /// space (the vfio-user backend turns it off, see `NpuBackend::new`).
    pub fn new(mem: GuestMemoryMmap<()>) -> Self {
        Bus(Arc::new(Inner {
            mem: RwLock::new(Arc::new(mem.into())),
            master: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            pins: Mutex::new(Pins {
                by_gen: BTreeMap::new(),
            }),
            unpinned: Condvar::new(),
        }))
    }

    /// The current memory, for host-side inspection (tests); the device
    /// itself uses [`Bus::pin`].
    pub fn snapshot(&self) -> Arc<HostMemory> {
        match self.0.mem.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Take the current memory for device use. While bus mastering is off
    /// the pin holds no memory: every access through it is a bus error.
    pub fn pin(&self) -> Pin {
        let mut p = self.0.pins.lock().unwrap_or_else(|e| e.into_inner());
        // Under the pin lock, so a revocation either sees this pin or
        // happened before the snapshot and generation were read.
        let generation = self.0.generation.load(Ordering::Acquire);
        let mem = if self.master() {
            self.snapshot()
        } else {
            Arc::new(HostMemory::default())
        };
        *p.by_gen.entry(generation).or_insert(0) += 1;
        Pin {
            bus: self.clone(),
            mem,
            generation,
        }
    }

    pub fn master(&self) -> bool {
        self.0.master.load(Ordering::Acquire)
    }

    /// Bus Master Enable. Turning it off returns once the device has
    /// stopped using memory.
    pub fn set_master(&self, on: bool) {
        if self.0.master.swap(on, Ordering::AcqRel) && !on {
            self.revoke();
        }
    }

    /// Bump the generation and wait until no older pin is left.
    fn revoke(&self) {
        let mut p = self.0.pins.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.0.generation.fetch_add(1, Ordering::AcqRel) + 1;
        while p.by_gen.range(..generation).next().is_some() {
            p = self.0.unpinned.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Map a region the device may read and write.
    pub fn map(&self, region: GuestRegionMmap<()>) -> Result<(), String> {
        self.map_with(region, true, true)
    }

    /// Map a region with the given DMA permissions; at most
    /// [`MAX_DMA_MAPPINGS`] regions.
    pub fn map_with(
        &self,
        region: GuestRegionMmap<()>,
        read: bool,
        write: bool,
    ) -> Result<(), String> {
        let mut g = self.0.mem.write().unwrap_or_else(|p| p.into_inner());
        if g.regions() >= MAX_DMA_MAPPINGS {
            return Err(format!("more than {MAX_DMA_MAPPINGS} DMA mappings"));
        }
        let region = Arc::new(region);
        let mut next = (**g).clone();
        // Overlap with a region of the other view must be refused too.
        let probe = g
            .read
            .insert_region(region.clone())
            .and_then(|_| g.write.insert_region(region.clone()));
        probe.map_err(|e| e.to_string())?;
        if read {
            next.read = next
                .read
                .insert_region(region.clone())
                .map_err(|e| e.to_string())?;
        }
        if write {
            next.write = next
                .write
                .insert_region(region)
                .map_err(|e| e.to_string())?;
        }
        next.mappings += 1;
        *g = Arc::new(next);
        Ok(())
    }

    /// Remove a mapping; returns once the device no longer uses it.
    pub fn unmap(&self, base: u64, size: u64) -> Result<(), String> {
        {
            let mut g = self.0.mem.write().unwrap_or_else(|p| p.into_inner());
            let mut next = (**g).clone();
            let mut found = false;
            if let Ok((m, _)) = next.read.remove_region(GuestAddress(base), size) {
                next.read = m;
                found = true;
            }
            if let Ok((m, _)) = next.write.remove_region(GuestAddress(base), size) {
                next.write = m;
                found = true;
            }
            if !found {
                return Err(format!("no mapping at {base:#x}+{size:#x}"));
            }
            next.mappings -= 1;
            *g = Arc::new(next);
        }
        self.revoke();
        Ok(())
    }

    /// Number of live mappings.
    pub fn mappings(&self) -> usize {
        self.snapshot().regions()
    }
}

/// Read `buf.len()` bytes at a bus address; false when any byte is unmapped
/// (or not readable).
pub fn bus_read(mem: &HostMemory, addr: u64, buf: &mut [u8]) -> bool {
    mem.read.read_slice(buf, GuestAddress(addr)).is_ok()
}

/// Write at a bus address; false when any byte is unmapped (or not
/// writable).
pub fn bus_write(mem: &HostMemory, addr: u64, buf: &[u8]) -> bool {
    mem.write.write_slice(buf, GuestAddress(addr)).is_ok()
}

/// Read `buf.len()` bytes at a bus address when one readable region holds
/// them all (one lookup and one copy); false, with nothing read, otherwise.
pub fn bus_read_span(mem: &HostMemory, addr: u64, buf: &mut [u8]) -> bool {
    match mem.read.get_slice(GuestAddress(addr), buf.len()) {
        Ok(span) => span.copy_to(buf) == buf.len(),
        Err(_) => false,
    }
}

/// Whether `len` bytes at a bus address lie in one readable region (so
/// that [`bus_read_span`] reads them).
pub fn bus_readable(mem: &HostMemory, addr: u64, len: usize) -> bool {
    mem.read.get_slice(GuestAddress(addr), len).is_ok()
}

/// Copy each `(offset, bytes)` of `rows` into the `len` bytes at a bus
/// address, when one writable region holds all `len`; false, with nothing
/// written, otherwise (or when a row is outside the `len` bytes).
pub fn bus_write_rows<'a>(
    mem: &HostMemory,
    addr: u64,
    len: usize,
    rows: impl Iterator<Item = (usize, &'a [u8])> + Clone,
) -> bool {
    let Ok(span) = mem.write.get_slice(GuestAddress(addr), len) else {
        return false;
    };
    if rows
        .clone()
        .any(|(o, b)| o.checked_add(b.len()).is_none_or(|e| e > len))
    {
        return false;
    }
    for (o, b) in rows {
        match span.subslice(o, b.len()) {
            Ok(s) => s.copy_from(b),
            Err(_) => return false,
        }
    }
    true
}

pub fn bus_read_u64(mem: &HostMemory, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    bus_read(mem, addr, &mut b).then(|| u64::from_le_bytes(b))
}
