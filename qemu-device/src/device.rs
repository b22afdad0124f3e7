//! The device: BAR0 registers, the rings, the command-processor thread and
//! interrupt generation. Independent of how it is attached (vfio-user server
//! or an in-process test).

use crate::cost::CostModel;
use crate::exec::{Executor, JobControl, JobOutcome};
use crate::inject::{Action, Injector};
use crate::mem::{bus_read, bus_write, Bus, HostMemory, Pin};
use crate::mmu::{Mmu, PTE_ADDR_MASK, PTE_VALID};
use crate::regs::*;
use npu_isa::{Fault, INSN_SIZE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where interrupts go: eventfds in the server, a recorder in tests.
pub trait IrqSink: Send + Sync {
    fn raise(&self, vector: u16);
}

/// Static configuration of one device instance.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    pub sram_size: u32,
    pub contexts: u32,
    pub cost: CostModel,
    /// With a shadow doorbell page: how long the CP keeps polling the
    /// page's SQ tails after the rings ran dry before it publishes SQ_EVENT
    /// and sleeps (Documentation/hw/npu-hw.rst, "Shadow doorbells"). Zero:
    /// it sleeps at once.
    pub idle_poll: Duration,
}

/// Default of [`DeviceConfig::idle_poll`]: none. The emulated CP's
/// polling takes host CPU from the guest's vCPUs: on a loaded 2-core host
/// it made one process's queues and the round trip slower while it spared
/// deep queues of several processes most doorbells; 50 us (longer than a
/// driver takes between two submissions while it keeps a queue filled) is
/// the value to try where the host has a core to spare.
pub const IDLE_POLL_DEFAULT: Duration = Duration::ZERO;
/// Largest [`DeviceConfig::idle_poll`] (a bound on the CP's polling).
pub const IDLE_POLL_MAX: Duration = Duration::from_secs(1);

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            sram_size: 1 << 20,
            contexts: 16,
            cost: CostModel::default(),
            idle_poll: IDLE_POLL_DEFAULT,
        }
    }
}

/// One submission ring's registers.
#[derive(Clone, Copy, Default)]
struct SqRing {
    base: u64,
    /// 0: the ring is disabled (rings 1.. only; ring 0 must be valid).
    size: u32,
    head: u32,
    tail: u32,
}

#[derive(Default)]
struct State {
    enabled: bool,
    halted: bool,
    reset_done: bool,
    busy: bool,
    irq_status: u32,
    irq_mask: u32,
    /// Submission rings; ring n has priority n.
    rings: [SqRing; RINGS],
    cq_base: u64,
    cq_size: u32,
    cq_head: u32,
    cq_tail: u32,
    ctx_table: u64,
    /// Shadow doorbell page; 0: off.
    shadow: u64,
    /// CONTROL.CQ_EVENT: JOB_DONE by the completion event index.
    cq_event: bool,
    fault_status: u32,
    fault_context: u32,
    fault_addr: u64,
    perf: [u64; PERF_COUNTERS],
    /// Bumped by every soft reset: a job that started in an older epoch
    /// has been aborted and must not report.
    epoch: u64,
    /// An injected hang holds the CP until the next reset.
    hung: bool,
    shutdown: bool,
    /// The CP is between taking a submission entry and finishing with it:
    /// it may be touching host memory.
    cp_in_job: bool,
    /// A soft reset waits for the CP to leave its job, and for an injected
    /// slow reset's delay, before RESET_DONE.
    reset_waits_cp: bool,
    reset_waits_delay: bool,
    ring_error: u32,
    ring_error_value: u32,
    /// Bumped by `Device::end_delays`: an injected delay in progress ends.
    delay_epoch: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    bus: Bus,
    irq: Arc<dyn IrqSink>,
    config: DeviceConfig,
    /// Shared with the control socket, which edits rules at run time.
    inject: Arc<Mutex<Injector>>,
    /// Mirrors State::epoch for lock-free abort checks during a job.
    epoch: AtomicU64,
}

/// A running device. Dropping it stops the command processor.
pub struct Device {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Device {
    /// A device whose command processor thread failed to start panics;
    /// see [`Device::try_new`].
    pub fn new(config: DeviceConfig, bus: Bus, irq: Arc<dyn IrqSink>, inject: Injector) -> Self {
        Self::try_new(config, bus, irq, inject).unwrap_or_else(|e| panic!("npu device: {e}"))
    }

    /// A device, or the error that kept its command-processor thread from
    /// starting.
    pub fn try_new(
        config: DeviceConfig,
        bus: Bus,
        irq: Arc<dyn IrqSink>,
        inject: Injector,
    ) -> std::io::Result<Self> {
        Self::with_spawner(config, bus, irq, inject, |b, f| b.spawn(f))
    }

