//! The vfio-user backend's handlers called directly, with the requests a
//! misbehaving client can send (regressions found by fuzz/ target `server`).

use npu_device::mem::{bus_read, Bus};
use npu_device::server::{ConfigSpace, EventFdIrqs, NpuBackend};
use npu_device::{Device, DeviceConfig};
use std::fs::File;
use std::sync::Arc;
use vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
use vfio_user::{DmaMapFlags, ServerBackend};

fn backend() -> NpuBackend {
    let bus = Bus::default();
    let sink = Arc::new(EventFdIrqs::default());
    let device = Device::new(
        DeviceConfig::default(),
        bus.clone(),
        sink.clone(),
        Default::default(),
    );
    NpuBackend {
        device,
        bus,
        irqs: sink,
        config: ConfigSpace::default(),
        mmio_reads: 0,
        mmio_writes: 0,
    }
}

/// Guest RAM as QEMU's memory-backend-memfd gives it: sealed against
/// shrinking (the server refuses other files).
fn ram_file(_tag: &str, len: u64) -> File {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: memfd_create with a NUL-terminated name returns a new fd or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"npu-test-ram".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: a fresh descriptor nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len).expect("size");
    // SAFETY: F_ADD_SEALS on our own descriptor.
    assert_eq!(
        unsafe {
            libc::fcntl(
                f.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            )
        },
        0
    );
    f
}

#[test]
fn dma_map_past_the_end_of_its_file_is_refused() {
    // Mapped, the second page would SIGBUS the server on the first device
    // access; it must be refused and stay unreachable.
    let mut b = backend();
    let rw = DmaMapFlags::READ_WRITE;
    let f = ram_file("short", 8192);
    assert!(b
        .dma_map(rw, 0, 0x10_0000, 12288, Some(f.try_clone().expect("dup")))
        .is_err());
    assert!(b
        .dma_map(rw, 8192, 0x10_0000, 4096, Some(f.try_clone().expect("dup")))
        .is_err());
    assert!(b
        .dma_map(
            rw,
            u64::MAX,
            0x10_0000,
            4096,
            Some(f.try_clone().expect("dup"))
        )
        .is_err());
    let mem = b.bus.snapshot();
    assert!(!bus_read(&mem, 0x10_0000, &mut [0u8; 1]));
    // The whole file, or a tail of it, is fine.
    b.dma_map(rw, 0, 0x10_0000, 8192, Some(f.try_clone().expect("dup")))
        .expect("map whole file");
    b.dma_map(rw, 4096, 0x20_0000, 4096, Some(f))
        .expect("map the file's tail");
    let mem = b.bus.snapshot();
    assert!(bus_read(&mem, 0x10_1fff, &mut [0u8; 1]));
    assert!(bus_read(&mem, 0x20_0fff, &mut [0u8; 1]));
}

#[test]
fn config_accesses_at_the_top_of_the_offset_range_do_not_wrap() {
    let mut b = backend();
    let mut buf = [0xa5u8; 8];
    b.region_read(VFIO_PCI_CONFIG_REGION_INDEX, u64::MAX - 1, &mut buf)
        .expect("config read");
    assert_eq!(buf, [0; 8]);
    // Wrapped, bytes 2.. would land on the command register at 0x04.
    b.region_write(VFIO_PCI_CONFIG_REGION_INDEX, u64::MAX - 1, &[0xff; 8])
        .expect("config write");
    let mut cmd = [0u8; 2];
    b.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 4, &mut cmd)
        .expect("config read");
    assert_eq!(cmd, [0, 0]);
}
