//! The vfio-user face of the device: PCI configuration space, BAR regions,
//! DMA mappings and interrupts, for QEMU's `vfio-user-pci`.

use crate::device::{Device, IrqSink};
use crate::mem::Bus;
use crate::regs::{BAR0_SIZE, BAR2_SIZE, MSIX_PBA_OFFSET, MSIX_VECTORS};
use std::fs::File;
use std::io::{Error, ErrorKind, Write};
use std::mem::size_of;
use std::sync::{Arc, RwLock};
use vfio_bindings::bindings::vfio::*;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, ServerBackend, ServerRegion};
use vm_memory::{FileOffset, GuestAddress, GuestRegionMmap};

pub const VENDOR_ID: u16 = 0x1234;
pub const DEVICE_ID: u16 = 0x4e50;
pub const REVISION: u8 = 0x01;
pub const CLASS_CODE: u32 = 0x12_00_00; // processing accelerator
const CONFIG_SIZE: usize = 256;
const MSIX_CAP: usize = 0x40;
/// PCI command register: Bus Master Enable.
const PCI_COMMAND_MASTER: u8 = 0x04;
/// Largest region access the backend serves: every register is 32 bits and
/// config space is 256 bytes, so anything longer is refused, not looped.
pub const MAX_REGION_ACCESS: usize = 256;

/// Interrupt delivery through the eventfds QEMU gives us in SET_IRQS.
#[derive(Default)]
pub struct EventFdIrqs {
    fds: RwLock<Vec<Option<File>>>,
}

impl IrqSink for EventFdIrqs {
    fn raise(&self, vector: u16) {
        let fds = self.fds.read().unwrap_or_else(|p| p.into_inner());
        if let Some(Some(f)) = fds.get(vector as usize) {
            // An eventfd write adds to its counter; 8 bytes, native endian.
            let mut f: &File = f;
            if let Err(e) = f.write_all(&1u64.to_ne_bytes()) {
                log::warn!("MSI-X vector {vector}: eventfd write failed: {e}");
            }
        } else {
            log::debug!("MSI-X vector {vector} not enabled by the guest; dropped");
        }
    }
}

/// PCI type-0 configuration space with one MSI-X capability.
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
}

impl Default for ConfigSpace {
    fn default() -> Self {
        let mut b = [0u8; CONFIG_SIZE];
        b[0x00..0x02].copy_from_slice(&VENDOR_ID.to_le_bytes());
        b[0x02..0x04].copy_from_slice(&DEVICE_ID.to_le_bytes());
        b[0x06..0x08].copy_from_slice(&0x0010u16.to_le_bytes()); // status: capability list
        b[0x08] = REVISION;
        b[0x09..0x0c].copy_from_slice(&CLASS_CODE.to_le_bytes()[..3]);
        b[0x0e] = 0; // header type 0
        b[0x10..0x14].copy_from_slice(&0u32.to_le_bytes()); // BAR0: 32-bit memory
        b[0x18..0x1c].copy_from_slice(&0u32.to_le_bytes()); // BAR2: 32-bit memory
        b[0x2c..0x2e].copy_from_slice(&VENDOR_ID.to_le_bytes()); // subsystem vendor
        b[0x2e..0x30].copy_from_slice(&DEVICE_ID.to_le_bytes());
        b[0x34] = MSIX_CAP as u8;
        b[0x3d] = 0; // no INTx pin: MSI-X only
                     // MSI-X: id, next, message control (table size - 1), table, PBA (BIR 2).
        b[MSIX_CAP] = 0x11;
        b[MSIX_CAP + 1] = 0;
        b[MSIX_CAP + 2..MSIX_CAP + 4].copy_from_slice(&(MSIX_VECTORS - 1).to_le_bytes());
        b[MSIX_CAP + 4..MSIX_CAP + 8].copy_from_slice(&2u32.to_le_bytes());
        b[MSIX_CAP + 8..MSIX_CAP + 12].copy_from_slice(&(MSIX_PBA_OFFSET | 2).to_le_bytes());
        ConfigSpace { bytes: b }
    }
}

impl ConfigSpace {
    /// The command register's Bus Master Enable bit.
    pub fn bus_master(&self) -> bool {
        self.bytes[0x04] & PCI_COMMAND_MASTER != 0
    }

