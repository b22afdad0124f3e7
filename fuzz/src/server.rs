//! Target `server`: a vfio-user client's requests, as the `vfio_user`
//! crate's server loop hands them to `NpuBackend` (region reads and writes,
//! DMA_MAP/UNMAP with and without a file, SET_IRQS, reset), in any order
//! and with any values, while the device's CP thread runs whatever the
//! requests make it run.
//!
//! The wire format itself is the `vfio_user` crate's to parse; what the
//! project owns is every handler behind it, fed here in-process.

use crate::budget::MemoryWatch;
use crate::Input;
use npu_device::mem::{bus_read, Bus};
use npu_device::regs::*;
use npu_device::server::{EventFdIrqs, NpuBackend, DEVICE_ID, VENDOR_ID};
use npu_device::{Device, DeviceConfig};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use vfio_bindings::bindings::vfio::*;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, ServerBackend};

/// The shared guest RAM file QEMU would pass: a memfd of this size.
pub const RAM_SIZE: u64 = 256 << 10;

/// Far above the worst case the spec states for RESET_DONE (one poll
/// interval of the CP: milliseconds), so only a job that ignores resets
/// trips it.
const RESET_BOUND: Duration = Duration::from_secs(2);
/// Heap one input may grow by: the device's 64 KiB SRAM, a job's tile
/// copies, the rings' bookkeeping.
const HEAP_BUDGET: usize = 32 << 20;

/// BAR0 registers worth hitting often (an arbitrary 16-bit offset rarely is),
/// with device 1.1's ring blocks (rings 1..3: base, size, doorbell).
const REGS: [u32; 29] = [
    CONTROL, STATUS, IRQ_MASK, IRQ_ACK, SQ_BASE_LO, SQ_BASE_HI, SQ_SIZE, DOORBELL, CQ_BASE_LO, CQ_BASE_HI, CQ_SIZE,
    CQ_HEAD, CTX_TABLE_LO, CTX_TABLE_HI, FAULT_STATUS, PERF_BASE, SHADOW_LO, RING_ERROR, NUM_RINGS,
    ring_reg(1, RING_SQ_BASE_LO), ring_reg(1, RING_SQ_SIZE), ring_reg(1, RING_DOORBELL),
    ring_reg(2, RING_SQ_BASE_LO), ring_reg(2, RING_SQ_SIZE), ring_reg(2, RING_DOORBELL),
    ring_reg(3, RING_SQ_BASE_LO), ring_reg(3, RING_SQ_SIZE), ring_reg(3, RING_DOORBELL), ring_reg(0, RING_DOORBELL),
];

fn memfd(size: u64) -> File {
    // SAFETY: memfd_create with a NUL-terminated name returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"npu-fuzz-ram".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size).expect("memfd size");
    // Sealed as QEMU's memory-backend-memfd seals (the server refuses others).
    // SAFETY: F_ADD_SEALS on our own descriptor.
    let sealed = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) };
    assert_eq!(sealed, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
    f
}

fn eventfd() -> File {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    unsafe { File::from_raw_fd(fd) }
}

fn region(i: &mut Input) -> u32 {
    // Mostly the three real regions, sometimes any index.
    match i.u8() {
        r @ 0..=0xef => [VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX][r as usize % 3],
        _ => i.u32(),
    }
}

fn offset(i: &mut Input) -> u64 {
    match i.u8() % 4 {
        0 => REGS[i.u8() as usize % REGS.len()] as u64,
        1 => i.u16() as u64,
        2 => i.u8() as u64,
        _ => i.u64(),
    }
}

fn addr(i: &mut Input) -> u64 {
    // Page-aligned small addresses most of the time, so maps can line up.
    match i.u8() % 4 {
        0..=2 => (i.u8() as u64) << 12,
        _ => i.u64(),
    }
}

