//! An in-process bench: a device, host memory, and a minimal "driver" that
//! programs the rings, builds page tables and submits jobs the way the
//! kernel driver does, so tests can run command buffers without a VM.

use crate::device::{Device, DeviceConfig, IrqSink};
use crate::inject::Injector;
use crate::mem::{bus_read, bus_write, Bus, HostMemory};
use crate::mmu::{PAGE_SIZE, PTE_ADDR_MASK, PTE_READ, PTE_VALID, PTE_WRITE};
use crate::regs::*;
use npu_isa::Fault;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// A small deterministic generator (xorshift) for test data, so failures
/// reproduce from their seed. Shared by this crate's tests and libnpu's.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)] // libnpu's tests call it by this name
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform-ish in [-1, 1], in steps of 0.001.
    pub fn f32(&mut self) -> f32 {
        (self.next() % 2001) as f32 / 1000.0 - 1.0
    }
    pub fn i8(&mut self) -> i8 {
        self.next() as i8
    }
    /// In [lo, hi].
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() as usize) % (hi - lo + 1)
    }
}

/// Counts interrupts per vector and wakes waiters.
#[derive(Default)]
pub struct IrqRecorder {
    counts: Mutex<[u64; MSIX_VECTORS as usize]>,
    cv: Condvar,
}

impl IrqSink for IrqRecorder {
    fn raise(&self, vector: u16) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = c.get_mut(vector as usize) {
            *slot += 1;
        }
        self.cv.notify_all();
    }
}

impl IrqRecorder {
    pub fn count(&self, vector: u16) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())[vector as usize]
    }
}

/// One completion record as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub seqno: u64,
    pub status: u32,
    pub context: u16,
    pub fault_addr: u64,
    pub cycles: u32,
    /// The submission ring the job came from (byte 14).
    pub ring: u16,
}

impl Completion {
    pub fn fault(&self) -> Option<Fault> {
        Fault::from_code(self.status)
    }
}

/// How long [`Bench::wait_until`] waits for an event before failing: far
/// beyond anything a working device needs, even on a loaded machine.
pub const EVENT_BOUND: Duration = Duration::from_secs(30);

/// Bus layout of the bench's host memory.
const RING_AREA: u64 = 0x1000;
const SQ_BASE: u64 = RING_AREA;
const CQ_BASE: u64 = RING_AREA + 0x10000;
const CTX_TABLE: u64 = RING_AREA + 0x20000;
const SHADOW_PAGE: u64 = 0x3f000;
const POOL_START: u64 = 0x40000;

pub struct Bench {
    pub device: Device,
    pub irq: Arc<IrqRecorder>,
    mem: Arc<HostMemory>,
    mem_size: u64,
    next_page: u64,
    roots: Vec<u64>,
    pub sq_size: u32,
    pub cq_size: u32,
    sq_tail: u32,
    /// Rings 1.. : (bus base, size, the bench's tail); size 0 = disabled.
    rings: [(u64, u32, u32); RINGS],
    cq_head: u32,
    next_seqno: u64,
    /// The shadow doorbell page in use (0: none), see [`Bench::use_shadow`].
    shadow: u64,
    /// DOORBELL writes made by `submit_raw`.
    pub doorbells: u64,
}

