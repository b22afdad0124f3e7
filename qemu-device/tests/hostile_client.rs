//! A hostile vfio-user client (issue 14): raw messages on the socket, built
//! from the vfio-user specification's wire format (a 16-byte header:
//! message id u16, command u16, message size u32 including the header,
//! flags u32, error u32; then the command's fields), not from the crate
//! under test. The server must answer a bad message with an error reply and
//! stay in step, or drop the client; never panic, never allocate by a size
//! the client chose.

use npu_device::mem::Bus;
use npu_device::regs::{ID, ID_VALUE};
use npu_device::server::{irqs, regions, EventFdIrqs, NpuBackend};
use npu_device::{Device, DeviceConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vfio_bindings::bindings::vfio::{VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX};

/// No allocation in this process may exceed 256 MiB (the old server made
/// 4 GiB ones for one region access): refused, the process aborts.
struct CappedAlloc;

// SAFETY: forwards to the system allocator; refuses by returning null,
// which the GlobalAlloc contract allows.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > 256 << 20 {
            let msg = b"hostile_client: an allocation above 256 MiB was requested\n";
            // SAFETY: writing a static buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const VERSION: u16 = 1;
const REGION_READ: u16 = 9;
const REGION_WRITE: u16 = 10;
const FLAG_REPLY: u32 = 1;
const FLAG_ERROR: u32 = 1 << 5;
const HEADER: usize = 16;

type ServerResult = Result<(), String>;

/// A server on a fresh socket, and a raw connection to it.
fn serve(tag: &str) -> (UnixStream, JoinHandle<ServerResult>) {
    let dir = std::env::temp_dir().join(format!("npu-hostile-client-{}-{tag}", std::process::id()));
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
        let mut backend = NpuBackend::new(device, bus, sink);
        server.run(&mut backend).map_err(|e| e.to_string())
    });
    let t = Instant::now();
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if t.elapsed() > Duration::from_secs(10) => panic!("connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    // A server out of step would leave us waiting: give up instead.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (stream, handle)
}

fn header(id: u16, command: u16, size: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&command.to_le_bytes());
    h.extend_from_slice(&size.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // flags: command
    h.extend_from_slice(&0u32.to_le_bytes()); // error
    h
}

/// A message whose size field is the true size.
fn message(id: u16, command: u16, fields: &[u8]) -> Vec<u8> {
    let mut m = header(id, command, (HEADER + fields.len()) as u32);
    m.extend_from_slice(fields);
    m
}

fn region_access(region: u32, offset: u64, count: u32) -> Vec<u8> {
    let mut f = offset.to_le_bytes().to_vec();
    f.extend_from_slice(&region.to_le_bytes());
    f.extend_from_slice(&count.to_le_bytes());
    f
}

struct Reply {
    id: u16,
    command: u16,
    flags: u32,
    error: u32,
    body: Vec<u8>,
}

fn reply(s: &mut UnixStream) -> Reply {
    let mut h = [0u8; HEADER];
    s.read_exact(&mut h)
        .expect("a reply header (the server went away or out of step)");
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let size = u32_at(4) as usize;
    assert!(
        (HEADER..=HEADER + 4096).contains(&size),
        "reply size {size}"
    );
    let mut body = vec![0u8; size - HEADER];
    s.read_exact(&mut body).expect("a reply body");
    Reply {
        id: u16::from_le_bytes([h[0], h[1]]),
        command: u16::from_le_bytes([h[2], h[3]]),
        flags: u32_at(8),
        error: u32_at(12),
        body,
    }
}

fn expect_error(s: &mut UnixStream, id: u16, command: u16) {
    let r = reply(s);
    assert_eq!((r.id, r.command), (id, command));
    assert_eq!(
        r.flags & (FLAG_REPLY | FLAG_ERROR),
        FLAG_REPLY | FLAG_ERROR,
        "not an error reply: flags {:#x}",
        r.flags
    );
    assert_eq!(r.error, libc::EINVAL as u32);
}

/// The connection still works: BAR0's ID register reads back.
fn expect_alive(s: &mut UnixStream, id: u16) {
    s.write_all(&message(
        id,
        REGION_READ,
        &region_access(VFIO_PCI_BAR0_REGION_INDEX, ID as u64, 4),
    ))
    .expect("send");
    let r = reply(s);
    assert_eq!(
        (r.id, r.command, r.flags & FLAG_ERROR),
        (id, REGION_READ, 0)
    );
    // The reply repeats offset, region and count, then the data.
    assert_eq!(r.body.len(), 16 + 4);
    assert_eq!(
        u32::from_le_bytes([r.body[16], r.body[17], r.body[18], r.body[19]]),
        ID_VALUE
    );
}

