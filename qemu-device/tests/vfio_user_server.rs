//! The vfio-user server end to end, with rust-vmm's client playing QEMU:
//! config space, BAR0 registers, DMA through a shared file, MSI-X eventfds.

use npu_device::mem::Bus;
use npu_device::mmu::{PTE_READ, PTE_VALID, PTE_WRITE};
use npu_device::regs::*;
use npu_device::server::{
    irqs, regions, ConfigSpace, EventFdIrqs, NpuBackend, DEVICE_ID, VENDOR_ID,
};
use npu_device::{Device, DeviceConfig};
use npu_isa::{assemble, Insn, Strided};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_bindings::bindings::vfio::*;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: u64 = 8 << 20;

fn start_server(tag: &str) -> (PathBuf, std::thread::JoinHandle<NpuBackend>) {
    let dir = std::env::temp_dir().join(format!("npu-vfio-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("npu.sock");
    let server = vfio_user::Server::new(&sock, true, irqs(), regions()).expect("server");
    let handle = std::thread::spawn(move || {
        let bus = Bus::default();
        let sink = Arc::new(EventFdIrqs::default());
        let device = Device::new(
            DeviceConfig::default(),
            bus.clone(),
            sink.clone(),
            Default::default(),
        );
        let mut backend = NpuBackend {
            device,
            bus,
            irqs: sink,
            config: ConfigSpace::default(),
            mmio_reads: 0,
            mmio_writes: 0,
        };
        server.run(&mut backend).expect("server loop");
        backend
    });
    (sock, handle)
}

fn connect(sock: &std::path::Path) -> vfio_user::Client {
    let t = Instant::now();
    loop {
        match vfio_user::Client::new(sock) {
            Ok(c) => return c,
            Err(e) if t.elapsed() > Duration::from_secs(5) => panic!("connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn rd(c: &mut vfio_user::Client, off: u32) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(VFIO_PCI_BAR0_REGION_INDEX, off as u64, &mut b)
        .expect("bar0 read");
    u32::from_le_bytes(b)
}

fn wr(c: &mut vfio_user::Client, off: u32, v: u32) {
    c.region_write(VFIO_PCI_BAR0_REGION_INDEX, off as u64, &v.to_le_bytes())
        .expect("bar0 write");
}

#[test]
fn config_space_describes_the_npu() {
    let (sock, server) = start_server("cfg");
    let mut c = connect(&sock);
    let mut cfg = [0u8; 64];
    c.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut cfg)
        .expect("config read");
    assert_eq!(u16::from_le_bytes([cfg[0], cfg[1]]), VENDOR_ID);
    assert_eq!(u16::from_le_bytes([cfg[2], cfg[3]]), DEVICE_ID);
    assert_eq!(&cfg[9..12], &[0x00, 0x00, 0x12]);
    let cap = cfg[0x34] as u64;
    let mut msix = [0u8; 12];
    c.region_read(VFIO_PCI_CONFIG_REGION_INDEX, cap, &mut msix)
        .expect("cap read");
    assert_eq!(msix[0], 0x11, "MSI-X capability");
    assert_eq!(
        u16::from_le_bytes([msix[2], msix[3]]) & 0x7ff,
        MSIX_VECTORS - 1
    );
    assert_eq!(
        c.region(VFIO_PCI_BAR0_REGION_INDEX).map(|r| r.size),
        Some(BAR0_SIZE)
    );
    assert_eq!(
        c.region(VFIO_PCI_BAR2_REGION_INDEX).map(|r| r.size),
        Some(BAR2_SIZE)
    );
    assert_eq!(rd(&mut c, ID), ID_VALUE);
    // Register interface 1.1 (npu-hw.rst, "Register map").
    assert_eq!(rd(&mut c, VERSION), 0x0001_0006);
    wr(&mut c, IRQ_MASK, 0x5);
    assert_eq!(rd(&mut c, IRQ_MASK), 0x5);
    c.shutdown().expect("shutdown");
    let backend = server.join().expect("server thread");
    assert_eq!((backend.mmio_reads, backend.mmio_writes), (3, 1));
}

/// Host memory shared with the device, as QEMU's memfd backend is.
fn sealed_memfd(len: u64) -> File {
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

struct Shared(File);
impl Shared {
    fn put(&self, addr: u64, data: &[u8]) {
        self.0.write_all_at(data, addr).expect("pwrite");
    }
    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.0.read_exact_at(&mut v, addr).expect("pread");
        v
    }
    fn put64(&self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }
}

#[test]
fn a_job_dmas_a_pattern_and_raises_msix() {
    let (sock, server) = start_server("job");
    let mut c = connect(&sock);
    // Guest RAM as QEMU's memory-backend-memfd gives it: sealed against
    // shrinking (the server refuses other files).
    let file = sealed_memfd(MEM_SIZE);
    c.dma_map(0, 0, MEM_SIZE, file.as_raw_fd())
        .expect("dma_map");
    let mem = Shared(file);

    let done = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let err = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    c.set_irqs(
        VFIO_PCI_MSIX_IRQ_INDEX,
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        0,
        2,
        &[done.as_raw_fd(), err.as_raw_fd()],
    )
    .expect("set_irqs");

    // Layout: rings, context table, page tables, command buffer, output.
    let (sq, cq, ctx, l2, l1, l0, cmd, out) = (
        0x1000u64, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000,
    );
    // Both in the first 2 MiB: one level-1 and one level-0 table suffice.
    let (cmd_va, out_va) = (0x10_0000u64, 0x18_0000u64);
    mem.put64(ctx, l2 | PTE_VALID);
    mem.put64(l2, l1 | PTE_VALID); // VA[38:30] = 0
    mem.put64(l1, l0 | PTE_VALID); // VA[29:21] = 0
    mem.put64(l0 + (cmd_va >> 12) * 8, cmd | PTE_VALID | PTE_READ);
    mem.put64(
        l0 + (out_va >> 12) * 8,
        out | PTE_VALID | PTE_READ | PTE_WRITE,
    );
    let prog = assemble(&[
        Insn::Fill {
            dst: 0,
            len: 256,
            pattern: 0xc0ff_ee00,
        },
        Insn::DmaStore {
            va: out_va,
            sram: 0,
            mem: Strided::contiguous(256),
            sram_layout: Strided::contiguous(256),
        },
        Insn::End,
    ]);
    mem.put(cmd, &prog);
    let mut entry = [0u8; 64];
    entry[0..8].copy_from_slice(&42u64.to_le_bytes());
    entry[8..16].copy_from_slice(&cmd_va.to_le_bytes());
    entry[16..20].copy_from_slice(&(prog.len() as u32).to_le_bytes());
    mem.put(sq, &entry);

    for (r, v) in [(SQ_BASE_LO, sq), (CQ_BASE_LO, cq), (CTX_TABLE_LO, ctx)] {
        wr(&mut c, r, v as u32);
        wr(&mut c, r + 4, 0);
    }
    wr(&mut c, SQ_SIZE, 16);
    wr(&mut c, CQ_SIZE, 16);
    wr(&mut c, IRQ_MASK, IRQ_ALL);
    wr(&mut c, CONTROL, CONTROL_ENABLE);
    wr(&mut c, DOORBELL, 1);

    let t = Instant::now();
    while done.read().is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            let (st, tail, fs) = (
                rd(&mut c, STATUS),
                rd(&mut c, CQ_TAIL),
                rd(&mut c, FAULT_STATUS),
            );
            panic!("no MSI-X on the job vector: STATUS {st:#x} CQ_TAIL {tail} FAULT_STATUS {fs} record {:?}", mem.get(cq, 32));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let rec = mem.get(cq, 32);
    assert_eq!(
        u64::from_le_bytes(rec[0..8].try_into().unwrap_or_default()),
        42
    );
    assert_eq!(&rec[8..12], &[0, 0, 0, 0], "status ok");
    assert_eq!(rec[28] & 1, 1, "phase bit of the first pass");
    let data = mem.get(out, 256);
    assert!(data.chunks(4).all(|w| w == 0xc0ff_ee00u32.to_le_bytes()));
    assert!(err.read().is_err(), "no error interrupt");
    assert_eq!(rd(&mut c, CQ_TAIL), 1);
    c.shutdown().expect("shutdown");
    let backend = server.join().expect("server thread");
    assert_eq!(backend.device.perf(PerfCounter::DmaBytesWritten), 256);
}

/// Device 1.1 through the protocol: a job with PROFILE on ring 2 (its
/// registers at 0x240..0x254), its record's ring byte and its profile
/// record, hand-computed from the cost table: FILL 256 B = 2 + 64 + 4 = 70,
/// DMA_STORE 256 B = 70 + one page walk 3 = 73, one engine: 143 cycles.
#[test]
fn a_profiled_job_on_ring_2() {
    let (sock, server) = start_server("ring2");
    let mut c = connect(&sock);
    let file = sealed_memfd(MEM_SIZE);
    c.dma_map(0, 0, MEM_SIZE, file.as_raw_fd())
        .expect("dma_map");
    let mem = Shared(file);
    let (sq0, sq2, cq, ctx, l2, l1, l0, cmd, out, prof) = (
        0x1000u64, 0x9000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000, 0xa040u64,
    );
    let (cmd_va, out_va) = (0x10_0000u64, 0x18_0000u64);
    mem.put64(ctx, l2 | PTE_VALID);
    mem.put64(l2, l1 | PTE_VALID);
    mem.put64(l1, l0 | PTE_VALID);
    mem.put64(l0 + (cmd_va >> 12) * 8, cmd | PTE_VALID | PTE_READ);
    mem.put64(
        l0 + (out_va >> 12) * 8,
        out | PTE_VALID | PTE_READ | PTE_WRITE,
    );
    let prog = assemble(&[
        Insn::Fill {
            dst: 0,
            len: 256,
            pattern: 7,
        },
        Insn::DmaStore {
            va: out_va,
            sram: 0,
            mem: Strided::contiguous(256),
            sram_layout: Strided::contiguous(256),
        },
        Insn::End,
    ]);
    mem.put(cmd, &prog);
    let mut entry = [0u8; 64];
    entry[0..8].copy_from_slice(&77u64.to_le_bytes());
    entry[8..16].copy_from_slice(&cmd_va.to_le_bytes());
    entry[16..20].copy_from_slice(&(prog.len() as u32).to_le_bytes());
    entry[22..24].copy_from_slice(&1u16.to_le_bytes()); // PROFILE
    entry[24..32].copy_from_slice(&prof.to_le_bytes());
    mem.put(sq2, &entry);
    mem.put(prof, &[0xee; 64]);

    for (r, v) in [
        (0x40, sq0),
        (0x240, sq2),
        (CQ_BASE_LO, cq),
        (CTX_TABLE_LO, ctx),
    ] {
        wr(&mut c, r, v as u32);
        wr(&mut c, r + 4, 0);
    }
    wr(&mut c, SQ_SIZE, 16);
    wr(&mut c, 0x248, 8);
    wr(&mut c, CQ_SIZE, 16);
    wr(&mut c, CONTROL, CONTROL_ENABLE);
    assert_eq!(rd(&mut c, STATUS) & STATUS_ENABLED, STATUS_ENABLED);
    wr(&mut c, 0x254, 1);
    let t = Instant::now();
    while rd(&mut c, CQ_TAIL) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "no completion");
        std::thread::sleep(Duration::from_millis(1));
    }
    let rec = mem.get(cq, 32);
    assert_eq!(
        u64::from_le_bytes(rec[0..8].try_into().unwrap_or_default()),
        77
    );
    assert_eq!(&rec[8..12], &[0, 0, 0, 0], "status ok");
    assert_eq!(&rec[14..16], &[2, 0], "ring 2");
    assert_eq!(rd(&mut c, 0x24c), 1, "ring 2's SQ_HEAD");
    assert_eq!(rd(&mut c, SQ_HEAD), 0, "ring 0 untouched");
    let words: Vec<u64> = mem
        .get(prof, 64)
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect();
    assert_eq!(words, [143, 3, 0, 3 * 64, 256, 143, 0, 0]);
    c.shutdown().expect("shutdown");
    server.join().expect("server thread");
}