pub fn run(data: &[u8]) {
    let mut i = Input(data);
    let ram = memfd(RAM_SIZE);
    let bus = Bus::default();
    let sink = Arc::new(EventFdIrqs::default());
    let config = DeviceConfig { sram_size: 64 << 10, contexts: 4, ..Default::default() };
    let device = Device::new(config, bus.clone(), sink.clone(), Default::default());
    let mut b = NpuBackend::new(device, bus, sink);
    // Memory space and bus mastering on, as the driver's probe sets them
    // (inputs may turn them off again through config writes).
    b.region_write(VFIO_PCI_CONFIG_REGION_INDEX, 4, &[0x06, 0]).expect("config write");
    let memory = MemoryWatch::start();

    let mut ops = 0;
    while !i.is_empty() && ops < 256 {
        ops += 1;
        match i.u8() % 10 {
            0 => {
                let (r, off, len) = (region(&mut i), offset(&mut i), i.u8() as usize % 17);
                let mut buf = vec![0xa5u8; len];
                let _ = b.region_read(r, off, &mut buf);
            }
            1 => {
                let (r, off, len) = (region(&mut i), offset(&mut i), i.u8() as usize % 17);
                let bytes = i.bytes(len).to_vec();
                let _ = b.region_write(r, off, &bytes);
            }
            2 => {
                // A 32-bit register write, as the driver makes them.
                let (reg, v) = (REGS[i.u8() as usize % REGS.len()], i.u32());
                b.region_write(VFIO_PCI_BAR0_REGION_INDEX, reg as u64, &v.to_le_bytes()).expect("BAR0 write");
            }
            3 => {
                let (flags, off, a, size, with_file) = (i.u32(), offset(&mut i), addr(&mut i), addr(&mut i), i.u8() & 1 == 0);
                let fd = with_file.then(|| ram.try_clone().expect("dup memfd"));
                let mapped = b.dma_map(DmaMapFlags::from_bits_truncate(flags), off, a, size, fd).is_ok();
                if mapped && with_file && size > 0 {
                    // The device may touch any byte QEMU mapped for DMA (a
                    // map without READ or WRITE is accepted and not mapped).
                    let mem = b.bus.snapshot();
                    let mut byte = [0u8];
                    bus_read(&mem, a, &mut byte);
                    bus_read(&mem, a.wrapping_add(size - 1), &mut byte);
                }
            }
            4 => {
                let (flags, a, size) = (i.u32(), addr(&mut i), addr(&mut i));
                let _ = b.dma_unmap(DmaUnmapFlags::from_bits_truncate(flags), a, size);
            }
            5 => {
                let (index, flags, start, count) = (i.u8() as u32 % 6, i.u32(), i.u8() as u32, i.u8() as u32);
                let fds = (0..i.u8() % 4).map(|k| if k % 2 == 0 { eventfd() } else { ram.try_clone().expect("dup") }).collect();
                let _ = b.set_irqs(index, flags, start, count, fds);
            }
            6 => {
                // A reset ends with RESET_DONE once the CP has left its job:
                // at most one poll interval, far below this bound.
                b.reset().expect("reset");
                let t = Instant::now();
                while b.device.mmio_read(STATUS) & STATUS_RESET_DONE == 0 {
                    assert!(t.elapsed() < RESET_BOUND, "RESET_DONE not set {RESET_BOUND:?} after a reset");
                    std::thread::yield_now();
                }
                assert_eq!(b.device.mmio_read(STATUS) & STATUS_BUSY, 0, "BUSY after RESET_DONE");
            }
            7 => {
                // Guest RAM contents: rings, page tables, command buffers.
                let (off, len) = (i.u16() as u64 * 4, i.u8() as usize);
                let bytes = i.bytes(len).to_vec();
                let _ = ram.write_at(&bytes, off % RAM_SIZE);
            }
            8 => {
                // Let the CP catch up with submitted work on every ring
                // (bounded).
                for _ in 0..200 {
                    let drained = (0..RINGS).all(|n| {
                        b.device.mmio_read(ring_reg(n, RING_SQ_HEAD)) == b.device.mmio_read(ring_reg(n, RING_SQ_TAIL))
                    });
                    if b.device.mmio_read(STATUS) & STATUS_BUSY == 0 && drained {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            _ => {
                let (off, v) = (i.u16() as u64, i.u32());
                let _ = b.region_write(VFIO_PCI_BAR0_REGION_INDEX, off, &v.to_le_bytes());
            }
        }
        // Identity registers no request can change.
        let mut id = [0u8; 4];
        b.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut id).expect("config read");
        assert_eq!(id, [VENDOR_ID.to_le_bytes(), DEVICE_ID.to_le_bytes()].concat()[..], "PCI IDs changed");
        b.region_read(VFIO_PCI_BAR0_REGION_INDEX, ID as u64, &mut id).expect("BAR0 read");
        assert_eq!(u32::from_le_bytes(id), ID_VALUE);
    }
    memory.check(HEAP_BUDGET);
    // Dropping the device aborts whatever job runs: it must stop soon.
    let t = Instant::now();
    drop(b);
    assert!(t.elapsed() < RESET_BOUND, "the device took {:?} to stop", t.elapsed());
}