/// Whether moving the tail from `old` to `new` passes the event index the
/// device published (the NVMe/virtio event-index rule).
pub fn need_doorbell(event: u32, new: u32, old: u32) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl Bench {
    /// A bench with `mem_mib` MiB of host memory and a device configured by
    /// `config`, rings of 64 entries, context 0 set up.
    pub fn new(config: DeviceConfig, mem_mib: u64) -> Self {
        Self::with_options(config, mem_mib, 64, 64, Injector::default())
    }

    pub fn with_options(
        config: DeviceConfig,
        mem_mib: u64,
        sq_size: u32,
        cq_size: u32,
        inject: Injector,
    ) -> Self {
        let mem_size = mem_mib << 20;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size as usize)])
            .unwrap_or_else(|e| panic!("test bench: cannot allocate {mem_mib} MiB: {e}"));
        let bus = Bus::new(mem);
        let irq = Arc::new(IrqRecorder::default());
        let contexts = config.contexts;
        let device = Device::new(config, bus.clone(), irq.clone(), inject);
        let mut b = Bench {
            device,
            irq,
            mem: bus.snapshot(),
            mem_size,
            next_page: POOL_START,
            roots: vec![],
            sq_size,
            cq_size,
            sq_tail: 0,
            rings: [(0, 0, 0); RINGS],
            cq_head: 0,
            next_seqno: 1,
            shadow: 0,
            doorbells: 0,
        };
        for _ in 0..contexts.min(4) {
            let root = b.alloc_page();
            b.roots.push(root);
        }
        b.write_context(0, b.roots[0] | PTE_VALID);
        b.program_rings();
        b
    }

    /// Ring and context-table registers, then enable (as after a reset).
    pub fn program_rings(&mut self) {
        let d = &self.device;
        d.mmio_write(SQ_BASE_LO, SQ_BASE as u32);
        d.mmio_write(SQ_BASE_HI, 0);
        d.mmio_write(SQ_SIZE, self.sq_size);
        d.mmio_write(CQ_BASE_LO, CQ_BASE as u32);
        d.mmio_write(CQ_BASE_HI, 0);
        d.mmio_write(CQ_SIZE, self.cq_size);
        for (n, &(base, size, _)) in self.rings.iter().enumerate().skip(1) {
            d.mmio_write(ring_reg(n, RING_SQ_BASE_LO), base as u32);
            d.mmio_write(ring_reg(n, RING_SQ_BASE_HI), (base >> 32) as u32);
            d.mmio_write(ring_reg(n, RING_SQ_SIZE), size);
        }
        d.mmio_write(CTX_TABLE_LO, CTX_TABLE as u32);
        d.mmio_write(CTX_TABLE_HI, 0);
        d.mmio_write(IRQ_MASK, IRQ_ALL);
        if self.shadow != 0 {
            bus_write(&self.mem, self.shadow, &[0u8; PAGE_SIZE as usize]);
        }
        d.mmio_write(SHADOW_LO, self.shadow as u32);
        d.mmio_write(SHADOW_HI, (self.shadow >> 32) as u32);
        d.mmio_write(CONTROL, CONTROL_ENABLE);
        self.sq_tail = 0;
        for r in self.rings.iter_mut() {
            r.2 = 0;
        }
        self.cq_head = 0;
        // Clear stale records so phase bits start from a known state.
        let zero = vec![0u8; (self.cq_size as u64 * CQ_ENTRY_SIZE) as usize];
        bus_write(&self.mem, CQ_BASE, &zero);
    }

    /// Switch to the shadow doorbell page at `page` (4 KiB aligned; the
    /// bench's own page when None), reprogramming the rings.
    pub fn use_shadow(&mut self, page: Option<u64>) {
        self.device.mmio_write(CONTROL, 0);
        self.shadow = page.unwrap_or(SHADOW_PAGE);
        self.program_rings();
    }

    /// The SQ_EVENT word of the shadow page (where the CP last went idle).
    pub fn shadow_event(&self) -> u32 {
        let mut e = [0u8; 4];
        bus_read(&self.mem, self.shadow + SHADOW_SQ_EVENT, &mut e);
        u32::from_le_bytes(e)
    }

    /// Soft reset and re-initialisation, as a driver's recovery does.
    pub fn reset(&mut self) {
        self.device.mmio_write(CONTROL, CONTROL_SOFT_RESET);
        self.wait_until("RESET_DONE after a soft reset", |b| {
            b.device.mmio_read(STATUS) & STATUS_RESET_DONE != 0
        });
        self.program_rings();
    }

    /// Wait until `cond` holds: an event the device shows in its registers
    /// or in memory. Woken by every interrupt and re-checked each
    /// millisecond; [`EVENT_BOUND`] only turns a device that never gets
    /// there into a failure naming `what`, it is not a timing assertion.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut(&Bench) -> bool) {
        let deadline = Instant::now() + EVENT_BOUND;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "waited {EVENT_BOUND:?} for {what}"
            );
            let c = self.irq.counts.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.irq.cv.wait_timeout(c, Duration::from_millis(1));
        }
    }

    pub fn write_context(&mut self, ctx: u16, desc: u64) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&desc.to_le_bytes());
        bus_write(&self.mem, CTX_TABLE + ctx as u64 * CTX_DESC_SIZE, &d);
    }

    /// Give context `ctx` its own (empty) page tables.
    pub fn enable_context(&mut self, ctx: u16) {
        while self.roots.len() <= ctx as usize {
            let r = self.alloc_page();
            self.roots.push(r);
        }
        self.write_context(ctx, self.roots[ctx as usize] | PTE_VALID);
    }

    fn alloc_page(&mut self) -> u64 {
        alloc_zeroed_page(&self.mem, &mut self.next_page, self.mem_size)
    }

    /// Map `size` bytes at `va` in context `ctx` to fresh zeroed host pages.
    pub fn map(&mut self, ctx: u16, va: u64, size: u64, writable: bool) {
        assert_eq!(va % PAGE_SIZE, 0);
        let flags = PTE_VALID | PTE_READ | if writable { PTE_WRITE } else { 0 };
        for page in (0..size.div_ceil(PAGE_SIZE)).map(|i| va + i * PAGE_SIZE) {
            let frame = self.alloc_page();
            self.set_pte(ctx, page, frame | flags);
        }
    }

    /// Set the level-0 entry for `va`, creating intermediate tables.
    pub fn set_pte(&mut self, ctx: u16, va: u64, pte: u64) {
        let (mem, next, size) = (&self.mem, &mut self.next_page, self.mem_size);
        set_pte(mem, self.roots[ctx as usize], va, pte, || {
            alloc_zeroed_page(mem, next, size)
        });
    }

    fn pa_of(&self, ctx: u16, va: u64) -> u64 {
        let mut table = self.roots[ctx as usize];
        for level in [2u32, 1, 0] {
            let idx = (va >> (12 + 9 * level)) & 0x1ff;
            let mut e = [0u8; 8];
            bus_read(&self.mem, table + idx * 8, &mut e);
            let entry = u64::from_le_bytes(e);
            assert!(entry & PTE_VALID != 0, "bench: va {va:#x} not mapped");
            table = entry & PTE_ADDR_MASK;
        }
        table | (va % PAGE_SIZE)
    }

    /// Copy into NPU memory of `ctx` from the host side (like a CPU mmap).
    pub fn write(&self, ctx: u16, va: u64, data: &[u8]) {
        for (i, chunk) in split_pages(va, data.len()) {
            bus_write(
                &self.mem,
                self.pa_of(ctx, va + i as u64),
                &data[i..i + chunk],
            );
        }
    }

    pub fn read(&self, ctx: u16, va: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (i, chunk) in split_pages(va, len) {
            bus_read(
                &self.mem,
                self.pa_of(ctx, va + i as u64),
                &mut out[i..i + chunk],
            );
        }
        out
    }

    /// Queue a job on ring 0 without waiting; returns its seqno.
    pub fn submit_raw(&mut self, ctx: u16, cmdbuf_va: u64, size: u32, flags: u16) -> u64 {
        self.submit_to(0, ctx, cmdbuf_va, size, flags, 0)
    }

    /// Give ring `n` (1..) `size` entries of fresh host memory (0: disable
    /// it), then soft-reset, reprogram and re-enable the device.
    pub fn set_ring(&mut self, n: usize, size: u32) {
        assert!((1..RINGS).contains(&n), "bench: ring {n}");
        let base = if size == 0 {
            0
        } else {
            self.alloc_bus(size as u64 * SQ_ENTRY_SIZE)
        };
        self.rings[n] = (base, size, 0);
        self.reset();
    }

    /// Queue a job on ring `ring` and ring its doorbell (or publish the
    /// tail in the shadow page, ringing only when the event rule says so);
    /// returns its seqno. `profile` goes to bytes 24..31.
    pub fn submit_to(
        &mut self,
        ring: usize,
        ctx: u16,
        cmdbuf_va: u64,
        size: u32,
        flags: u16,
        profile: u64,
    ) -> u64 {
        let old = self.ring_tail(ring);
        let seqno = self.queue_to(ring, ctx, cmdbuf_va, size, flags, profile);
        self.publish(ring, old);
        seqno
    }

    /// Write a submission entry to ring `ring` and advance the bench's tail
    /// for it, without telling the device (see [`Bench::publish`]).
    pub fn queue_to(
        &mut self,
        ring: usize,
        ctx: u16,
        cmdbuf_va: u64,
        size: u32,
        flags: u16,
        profile: u64,
    ) -> u64 {
        let seqno = self.next_seqno;
        self.next_seqno += 1;
        let mut e = [0u8; 64];
        e[0..8].copy_from_slice(&seqno.to_le_bytes());
        e[8..16].copy_from_slice(&cmdbuf_va.to_le_bytes());
        e[16..20].copy_from_slice(&size.to_le_bytes());
        e[20..22].copy_from_slice(&ctx.to_le_bytes());
        e[22..24].copy_from_slice(&flags.to_le_bytes());
        e[24..32].copy_from_slice(&profile.to_le_bytes());
        let (base, size, tail) = if ring == 0 {
            (SQ_BASE, self.sq_size, self.sq_tail)
        } else {
            self.rings[ring]
        };
        assert!(size != 0, "bench: ring {ring} is disabled");
        bus_write(&self.mem, base + (tail % size) as u64 * SQ_ENTRY_SIZE, &e);
        let new = tail.wrapping_add(1);
        if ring == 0 {
            self.sq_tail = new;
        } else {
            self.rings[ring].2 = new;
        }
        seqno
    }

    /// The bench's tail of ring `ring` (what it has queued).
    pub fn ring_tail(&self, ring: usize) -> u32 {
        if ring == 0 {
            self.sq_tail
        } else {
            self.rings[ring].2
        }
    }

    /// Tell the device about ring `ring`'s entries queued since its tail
    /// was `old`: DOORBELL, or with a shadow page the page's SQ_TAIL and a
    /// DOORBELL only when the event index says the CP sleeps.
    pub fn publish(&mut self, ring: usize, old: u32) {
        let tail = self.ring_tail(ring);
        if self.shadow != 0 {
            bus_write(
                &self.mem,
                self.shadow + shadow_sq_tail(ring),
                &tail.to_le_bytes(),
            );
            // The tail before the event read, against the CP's event write
            // before its tail read.
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            let mut e = [0u8; 4];
            bus_read(&self.mem, self.shadow + shadow_sq_event(ring), &mut e);
            if !need_doorbell(u32::from_le_bytes(e), tail, old) {
                return;
            }
        }
        self.doorbells += 1;
        self.device.mmio_write(ring_reg(ring, RING_DOORBELL), tail);
    }

    /// `bytes` of zeroed host memory (whole pages); its bus address.
    pub fn alloc_bus(&mut self, bytes: u64) -> u64 {
        let first = self.alloc_page();
        for _ in 1..bytes.div_ceil(PAGE_SIZE) {
            self.alloc_page();
        }
        first
    }

    /// Write host memory at a bus address (like the CPU).
    pub fn mem_write(&self, addr: u64, data: &[u8]) {
        assert!(
            bus_write(&self.mem, addr, data),
            "bench: bus address {addr:#x}"
        );
    }

    /// Read host memory at a bus address.
    pub fn mem_read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        assert!(
            bus_read(&self.mem, addr, &mut out),
            "bench: bus address {addr:#x}"
        );
        out
    }

    /// Size of host memory in bytes (bus addresses 0..this).
    pub fn mem_size(&self) -> u64 {
        self.mem_size
    }

    /// Next completion record, waiting up to `timeout`.
    pub fn wait_completion(&mut self, timeout: Duration) -> Option<Completion> {
        let deadline = Instant::now() + timeout;
        let slot = self.cq_head % self.cq_size;
        let phase = (self.cq_head / self.cq_size).is_multiple_of(2) as u32;
        let addr = CQ_BASE + slot as u64 * CQ_ENTRY_SIZE;
        loop {
            // Interrupts raised so far: one raised after the ring is read
            // below must not be slept through.
            let raised: u64 = self
                .irq
                .counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .sum();
            let mut r = [0u8; 32];
            bus_read(&self.mem, addr, &mut r);
            let flags = u32::from_le_bytes([r[28], r[29], r[30], r[31]]);
            if flags & 1 == phase {
                self.cq_head = self.cq_head.wrapping_add(1);
                if self.shadow != 0 {
                    bus_write(
                        &self.mem,
                        self.shadow + SHADOW_CQ_HEAD,
                        &self.cq_head.to_le_bytes(),
                    );
                }
                // A CP stalled on a full ring waits for the register.
                let queued = self
                    .rings
                    .iter()
                    .fold(self.sq_tail, |q, r| q.wrapping_add(r.2));
                let was_full = queued.wrapping_sub(self.cq_head.wrapping_sub(1)) > self.cq_size;
                if self.shadow == 0 || was_full {
                    self.device.mmio_write(CQ_HEAD, self.cq_head);
                }
                return Some(Completion {
                    seqno: u64::from_le_bytes(r[0..8].try_into().unwrap_or([0; 8])),
                    status: u32::from_le_bytes([r[8], r[9], r[10], r[11]]),
                    context: u16::from_le_bytes([r[12], r[13]]),
                    fault_addr: u64::from_le_bytes(r[16..24].try_into().unwrap_or([0; 8])),
                    cycles: u32::from_le_bytes([r[24], r[25], r[26], r[27]]),
                    ring: u16::from_le_bytes([r[14], r[15]]),
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Wait for the next interrupt (or poll again shortly).
            let c = self.irq.counts.lock().unwrap_or_else(|p| p.into_inner());
            if c.iter().sum::<u64>() == raised {
                let _ = self.irq.cv.wait_timeout(c, Duration::from_millis(2));
            }
        }
    }

    /// Place `cmdbuf` at `va` (mapped read-only) in `ctx`, run it, wait.
    pub fn run(&mut self, ctx: u16, va: u64, cmdbuf: &[u8]) -> Completion {
        self.map(ctx, va, cmdbuf.len() as u64, false);
        self.write(ctx, va, cmdbuf);
        let seqno = self.submit_raw(ctx, va, cmdbuf.len() as u32, 0);
        let c = self
            .wait_completion(Duration::from_secs(30))
            .expect("job did not complete");
        assert_eq!(c.seqno, seqno);
        // Acknowledge like a driver, so later edges raise interrupts again.
        self.device.mmio_write(IRQ_ACK, IRQ_ALL);
        c
    }
}

fn alloc_zeroed_page(mem: &HostMemory, next: &mut u64, mem_size: u64) -> u64 {
    let p = *next;
    assert!(p + PAGE_SIZE <= mem_size, "test bench out of host memory");
    *next += PAGE_SIZE;
    bus_write(mem, p, &[0u8; PAGE_SIZE as usize]);
    p
}

/// Set the level-0 entry for `va` in the three-level tables under `root`
/// (npu-hw.rst, "Context table and MMU"), creating missing tables with `new_table`, which
/// returns the bus address of a zeroed page. The bench's and the fuzz
/// targets' page-table builder.
pub fn set_pte(mem: &HostMemory, root: u64, va: u64, pte: u64, mut new_table: impl FnMut() -> u64) {
    let mut table = root;
    for level in [2u32, 1] {
        let slot = table + ((va >> (12 + 9 * level)) & 0x1ff) * 8;
        let mut e = [0u8; 8];
        bus_read(mem, slot, &mut e);
        let mut entry = u64::from_le_bytes(e);
        if entry & PTE_VALID == 0 {
            entry = new_table() | PTE_VALID;
            bus_write(mem, slot, &entry.to_le_bytes());
        }
        table = entry & PTE_ADDR_MASK;
    }
    bus_write(mem, table + ((va >> 12) & 0x1ff) * 8, &pte.to_le_bytes());
}

fn split_pages(va: u64, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        if i >= len {
            return None;
        }
        let cur = va + i as u64;
        let n = ((PAGE_SIZE - cur % PAGE_SIZE) as usize).min(len - i);
        let r = (i, n);
        i += n;
        Some(r)
    })
}