    fn index(offset: u64, i: usize) -> Option<usize> {
        usize::try_from(offset).ok()?.checked_add(i)
    }

    pub fn read(&self, offset: u64, data: &mut [u8]) {
        // The offset is the client's: bytes past the space read 0, also where
        // offset + i overflows (wrapping would alias the space's start).
        for (i, d) in data.iter_mut().enumerate() {
            *d = Self::index(offset, i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Only the command register and the MSI-X control word are writable;
    /// QEMU emulates BARs and the MSI-X table itself.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &d) in data.iter().enumerate() {
            let Some(o) = Self::index(offset, i) else {
                continue;
            };
            let mask = match o {
                0x04 => 0x46,                   // memory space, bus master, parity
                0x05 => 0x05,                   // SERR, INTx disable
                o if o == MSIX_CAP + 3 => 0xc0, // MSI-X enable, function mask
                _ => 0,
            };
            if let Some(b) = self.bytes.get_mut(o) {
                *b = (*b & !mask) | (d & mask);
            }
        }
    }
}

/// The vfio-user backend.
pub struct NpuBackend {
    pub device: Device,
    pub bus: Bus,
    pub irqs: Arc<EventFdIrqs>,
    pub config: ConfigSpace,
    /// Counts of guest accesses, for the exit summary.
    pub mmio_reads: u64,
    pub mmio_writes: u64,
}

impl NpuBackend {
    /// A backend whose device follows its config space's Bus Master Enable
    /// (0 at power-on, as on real hardware: the driver sets it).
    pub fn new(device: Device, bus: Bus, irqs: Arc<EventFdIrqs>) -> Self {
        let config = ConfigSpace::default();
        device.set_bus_master(config.bus_master());
        NpuBackend {
            device,
            bus,
            irqs,
            config,
            mmio_reads: 0,
            mmio_writes: 0,
        }
    }
}

fn region(index: u32, size: u64) -> ServerRegion {
    ServerRegion {
        region_info: vfio_region_info {
            argsz: size_of::<vfio_region_info>() as u32,
            index,
            size,
            flags: if size > 0 {
                VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
            } else {
                0
            },
            ..Default::default()
        },
        sparse_areas: Vec::new(),
        mmap_fd: None,
    }
}

/// Region list: config space, BAR0 registers, BAR2 MSI-X.
pub fn regions() -> Vec<ServerRegion> {
    (0..VFIO_PCI_NUM_REGIONS)
        .map(|i| match i {
            VFIO_PCI_BAR0_REGION_INDEX => region(i, BAR0_SIZE),
            VFIO_PCI_BAR2_REGION_INDEX => region(i, BAR2_SIZE),
            VFIO_PCI_CONFIG_REGION_INDEX => region(i, CONFIG_SIZE as u64),
            _ => region(i, 0),
        })
        .collect()
}

pub fn irqs() -> Vec<IrqInfo> {
    (0..VFIO_PCI_NUM_IRQS)
        .map(|index| IrqInfo {
            index,
            count: if index == VFIO_PCI_MSIX_IRQ_INDEX {
                MSIX_VECTORS as u32
            } else {
                0
            },
            flags: if index == VFIO_PCI_MSIX_IRQ_INDEX {
                VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE
            } else {
                0
            },
        })
        .collect()
}

fn sealed_against_shrinking(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GET_SEALS only reads the seals of a descriptor we own.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_SHRINK != 0
}

fn bad(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, msg.to_string())
}