    /// As [`Device::try_new`], with the thread start made by `spawn` (tests
    /// make it fail).
    pub fn with_spawner(
        config: DeviceConfig,
        bus: Bus,
        irq: Arc<dyn IrqSink>,
        inject: Injector,
        spawn: impl FnOnce(
            std::thread::Builder,
            Box<dyn FnOnce() + Send>,
        ) -> std::io::Result<JoinHandle<()>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                reset_done: true,
                ..Default::default()
            }),
            wake: Condvar::new(),
            bus,
            irq,
            config,
            inject: Arc::new(Mutex::new(inject)),
            epoch: AtomicU64::new(0),
        });
        let s = shared.clone();
        let builder = std::thread::Builder::new().name("npu-cp".into());
        let worker = spawn(builder, Box::new(move || command_processor(s))).map_err(|e| {
            log::error!("cannot start the command-processor thread: {e}");
            std::io::Error::new(
                e.kind(),
                format!("cannot start the command-processor thread: {e}"),
            )
        })?;
        Ok(Device {
            shared,
            worker: Some(worker),
        })
    }

    /// The PCI command register's Bus Master Enable (the vfio-user server
    /// forwards config-space writes). Turning it off returns once the CP
    /// has stopped touching host memory.
    pub fn set_bus_master(&self, on: bool) {
        // Not under the state lock: the CP needs it to let go of memory.
        self.shared.bus.set_master(on);
        let _s = self.shared.lock();
        self.shared.wake.notify_all();
    }

    /// The fault-injection rules, for changing them while the device runs
    /// (the server's `--control` socket).
    pub fn injector(&self) -> Arc<Mutex<Injector>> {
        self.shared.inject.clone()
    }

    pub fn bus(&self) -> &Bus {
        &self.shared.bus
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.shared.config
    }

    /// A 32-bit register read at a BAR0 offset.
    pub fn mmio_read(&self, offset: u32) -> u32 {
        let cfg = &self.shared.config;
        let s = self.shared.lock();
        if let Some((n, reg)) = ring_reg_of(offset) {
            let r = &s.rings[n];
            return match reg {
                RING_SQ_BASE_LO => r.base as u32,
                RING_SQ_BASE_HI => (r.base >> 32) as u32,
                RING_SQ_SIZE => r.size,
                RING_SQ_HEAD => r.head,
                RING_SQ_TAIL => r.tail,
                _ => 0, // DOORBELL is write-only
            };
        }
        match offset {
            ID => ID_VALUE,
            VERSION => VERSION_VALUE,
            CAPS => {
                let inj = if self
                    .shared
                    .inject
                    .lock()
                    .map(|i| i.is_armed())
                    .unwrap_or(false)
                {
                    CAP_FAULT_INJECTION
                } else {
                    0
                };
                CAP_F32
                    | CAP_INT8
                    | CAP_POOL
                    | CAP_SHADOW_DOORBELL
                    | CAP_MULTI_RING
                    | CAP_JOB_PROFILE
                    | CAP_CQ_EVENT
                    | inj
            }
            SRAM_SIZE => cfg.sram_size,
            NUM_CONTEXTS => cfg.contexts,
            VA_BITS => VA_BITS_VALUE,
            CLOCK_KHZ => CLOCK_KHZ_VALUE,
            NUM_RINGS => RINGS as u32,
            CONTROL => (s.enabled as u32 * CONTROL_ENABLE) | (s.cq_event as u32 * CONTROL_CQ_EVENT),
            STATUS => {
                (s.enabled as u32 * STATUS_ENABLED)
                    | (s.reset_done as u32 * STATUS_RESET_DONE)
                    | (s.busy as u32 * STATUS_BUSY)
                    | (s.halted as u32 * STATUS_HALTED)
            }
            IRQ_STATUS => s.irq_status,
            IRQ_MASK => s.irq_mask,
            CQ_BASE_LO => s.cq_base as u32,
            CQ_BASE_HI => (s.cq_base >> 32) as u32,
            CQ_SIZE => s.cq_size,
            CQ_HEAD => s.cq_head,
            CQ_TAIL => s.cq_tail,
            CTX_TABLE_LO => s.ctx_table as u32,
            CTX_TABLE_HI => (s.ctx_table >> 32) as u32,
            SHADOW_LO => s.shadow as u32,
            SHADOW_HI => (s.shadow >> 32) as u32,
            FAULT_STATUS => s.fault_status,
            FAULT_CONTEXT => s.fault_context,
            FAULT_ADDR_LO => s.fault_addr as u32,
            FAULT_ADDR_HI => (s.fault_addr >> 32) as u32,
            RING_ERROR => s.ring_error,
            RING_ERROR_VALUE => s.ring_error_value,
            o if (COST_BASE..COST_BASE + crate::cost::COST_REGISTERS as u32 * 4).contains(&o)
                && o % 4 == 0 =>
            {
                cfg.cost.registers()[((o - COST_BASE) / 4) as usize]
            }
            o if (PERF_BASE..PERF_BASE + PERF_COUNTERS as u32 * 8).contains(&o) && o % 4 == 0 => {
                let i = ((o - PERF_BASE) / 8) as usize;
                let v = s.perf[i];
                if (o - PERF_BASE).is_multiple_of(8) {
                    v as u32
                } else {
                    (v >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    /// A 32-bit register write at a BAR0 offset.
    pub fn mmio_write(&self, offset: u32, value: u32) {
        let sh = &self.shared;
        let mut s = sh.lock();
        let set_lo = |r: &mut u64| *r = (*r & !0xffff_ffff) | value as u64;
        let set_hi = |r: &mut u64| *r = (*r & 0xffff_ffff) | (value as u64) << 32;
        // Ring geometry is programmable only while disabled.
        let cfg_ok = !s.enabled;
        if let Some((n, reg)) = ring_reg_of(offset) {
            let shadow = s.shadow != 0;
            let r = &mut s.rings[n];
            match reg {
                RING_SQ_BASE_LO if cfg_ok => set_lo(&mut r.base),
                RING_SQ_BASE_HI if cfg_ok => set_hi(&mut r.base),
                RING_SQ_SIZE if cfg_ok => r.size = value,
                RING_DOORBELL => {
                    if shadow && late_doorbell(r, value) {
                        // Superseded by the page's tail: only a wake-up.
                        sh.wake.notify_all();
                    } else if tail_ok(r, value) {
                        r.tail = value;
                        sh.wake.notify_all();
                    } else {
                        sh.ring_error(&mut s, ring_error_doorbell(n), value);
                    }
                }
                _ => {}
            }
            return;
        }
        match offset {
            CONTROL => {
                if value & CONTROL_SOFT_RESET != 0 {
                    drop(s);
                    self.soft_reset();
                    return;
                }
                s.cq_event = value & CONTROL_CQ_EVENT != 0;
                let want = value & CONTROL_ENABLE != 0;
                if want && !s.enabled && !s.halted {
                    if rings_valid(&s) {
                        s.enabled = true;
                        s.reset_done = false;
                        sh.wake.notify_all();
                    } else {
                        s.halted = true;
                        sh.raise(&mut s, IRQ_DEVICE_ERROR);
                    }
                } else if !want {
                    s.enabled = false;
                }
            }
            IRQ_MASK => {
                let newly = value & !s.irq_mask & s.irq_status;
                s.irq_mask = value & IRQ_ALL;
                // Unmasking a pending cause delivers it now.
                sh.send(&mut s, newly & IRQ_ALL);
            }
            IRQ_ACK => s.irq_status &= !value,
            RING_ERROR => s.ring_error &= !value,
            CQ_BASE_LO if cfg_ok => set_lo(&mut s.cq_base),
            CQ_BASE_HI if cfg_ok => set_hi(&mut s.cq_base),
            CQ_SIZE if cfg_ok => s.cq_size = value,
            CQ_HEAD => {
                if head_ok(&s, value) {
                    s.cq_head = value;
                    sh.wake.notify_all();
                } else {
                    sh.ring_error(&mut s, RING_ERROR_CQ_HEAD, value);
                }
            }
            CTX_TABLE_LO if cfg_ok => set_lo(&mut s.ctx_table),
            CTX_TABLE_HI if cfg_ok => set_hi(&mut s.ctx_table),
            SHADOW_LO if cfg_ok => set_lo(&mut s.shadow),
            SHADOW_HI if cfg_ok => set_hi(&mut s.shadow),
            _ => {}
        }
    }

    /// CONTROL.SOFT_RESET: abort the running job, clear the rings' state.
    pub fn soft_reset(&self) {
        let sh = &self.shared;
        let delay = sh
            .inject
            .lock()
            .map(|mut i| i.take_reset_delay())
            .unwrap_or(0);
        let mut s = sh.lock();
        s.epoch += 1;
        sh.epoch.store(s.epoch, Ordering::SeqCst);
        s.enabled = false;
        s.cq_event = false;
        s.halted = false;
        s.hung = false;
        s.busy = false;
        for r in s.rings.iter_mut() {
            r.head = 0;
            r.tail = 0;
        }
        s.cq_head = 0;
        s.cq_tail = 0;
        s.irq_status = 0;
        s.fault_status = 0;
        s.fault_context = 0;
        s.fault_addr = 0;
        s.ring_error = 0;
        s.ring_error_value = 0;
        s.reset_done = false;
        // RESET_DONE only once the CP has left the aborted job (it checks
        // the epoch at least once per DMA row, output row or MATMUL block).
        s.reset_waits_cp = s.cp_in_job;
        s.reset_waits_delay = delay != 0;
        sh.wake.notify_all();
        sh.finish_reset(&mut s);
        if delay != 0 {
            // An injected slow reset finishes later, unless another reset
            // overtakes it.
            let epoch = s.epoch;
            drop(s);
            let timer_sh = self.shared.clone();
            let timer = std::thread::Builder::new()
                .name("npu-slow-reset".into())
                .spawn(move || {
                    let sh = timer_sh;
                    std::thread::sleep(Duration::from_millis(delay as u64));
                    let mut s = sh.lock();
                    if s.epoch == epoch {
                        s.reset_waits_delay = false;
                        sh.finish_reset(&mut s);
                    }
                });
            if let Err(e) = timer {
                log::error!("slow-reset timer thread: {e}; finishing the reset now");
                let sh = &self.shared;
                let mut s = sh.lock();
                s.reset_waits_delay = false;
                sh.finish_reset(&mut s);
            }
        }
    }

    /// End every injected delay in progress now (the control socket's
    /// `clear`): the delayed job writes its record at once.
    pub fn end_delays(&self) {
        self.delay_ender().end_delays();
    }

    /// A handle that ends injected delays, for the control socket's thread.
    pub fn delay_ender(&self) -> DelayEnder {
        DelayEnder(self.shared.clone())
    }

    /// Performance counter value.
    pub fn perf(&self, c: PerfCounter) -> u64 {
        self.shared.lock().perf[c as usize]
    }
}

/// Ends injected delays in progress (see [`Device::end_delays`]).
#[derive(Clone)]
pub struct DelayEnder(Arc<Shared>);

impl DelayEnder {
    pub fn end_delays(&self) {
        let mut s = self.0.lock();
        s.delay_epoch = s.delay_epoch.wrapping_add(1);
        self.0.wake.notify_all();
    }
}

/// One control-socket line (Documentation/hw/npu-hw.rst, "Fault
/// injection") applied to a running device: [`crate::inject::control_line`]
/// on its rules, and a successful `clear` also ends a delay in progress.
pub fn control(inject: &Mutex<Injector>, delays: &DelayEnder, line: &str) -> String {
    let reply = match inject.lock() {
        Ok(mut inj) => crate::inject::control_line(&mut inj, line),
        Err(_) => "error: injector unavailable".into(),
    };
    if line.trim() == "clear" && reply == "ok" {
        delays.end_delays();
    }
    reply
}

impl Drop for Device {
    fn drop(&mut self) {
        {
            let mut s = self.shared.lock();
            s.shutdown = true;
            // A running job stops at its next poll.
            s.epoch += 1;
            self.shared.epoch.store(s.epoch, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn ring_size_ok(n: u32) -> bool {
    n.is_power_of_two() && (RING_MIN..=RING_MAX).contains(&n)
}

/// A new SQ tail may be at most SQ_SIZE entries ahead of SQ_HEAD (and not
/// behind it): anything else would replay stale slots. A disabled ring
/// (size 0) accepts only its head.
fn tail_ok(r: &SqRing, tail: u32) -> bool {
    tail.wrapping_sub(r.head) <= r.size
}

/// With a shadow page: whether a DOORBELL value is one the page has
/// overtaken, at most SQ_SIZE entries behind the tail the CP knows. A
/// doorbell is a posted write and the page is read by DMA, so the CP may
/// have taken a later submitter's tail from the page (and run past this
/// value) before the doorbell arrives: it must neither move the tail back
/// nor count as an error (`Shadow doorbells`).
fn late_doorbell(r: &SqRing, value: u32) -> bool {
    let behind = r.tail.wrapping_sub(value);
    behind != 0 && behind <= r.size
}

/// Whether ring `n` takes part: ring 0 always (ENABLE checked it), the
/// others while their SQ_SIZE is not 0.
fn ring_enabled(n: usize, r: &SqRing) -> bool {
    n == 0 || r.size != 0
}

/// The ring the CP takes its next job from: the highest-numbered enabled
/// ring with an entry (strict priority).
fn next_ring(s: &State) -> Option<usize> {
    (0..RINGS).rev().find(|&n| {
        let r = &s.rings[n];
        ring_enabled(n, r) && r.size != 0 && r.head != r.tail
    })
}

/// A new CQ head may not pass CQ_TAIL, nor be more than CQ_SIZE behind it.
fn head_ok(s: &State, head: u32) -> bool {
    s.cq_tail.wrapping_sub(head) <= s.cq_size
}

fn rings_valid(s: &State) -> bool {
    let aligned = |a: u64| a.is_multiple_of(4096);
    let sq_ok = s
        .rings
        .iter()
        .enumerate()
        .all(|(n, r)| (n != 0 && r.size == 0) || (ring_size_ok(r.size) && aligned(r.base)));
    sq_ok
        && ring_size_ok(s.cq_size)
        && aligned(s.cq_base)
        && aligned(s.ctx_table)
        && aligned(s.shadow)
}

/// The shadow doorbell page: take the driver's SQ tails (of the enabled
/// rings) and CQ head from it as if written to DOORBELL and CQ_HEAD
/// (out-of-range values are refused the same way). False on a bus error.
fn read_shadow(sh: &Shared, mem: &HostMemory, s: &mut State) -> bool {
    if s.shadow == 0 {
        return true;
    }
    // The tails before the head: a driver publishes the head it freed
    // before the tail of the entries that need the room.
    for n in 0..RINGS {
        if !ring_enabled(n, &s.rings[n]) {
            continue;
        }
        let mut w = [0u8; 4];
        std::sync::atomic::fence(Ordering::Acquire);
        if !bus_read(mem, s.shadow.wrapping_add(shadow_sq_tail(n)), &mut w) {
            return false;
        }
        let tail = u32::from_le_bytes(w);
        let r = &mut s.rings[n];
        if tail_ok(r, tail) {
            r.tail = tail;
        } else if tail != r.tail {
            sh.ring_error(s, ring_error_shadow_tail(n), tail);
        }
    }
    let mut w = [0u8; 4];
    std::sync::atomic::fence(Ordering::Acquire);
    if !bus_read(mem, s.shadow.wrapping_add(SHADOW_CQ_HEAD), &mut w) {
        return false;
    }
    let head = u32::from_le_bytes(w);
    if head_ok(s, head) {
        s.cq_head = head;
    } else if head != s.cq_head {
        sh.ring_error(s, RING_ERROR_SHADOW_CQ_HEAD, head);
    }
    true
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in another thread (there
        // are none by design), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set IRQ_STATUS bits and send the messages their edges call for.
    fn raise(&self, s: &mut State, bits: u32) {
        let rising = bits & !s.irq_status;
        s.irq_status |= bits;
        self.send(s, rising & s.irq_mask);
    }

    fn send(&self, s: &mut State, bits: u32) {
        let mut sent = [false; MSIX_VECTORS as usize];
        for b in 0..IRQ_BITS {
            let bit = 1 << b;
            if bits & bit != 0 {
                sent[vector_of(bit) as usize] = true;
            }
        }
        for (v, &go) in sent.iter().enumerate() {
            if go {
                s.perf[PerfCounter::IrqsSent as usize] += 1;
                self.irq.raise(v as u16);
            }
        }
    }

    /// A rejected ring-pointer write: ignored, reported, the device runs on.
    fn ring_error(&self, s: &mut State, bit: u32, value: u32) {
        log::warn!("ring pointer write refused (RING_ERROR {bit:#x}): {value:#x}");
        s.ring_error |= bit;
        s.ring_error_value = value;
        self.raise(s, IRQ_RING_ERROR);
    }

    /// RESET_DONE, once nothing the reset waits for is left.
    fn finish_reset(&self, s: &mut State) {
        if !s.reset_done && !s.reset_waits_cp && !s.reset_waits_delay {
            s.reset_done = true;
            self.raise(s, IRQ_RESET_DONE);
        }
    }

    /// The CP is done with its job's memory.
    fn leave_job(&self, s: &mut State) {
        s.cp_in_job = false;
        if s.reset_waits_cp {
            s.reset_waits_cp = false;
            self.finish_reset(s);
        }
    }

    fn halt(&self, s: &mut State) {
        log::warn!("device halted: bad ring, context-table or profile-record memory");
        s.halted = true;
        s.enabled = false;
        self.raise(s, IRQ_DEVICE_ERROR);
    }
}

/// The CP's hold on a running job: a reset aborts it; a DMA_UNMAP or bus
/// mastering going off moves it to the memory that is left (so its next
/// access there is a bus error) and lets the revoker return.
struct CpControl<'a> {
    sh: &'a Shared,
    epoch: u64,
    pin: Pin,
}

impl JobControl for CpControl<'_> {
    fn poll(&mut self, mmu: &mut crate::mmu::Mmu) -> Result<(), Fault> {
        if self.sh.epoch.load(Ordering::Acquire) != self.epoch {
            return Err(Fault::Aborted);
        }
        if self.pin.revoked() {
            self.pin = self.sh.bus.pin();
            mmu.set_memory(self.pin.mem_arc());
        }
        Ok(())
    }
}

/// One submission-ring entry, as fetched.
struct Submission {
    seqno: u64,
    cmdbuf: u64,
    size: u32,
    context: u16,
    /// The ring it came from.
    ring: usize,
    /// Bus address of the profile record; Some only for a valid entry with
    /// PROFILE set.
    profile: Option<u64>,
    valid: bool,
}

fn parse_submission(raw: &[u8; 64], ring: usize) -> Submission {
    let u64_at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap_or([0; 8]));
    let size = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]);
    let context = u16::from_le_bytes([raw[20], raw[21]]);
    let flags = u16::from_le_bytes([raw[22], raw[23]]);
    let profile_addr = u64_at(24);
    let profiled = flags & SQ_FLAG_PROFILE != 0;
    let profile_ok = if profiled {
        profile_addr.is_multiple_of(PROFILE_RECORD_SIZE)
    } else {
        profile_addr == 0
    };
    let valid = flags & !SQ_FLAG_PROFILE == 0
        && profile_ok
        && raw[32..].iter().all(|&b| b == 0)
        && size > 0
        && size.is_multiple_of(INSN_SIZE as u32)
        && size <= CMDBUF_MAX;
    Submission {
        seqno: u64_at(0),
        cmdbuf: u64_at(8),
        size,
        context,
        ring,
        profile: (valid && profiled).then_some(profile_addr),
        valid,
    }
}

/// The CP thread: fetch, execute, complete, forever.
fn command_processor(sh: Arc<Shared>) {
    let mut exec = Executor::new(sh.config.sram_size, sh.config.cost);
    let poll = sh.config.idle_poll.min(IDLE_POLL_MAX);
    // How long the rings stayed dry last time: the CP polls only after a
    // spell shorter than `poll` (a driver keeping a queue filled), not
    // after a long one (a driver that waits for each job: it rings).
    let mut last_spell = Duration::ZERO;
    loop {
        // Wait for work: enabled, bus mastering on, an entry pending, room
        // in the completion ring, and no injected hang. Host memory is
        // pinned only while awake, so an unmap never waits for a sleeper.
        let (ring, sqe_addr, epoch, pin) = {
            let mut s = sh.lock();
            let mut pin = sh.bus.pin();
            // Whether SQ_EVENT says the CP sleeps (the driver must ring).
            let mut announced = false;
            // When the rings ran dry this time.
            let mut idle_since: Option<Instant> = None;
            let ring = loop {
                if s.shutdown {
                    return;
                }
                let live = s.enabled && !s.halted && !s.hung && sh.bus.master();
                if live && !read_shadow(&sh, pin.mem(), &mut s) {
                    sh.halt(&mut s);
                    continue;
                }
                let cq_full = s.cq_tail.wrapping_sub(s.cq_head) >= s.cq_size;
                let next = if live && !cq_full {
                    next_ring(&s)
                } else {
                    None
                };
                if let Some(n) = next {
                    if let Some(t) = idle_since {
                        last_spell = t.elapsed();
                    }
                    break n;
                }
                let since = *idle_since.get_or_insert_with(Instant::now);
                // With a shadow page and room for records, after a short
                // last spell, first poll the page for `poll`: a driver that
                // keeps a queue filled publishes its next tail without a
                // doorbell (its event is behind). The host CPU is yielded
                // between looks; a register write is seen at the next one.
                if live
                    && s.shadow != 0
                    && !announced
                    && !cq_full
                    && last_spell < poll
                    && since.elapsed() < poll
                {
                    drop(pin);
                    drop(s);
                    std::thread::yield_now();
                    s = sh.lock();
                    pin = sh.bus.pin();
                    continue;
                }
                // With a shadow page, tell the driver where the CP stopped,
                // then look once more: a tail it published before seeing
                // the event came without a doorbell.
                if live && s.shadow != 0 && !announced {
                    announced = true;
                    for n in 0..RINGS {
                        if !ring_enabled(n, &s.rings[n]) {
                            continue;
                        }
                        let at = s.shadow.wrapping_add(shadow_sq_event(n));
                        if !bus_write(pin.mem(), at, &s.rings[n].head.to_le_bytes()) {
                            sh.halt(&mut s);
                            break;
                        }
                    }
                    std::sync::atomic::fence(Ordering::SeqCst);
                    continue;
                }
                drop(pin);
                s = sh.wake.wait(s).unwrap_or_else(|p| p.into_inner());
                announced = false;
                pin = sh.bus.pin();
            };
            s.busy = true;
            s.cp_in_job = true;
            let r = &s.rings[ring];
            // next_ring() only picks rings with a non-zero size.
            let idx = r.head.checked_rem(r.size).unwrap_or(0);
            // Guest-programmed bases: an address that wraps is simply not in
            // host memory, and the fetch fails as a bus error.
            (
                ring,
                r.base.wrapping_add(idx as u64 * SQ_ENTRY_SIZE),
                s.epoch,
                pin,
            )
        };
        let mut raw = [0u8; 64];
        if !bus_read(pin.mem(), sqe_addr, &mut raw) {
            drop(pin);
            let mut s = sh.lock();
            if s.epoch == epoch {
                s.busy = false;
                sh.halt(&mut s);
            }
            sh.leave_job(&mut s);
            continue;
        }
        let sub = parse_submission(&raw, ring);
        let mut ctl = CpControl {
            sh: &sh,
            epoch,
            pin,
        };
        let outcome = run_submission(&sh, &mut exec, &mut ctl, &sub);
        // The job is done with memory; the record is written below under a
        // fresh pin.
        drop(ctl);
        let action = sh
            .inject
            .lock()
            .ok()
            .and_then(|mut i| i.on_job(&outcome.marks));
        if let Some(Action::Delay(ms)) = action {
            // Interruptible by a reset and by end_delays().
            let s = sh.lock();
            let delays = s.delay_epoch;
            let _ = sh
                .wake
                .wait_timeout_while(s, Duration::from_millis(ms as u64), |s| {
                    s.epoch == epoch && !s.shutdown && s.delay_epoch == delays
                });
        }
        complete(&sh, &sub, outcome, action, epoch);
    }
}

fn run_submission(
    sh: &Shared,
    exec: &mut Executor,
    ctl: &mut CpControl<'_>,
    sub: &Submission,
) -> JobOutcome {
    let fail = |status: Fault, addr: u64| JobOutcome {
        status,
        fault_addr: addr,
        stats: Default::default(),
        marks: vec![],
    };
    if !sub.valid {
        return fail(Fault::BadSubmission, 0);
    }
    if sub.context as u32 >= sh.config.contexts {
        return fail(Fault::BadContext, sub.context as u64);
    }
    let table = sh.lock().ctx_table;
    let mut desc = [0u8; 16];
    if !bus_read(
        ctl.pin.mem(),
        table.wrapping_add(sub.context as u64 * CTX_DESC_SIZE),
        &mut desc,
    ) {
        return fail(Fault::DmaBusError, table);
    }
    let d0 = u64::from_le_bytes(desc[0..8].try_into().unwrap_or([0; 8]));
    let d1 = u64::from_le_bytes(desc[8..16].try_into().unwrap_or([0; 8]));
    if d0 & PTE_VALID == 0 || d0 & !(PTE_ADDR_MASK | PTE_VALID) != 0 || d1 != 0 {
        return fail(Fault::BadContext, sub.context as u64);
    }
    let mut mmu = Mmu::with_memory(ctl.pin.mem_arc(), d0 & PTE_ADDR_MASK);
    exec.run(&mut mmu, sub.cmdbuf, sub.size, ctl)
}

fn complete(sh: &Shared, sub: &Submission, out: JobOutcome, action: Option<Action>, epoch: u64) {
    let mut s = sh.lock();
    // With bus mastering off the record waits until it is on again (or a
    // reset drops it).
    while s.epoch == epoch && !s.shutdown && !sh.bus.master() && action != Some(Action::Hang) {
        s = sh.wake.wait(s).unwrap_or_else(|p| p.into_inner());
    }
    if s.epoch == epoch && !s.shutdown {
        // Pinned under the state lock: an unmap racing with the record
        // waits for it, or the record sees the memory without the region.
        let pin = sh.bus.pin();
        write_record(sh, &mut s, pin.mem(), sub, out, action);
    }
    // Aborted by a reset: no record.
    sh.leave_job(&mut s);
    drop(s);
    sh.wake.notify_all();
}

fn write_record(
    sh: &Shared,
    s: &mut MutexGuard<'_, State>,
    mem: &HostMemory,
    sub: &Submission,
    mut out: JobOutcome,
    action: Option<Action>,
) {
    s.busy = false;
    if action == Some(Action::Hang) {
        s.hung = true;
        return;
    }
    if action == Some(Action::MmuFault) && out.status == Fault::Ok {
        out.status = Fault::MmuUnmapped;
        out.fault_addr = 0xdead000;
    }
    // The guest may have disabled the device and reprogrammed the rings
    // while this job ran; never trust geometry checked before it started.
    if !ring_size_ok(s.cq_size) || !s.cq_base.is_multiple_of(4096) {
        sh.halt(s);
        return;
    }
    // The profile record before the completion record that announces it.
    if let Some(at) = sub.profile {
        let st = &out.stats;
        let words = [
            st.cycles,
            st.instructions,
            st.macs,
            st.dma_read,
            st.dma_written,
            st.dma_engine_cycles,
            st.compute_engine_cycles,
            0,
        ];
        let mut rec = [0u8; PROFILE_RECORD_SIZE as usize];
        for (chunk, w) in rec.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        if !bus_write(mem, at, &rec) {
            sh.halt(s);
            return;
        }
    }
    let ring = &mut s.rings[sub.ring];
    ring.head = ring.head.wrapping_add(1);
    let slot = s.cq_tail % s.cq_size;
    let phase = (s.cq_tail / s.cq_size).is_multiple_of(2) as u32;
    let mut rec = [0u8; 32];
    let (seqno, status) = if action == Some(Action::CorruptCompletion) {
        (sub.seqno ^ 0xbad0_0000_0000_0000, 0xffff_fff0)
    } else {
        (sub.seqno, out.status.code())
    };
    rec[0..8].copy_from_slice(&seqno.to_le_bytes());
    rec[8..12].copy_from_slice(&status.to_le_bytes());
    rec[12..14].copy_from_slice(&sub.context.to_le_bytes());
    rec[14..16].copy_from_slice(&(sub.ring as u16).to_le_bytes());
    rec[16..24].copy_from_slice(&out.fault_addr.to_le_bytes());
    rec[24..28].copy_from_slice(&(out.stats.cycles.min(u32::MAX as u64) as u32).to_le_bytes());
    let written = s.cq_tail;
    let addr = s.cq_base.wrapping_add(slot as u64 * CQ_ENTRY_SIZE);
    // The phase word goes last, so a driver never sees a half-written record.
    if !bus_write(mem, addr, &rec[..28])
        || !bus_write(mem, addr.wrapping_add(28), &phase.to_le_bytes())
    {
        sh.halt(s);
        return;
    }
    s.cq_tail = s.cq_tail.wrapping_add(1);
    let p = &mut s.perf;
    p[PerfCounter::BusyCycles as usize] += out.stats.cycles;
    p[PerfCounter::DmaBytesRead as usize] += out.stats.dma_read;
    p[PerfCounter::DmaBytesWritten as usize] += out.stats.dma_written;
    p[PerfCounter::Macs as usize] += out.stats.macs;
    p[PerfCounter::Instructions as usize] += out.stats.instructions;
    let bits = if out.status == Fault::Ok {
        p[PerfCounter::JobsDone as usize] += 1;
        IRQ_JOB_DONE
    } else {
        p[PerfCounter::JobsFaulted as usize] += 1;
        s.fault_status = out.status.code();
        s.fault_context = sub.context as u32;
        s.fault_addr = out.fault_addr;
        IRQ_JOB_FAULT
            | if out.status.is_mmu() {
                IRQ_MMU_FAULT
            } else {
                0
            }
    };
    if bits == IRQ_JOB_DONE && s.cq_event {
        // The completion event index: no latch, a message only when the
        // driver had caught up with the ring.
        let Some(caught_up) = driver_caught_up(sh, s, mem, written) else {
            sh.halt(s);
            return;
        };
        let job = IRQ_JOB_DONE & s.irq_mask;
        match action {
            Some(Action::DropIrq) => {}
            Some(Action::SpuriousIrq) => {
                if caught_up {
                    sh.send(s, job);
                }
                sh.send(s, job);
            }
            _ if caught_up => sh.send(s, job),
            _ => {}
        }
        return;
    }
    match action {
        Some(Action::DropIrq) => s.irq_status |= bits,
        Some(Action::SpuriousIrq) => {
            sh.raise(s, bits);
            let extra = IRQ_JOB_DONE & s.irq_mask;
            sh.send(s, extra);
        }
        _ => sh.raise(s, bits),
    }
}

/// Whether the record just written at index `written` is at the driver's
/// completion-ring head (it had consumed every earlier one), taking the
/// head from the shadow page when there is one (npu-hw.rst, "Completion
/// event index"). None on a bus error reading the page.
fn driver_caught_up(sh: &Shared, s: &mut State, mem: &HostMemory, written: u32) -> Option<bool> {
    // The record (written above) before the head read, against the
    // driver's head write before its second look at the record: one of
    // the two sees the other.
    std::sync::atomic::fence(Ordering::SeqCst);
    if s.shadow != 0 {
        let mut w = [0u8; 4];
        if !bus_read(mem, s.shadow.wrapping_add(SHADOW_CQ_HEAD), &mut w) {
            return None;
        }
        let head = u32::from_le_bytes(w);
        if head_ok(s, head) {
            s.cq_head = head;
        } else if head != s.cq_head {
            sh.ring_error(s, RING_ERROR_SHADOW_CQ_HEAD, head);
        }
    }
    Some(s.cq_head == written)
}