/// Close our end; the server must end its loop without panicking.
fn hang_up(s: UnixStream, server: JoinHandle<ServerResult>) -> ServerResult {
    drop(s);
    server
        .join()
        .unwrap_or_else(|_| panic!("the server thread panicked"))
}

#[test]
fn a_well_formed_version_handshake_is_answered() {
    let (mut s, server) = serve("version-ok");
    let caps = b"{\"capabilities\":{}}\0";
    let mut fields = vec![0, 0, 1, 0]; // major 0, minor 1
    fields.extend_from_slice(caps);
    s.write_all(&message(1, VERSION, &fields)).expect("send");
    let r = reply(&mut s);
    assert_eq!((r.id, r.command, r.flags & FLAG_ERROR), (1, VERSION, 0));
    assert!(
        r.body.len() > 4 && r.body.last() == Some(&0),
        "capabilities must be NUL-terminated"
    );
    expect_alive(&mut s, 2);
    assert_eq!(hang_up(s, server), Ok(()));
}

#[test]
fn a_version_message_shorter_than_its_structure_is_refused() {
    // message_size 16 < the 20 bytes of a VERSION: the old server computed
    // 16 - 20 and allocated (or panicked) by the wrapped value.
    let (mut s, server) = serve("version-short");
    s.write_all(&header(1, VERSION, HEADER as u32))
        .expect("send");
    expect_error(&mut s, 1, VERSION);
    expect_alive(&mut s, 2);
    assert_eq!(hang_up(s, server), Ok(()));
}

#[test]
fn version_capabilities_without_a_nul_are_refused() {
    // The old server unwrapped CString::from_vec_with_nul: a panic.
    let (mut s, server) = serve("version-nul");
    let mut fields = vec![0, 0, 1, 0];
    fields.extend_from_slice(b"{\"capabilities\":{}}");
    s.write_all(&message(1, VERSION, &fields)).expect("send");
    expect_error(&mut s, 1, VERSION);
    // Not JSON at all, NUL-terminated: an error reply too.
    let mut fields = vec![0, 0, 1, 0];
    fields.extend_from_slice(b"\xff\xfe\0");
    s.write_all(&message(2, VERSION, &fields)).expect("send");
    expect_error(&mut s, 2, VERSION);
    expect_alive(&mut s, 3);
    assert_eq!(hang_up(s, server), Ok(()));
}

#[test]
fn an_oversized_region_read_is_refused_without_allocating() {
    let (mut s, server) = serve("read-huge");
    // 4 GiB - 1: the old server allocated it (aborting this process here).
    s.write_all(&message(
        1,
        REGION_READ,
        &region_access(VFIO_PCI_BAR0_REGION_INDEX, 0, u32::MAX),
    ))
    .expect("send");
    expect_error(&mut s, 1, REGION_READ);
    // Within the protocol's 1 MiB but longer than any register or the
    // config space: the backend refuses it rather than loop over it.
    s.write_all(&message(
        2,
        REGION_READ,
        &region_access(VFIO_PCI_CONFIG_REGION_INDEX, 0, 1 << 20),
    ))
    .expect("send");
    expect_error(&mut s, 2, REGION_READ);
    expect_alive(&mut s, 3);
    assert_eq!(hang_up(s, server), Ok(()));
}

#[test]
fn an_oversized_region_write_drops_the_client() {
    // A message claiming 4 GiB: no buffer may be sized by it, and the
    // stream cannot be resynchronised, so the client is dropped.
    let (mut s, server) = serve("write-huge");
    let mut m = header(1, REGION_WRITE, u32::MAX);
    m.extend_from_slice(&region_access(VFIO_PCI_BAR0_REGION_INDEX, 0, u32::MAX - 32));
    s.write_all(&m).expect("send");
    let mut buf = [0u8; 1];
    // Closed with our bytes unread: end of file or a reset.
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the server answered a message it cannot frame: {other:?}"),
    }
    let r = server
        .join()
        .unwrap_or_else(|_| panic!("the server thread panicked"));
    assert!(
        r.is_err(),
        "a dropped client is an error for the server loop"
    );
}

