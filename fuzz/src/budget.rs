//! Per-input budgets (issue 14): a job may take only the host time its
//! modelled cost allows, and the process may grow only so much while it
//! runs. Going over either is a finding, like a panic: the fuzzers find
//! instructions whose cost model lies about their work (a strided DMA of
//! one-byte rows charged by bytes), work a reset cannot stop, and
//! allocations sized by guest values.

use npu_device::exec::JobControl;
use npu_device::mmu::Mmu;
use npu_isa::Fault;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Host time a job may take: a fixed allowance for set-up and instruction
/// fetch, plus this much per modelled cycle. Measured costs are 1..150 ns a
/// cycle (a one-byte DMA row, a page walk) in release builds; sanitizers
/// and a loaded machine need the rest.
pub const BASE: Duration = Duration::from_millis(100);
pub const NS_PER_CYCLE: u64 = 1000;
/// An honest job is stopped here (through its polls), not reported.
pub const CAP: Duration = Duration::from_millis(100);
/// How late after the stop request a job may end: its longest stretch
/// without a poll.
pub const STOP_SLACK: Duration = Duration::from_secs(1);

/// The JobControl of a fuzzed job: stops it when over budget or past CAP.
pub struct Budget {
    start: Instant,
    pub charged: u64,
    pub over_budget: Option<Duration>,
    pub stopped_at: Option<Duration>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            start: Instant::now(),
            charged: 0,
            over_budget: None,
            stopped_at: None,
        }
    }
}

impl Budget {
    pub fn allowed(&self) -> Duration {
        BASE + Duration::from_nanos(self.charged.saturating_mul(NS_PER_CYCLE))
    }

    /// Panics (a finding) when the job outran its cost, or did not stop
    /// soon after it was told to.
    pub fn check(&self) {
        let took = self.start.elapsed();
        if let Some(at) = self.over_budget {
            panic!(
                "a job ran {at:?} for {} modelled cycles (budget {:?})",
                self.charged,
                self.allowed()
            );
        }
        if let Some(at) = self.stopped_at {
            assert!(
                took <= at + STOP_SLACK,
                "a job told to stop at {at:?} ran until {took:?}"
            );
        }
        assert!(
            took <= self.allowed().max(CAP) + STOP_SLACK,
            "a job ran {took:?} for {} modelled cycles",
            self.charged
        );
    }
}

impl JobControl for Budget {
    fn poll(&mut self, _mmu: &mut Mmu) -> Result<(), Fault> {
        let t = self.start.elapsed();
        if t > self.allowed() {
            self.over_budget.get_or_insert(t);
            return Err(Fault::Aborted);
        }
        if t > CAP {
            self.stopped_at.get_or_insert(t);
            return Err(Fault::Aborted);
        }
        Ok(())
    }
    fn charge(&mut self, cycles: u64) {
        self.charged = self.charged.saturating_add(cycles);
    }
}

/// Heap in use and its peak, for the memory budget.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// A single allocation above this is refused (the process aborts: a
/// finding) before it can page the machine to death.
pub const ALLOC_CAP: usize = 256 << 20;

pub struct CountingAlloc;

// SAFETY: forwards to the system allocator and only counts; refusing with
// a null pointer is allowed by the GlobalAlloc contract.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            let msg = b"npu-fuzz: an allocation above 256 MiB was requested\n";
            // SAFETY: writing a static buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = IN_USE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

/// Measures how much the heap grows over one input.
pub struct MemoryWatch {
    base: usize,
}

impl MemoryWatch {
    pub fn start() -> Self {
        let base = IN_USE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        MemoryWatch { base }
    }
    /// Panics (a finding) when the heap grew by more than `limit` bytes at
    /// any point since `start`.
    pub fn check(&self, limit: usize) {
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(self.base);
        assert!(
            grew <= limit,
            "the heap grew by {grew} bytes for one input (budget {limit})"
        );
    }
}