impl ServerBackend for NpuBackend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> Result<(), Error> {
        if data.len() > MAX_REGION_ACCESS {
            return Err(bad("region access too long"));
        }
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => self.config.read(offset, data),
            VFIO_PCI_BAR0_REGION_INDEX => {
                if data.len() != 4 || !offset.is_multiple_of(4) || offset >= BAR0_SIZE {
                    // Only aligned 32-bit accesses are defined: others read 0.
                    data.fill(0);
                } else {
                    self.mmio_reads += 1;
                    data.copy_from_slice(&self.device.mmio_read(offset as u32).to_le_bytes());
                }
            }
            // The MSI-X table and PBA are emulated by QEMU; reads that reach
            // us see zeroes.
            VFIO_PCI_BAR2_REGION_INDEX => data.fill(0),
            _ => return Err(bad("no such region")),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_REGION_ACCESS {
            return Err(bad("region access too long"));
        }
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                let was = self.config.bus_master();
                self.config.write(offset, data);
                let now = self.config.bus_master();
                if now != was {
                    log::debug!("bus master {}", if now { "on" } else { "off" });
                    self.device.set_bus_master(now);
                }
            }
            VFIO_PCI_BAR0_REGION_INDEX => {
                if let (Ok(b), true) = (
                    <[u8; 4]>::try_from(data),
                    offset.is_multiple_of(4) && offset < BAR0_SIZE,
                ) {
                    self.mmio_writes += 1;
                    self.device.mmio_write(offset as u32, u32::from_le_bytes(b));
                }
            }
            VFIO_PCI_BAR2_REGION_INDEX => {}
            _ => return Err(bad("no such region")),
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> Result<(), Error> {
        // Without a file the memory cannot be shared (QEMU maps ROMs and
        // private RAM that way): it is not reachable by DMA, and a job that
        // touches it gets a bus error. Guest RAM must use a share=on backend.
        let Some(fd) = fd else {
            log::debug!("dma_map {address:#x}+{size:#x} without a file: not DMA-able");
            return Ok(());
        };
        let (read, write) = (
            flags.contains(DmaMapFlags::READ),
            flags.contains(DmaMapFlags::WRITE),
        );
        if !read && !write {
            log::debug!("dma_map {address:#x}+{size:#x} with neither READ nor WRITE: not DMA-able");
            return Ok(());
        }
        // A file the client can shrink later would SIGBUS the whole server
        // on the next device access past its new end: only sealed files
        // (QEMU's memory-backend-memfd seals by default) are mapped.
        if !sealed_against_shrinking(&fd) {
            log::error!(
                "dma_map {address:#x}+{size:#x} refused: the file is not sealed with F_SEAL_SHRINK \
                 (use -object memory-backend-memfd,share=on with its default seal=on)"
            );
            return Err(bad("DMA_MAP of a file without F_SEAL_SHRINK"));
        }
        // A mapping that runs past the end of the file would SIGBUS the
        // whole server on the first device access there: refuse it now.
        let file_len = fd.metadata()?.len();
        if offset.checked_add(size).is_none_or(|end| end > file_len) {
            return Err(bad("DMA_MAP range beyond the end of its file"));
        }
        let size = usize::try_from(size).map_err(|_| bad("DMA_MAP size"))?;
        let region = GuestRegionMmap::from_range(
            GuestAddress(address),
            size,
            Some(FileOffset::new(fd, offset)),
        )
        .map_err(|e| Error::other(format!("DMA_MAP mmap: {e}")))?;
        self.bus
            .map_with(region, read, write)
            .map_err(Error::other)?;
        log::debug!("dma_map {address:#x}+{size:#x} read {read} write {write}");
        Ok(())
    }

    fn dma_unmap(&mut self, _flags: DmaUnmapFlags, address: u64, size: u64) -> Result<(), Error> {
        // Returns once the device no longer touches the region: a running
        // job moves to the memory left and faults if it goes there.
        if let Err(e) = self.bus.unmap(address, size) {
            // Regions mapped without a file were never added.
            log::debug!("dma_unmap {address:#x}+{size:#x}: {e}");
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Error> {
        self.device.soft_reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> Result<(), Error> {
        if index != VFIO_PCI_MSIX_IRQ_INDEX {
            return if count == 0 {
                Ok(())
            } else {
                Err(bad("only MSI-X is supported"))
            };
        }
        if flags & VFIO_IRQ_SET_ACTION_TRIGGER == 0 {
            return Ok(()); // mask/unmask are handled by QEMU's table emulation
        }
        let end = start
            .checked_add(count)
            .filter(|&e| e <= MSIX_VECTORS as u32)
            .ok_or_else(|| bad("vector range"))?;
        let mut table = self.irqs.fds.write().unwrap_or_else(|p| p.into_inner());
        table.resize_with(MSIX_VECTORS as usize, || None);
        if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
            let mut it = fds.into_iter();
            for v in start..end {
                table[v as usize] = it.next();
            }
        } else if count == 0 {
            table.iter_mut().for_each(|f| *f = None);
        }
        log::debug!("set_irqs msix start {start} count {count}");
        Ok(())
    }
}