#[test]
fn a_region_write_whose_data_disagrees_with_its_count_is_refused_in_step() {
    // 4 bytes of data, count 8: the old server read 4 bytes of the next
    // message as data and lost the stream.
    let (mut s, server) = serve("write-count");
    let mut fields = region_access(VFIO_PCI_BAR0_REGION_INDEX, 0x34, 8);
    fields.extend_from_slice(&[1, 2, 3, 4]);
    let mut both = message(1, REGION_WRITE, &fields);
    both.extend_from_slice(&message(
        2,
        REGION_READ,
        &region_access(VFIO_PCI_BAR0_REGION_INDEX, ID as u64, 4),
    ));
    s.write_all(&both).expect("send");
    expect_error(&mut s, 1, REGION_WRITE);
    let r = reply(&mut s);
    assert_eq!((r.id, r.command, r.flags & FLAG_ERROR), (2, REGION_READ, 0));
    assert_eq!(
        u32::from_le_bytes([r.body[16], r.body[17], r.body[18], r.body[19]]),
        ID_VALUE
    );
    // Fields cut short (a region access with 8 of its 16 field bytes).
    s.write_all(&message(3, REGION_READ, &[0u8; 8]))
        .expect("send");
    expect_error(&mut s, 3, REGION_READ);
    expect_alive(&mut s, 4);
    assert_eq!(hang_up(s, server), Ok(()));
}

#[test]
fn truncated_messages_end_the_connection_without_a_panic() {
    // Half a header, then hang up.
    let (mut s, server) = serve("trunc-header");
    s.write_all(&header(1, REGION_READ, 32)[..8]).expect("send");
    assert!(hang_up(s, server).is_err());
    // A header promising 1 MiB of body, 100 bytes of it, then hang up.
    let (mut s, server) = serve("trunc-body");
    let mut m = header(1, REGION_WRITE, (HEADER + (1 << 20)) as u32);
    m.extend_from_slice(&[0u8; 100]);
    s.write_all(&m).expect("send");
    assert!(hang_up(s, server).is_err());
    // A header cut in two segments is still one header.
    let (mut s, server) = serve("split-header");
    let m = message(
        7,
        REGION_READ,
        &region_access(VFIO_PCI_BAR0_REGION_INDEX, ID as u64, 4),
    );
    s.write_all(&m[..5]).expect("send");
    s.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(20)); // two segments, not an event we wait for
    s.write_all(&m[5..]).expect("send");
    let r = reply(&mut s);
    assert_eq!((r.id, r.command, r.flags & FLAG_ERROR), (7, REGION_READ, 0));
    assert_eq!(hang_up(s, server), Ok(()));
}

#[test]
fn an_unknown_command_is_an_error_reply() {
    let (mut s, server) = serve("unknown");
    s.write_all(&message(1, 0x7777, &[0u8; 24])).expect("send");
    let r = reply(&mut s);
    assert_eq!(r.flags & FLAG_ERROR, FLAG_ERROR);
    expect_alive(&mut s, 2);
    assert_eq!(hang_up(s, server), Ok(()));
}

// The backend's DMA_MAP handler, called directly with what a client may send.

use npu_device::mem::{bus_read, bus_write, MAX_DMA_MAPPINGS};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, ServerBackend};

fn backend() -> NpuBackend {
    let bus = Bus::default();
    let sink = Arc::new(EventFdIrqs::default());
    let device = Device::new(
        DeviceConfig::default(),
        bus.clone(),
        sink.clone(),
        Default::default(),
    );
    NpuBackend::new(device, bus, sink)
}

fn memfd(len: u64, seals: i32) -> File {
    // SAFETY: memfd_create with a NUL-terminated name returns a new fd or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"npu-hostile".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: a fresh descriptor nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len).expect("size");
    if seals != 0 {
        // SAFETY: F_ADD_SEALS on our own descriptor.
        assert_eq!(
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) },
            0
        );
    }
    f
}

#[test]
fn a_memfd_the_client_could_shrink_is_refused() {
    // Mapped, a later ftruncate by the client would SIGBUS the server on
    // the device's next access (the old server mapped it).
    let mut b = backend();
    let rw = DmaMapFlags::READ_WRITE;
    let unsealed = memfd(8192, 0);
    assert!(
        b.dma_map(rw, 0, 0x10_0000, 8192, Some(unsealed)).is_err(),
        "an unsealed memfd was mapped"
    );
    let grow_only = memfd(8192, libc::F_SEAL_GROW);
    assert!(b.dma_map(rw, 0, 0x10_0000, 8192, Some(grow_only)).is_err());
    assert!(!bus_read(&b.bus.snapshot(), 0x10_0000, &mut [0u8; 1]));
    // Sealed as QEMU's memory-backend-memfd seals: mapped, and the shrink
    // that would have killed the server is refused by the kernel.
    let sealed = memfd(8192, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW);
    b.dma_map(
        rw,
        0,
        0x10_0000,
        8192,
        Some(sealed.try_clone().expect("dup")),
    )
    .expect("a sealed memfd");
    assert!(sealed.set_len(4096).is_err(), "the sealed memfd shrank");
    assert!(bus_read(&b.bus.snapshot(), 0x10_1fff, &mut [0u8; 1]));
}

#[test]
fn dma_map_protection_flags_are_honoured() {
    let mut b = backend();
    let seals = libc::F_SEAL_SHRINK;
    b.dma_map(
        DmaMapFlags::READ,
        0,
        0x10_0000,
        4096,
        Some(memfd(4096, seals)),
    )
    .expect("read-only map");
    b.dma_map(
        DmaMapFlags::WRITE,
        0,
        0x20_0000,
        4096,
        Some(memfd(4096, seals)),
    )
    .expect("write-only map");
    b.dma_map(
        DmaMapFlags::empty(),
        0,
        0x30_0000,
        4096,
        Some(memfd(4096, seals)),
    )
    .expect("no-access map");
    // A read-only and a write-only mapping count as two; no access, none.
    assert_eq!(b.bus.mappings(), 2);
    let mem = b.bus.snapshot();
    assert!(bus_read(&mem, 0x10_0000, &mut [0u8; 4]));
    assert!(
        !bus_write(&mem, 0x10_0000, &[1u8; 4]),
        "the device wrote a READ-only mapping"
    );
    assert!(
        !bus_read(&mem, 0x20_0000, &mut [0u8; 4]),
        "the device read a WRITE-only mapping"
    );
    assert!(bus_write(&mem, 0x20_0000, &[1u8; 4]));
    assert!(!bus_read(&mem, 0x30_0000, &mut [0u8; 4]) && !bus_write(&mem, 0x30_0000, &[1u8; 4]));
    // Overlapping an existing mapping of either kind is refused.
    assert!(b
        .dma_map(
            DmaMapFlags::READ_WRITE,
            0,
            0x20_0000,
            4096,
            Some(memfd(4096, seals))
        )
        .is_err());
    b.dma_unmap(DmaUnmapFlags::empty(), 0x10_0000, 4096)
        .expect("unmap");
    assert!(!bus_read(&b.bus.snapshot(), 0x10_0000, &mut [0u8; 4]));
}

#[test]
fn dma_mappings_are_bounded() {
    let mut b = backend();
    let pages = MAX_DMA_MAPPINGS as u64 + 1;
    let f = memfd(pages * 4096, libc::F_SEAL_SHRINK);
    let mut refused = None;
    for i in 0..pages {
        let r = b.dma_map(
            DmaMapFlags::READ_WRITE,
            i * 4096,
            0x100_0000 + i * 8192,
            4096,
            Some(f.try_clone().expect("dup")),
        );
        if r.is_err() {
            refused = Some(i);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(MAX_DMA_MAPPINGS as u64),
        "mapping {MAX_DMA_MAPPINGS} + 1 was accepted"
    );
    assert_eq!(b.bus.mappings(), MAX_DMA_MAPPINGS);
    // Unmapping makes room again.
    b.dma_unmap(DmaUnmapFlags::empty(), 0x100_0000, 4096)
        .expect("unmap");
    b.dma_map(DmaMapFlags::READ_WRITE, 0, 0x100_0000, 4096, Some(f))
        .expect("map after unmap");
}

#[test]
fn bus_mastering_follows_the_config_space() {
    let mut b = backend();
    // Power-on: the command register is 0, no DMA.
    assert!(!b.bus.master());
    let mut cmd = [0u8; 2];
    b.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 4, &mut cmd)
        .expect("config read");
    assert_eq!(cmd[0] & 0x04, 0);
    b.region_write(VFIO_PCI_CONFIG_REGION_INDEX, 4, &[0x06, 0])
        .expect("config write");
    assert!(
        b.bus.master(),
        "Bus Master Enable set but the device does not master"
    );
    b.region_write(VFIO_PCI_CONFIG_REGION_INDEX, 4, &[0x02, 0])
        .expect("config write");
    assert!(!b.bus.master());
    // A pin taken with bus mastering off holds no memory.
    b.dma_map(
        DmaMapFlags::READ_WRITE,
        0,
        0,
        4096,
        Some(memfd(4096, libc::F_SEAL_SHRINK)),
    )
    .expect("map");
    assert!(!bus_read(b.bus.pin().mem(), 0, &mut [0u8; 1]));
    b.region_write(VFIO_PCI_CONFIG_REGION_INDEX, 4, &[0x06, 0])
        .expect("config write");
    assert!(bus_read(b.bus.pin().mem(), 0, &mut [0u8; 1]));
}
