//! The cost model: how many cycles the modelled hardware spends.
//!
//! A DMA engine (loads, stores, copies, fills) and a compute engine run in
//! parallel. Instructions execute in program order functionally; for timing,
//! each starts on its engine when that engine is free and when the SRAM
//! ranges it touches are no longer being written (or, for its writes, read)
//! by in-flight work of the other engine: a scoreboard. BARRIER waits for
//! both engines.

/// Number of cost-model registers at COST_BASE.
pub const COST_REGISTERS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostModel {
    pub dma_bytes_per_cycle: u32,
    pub dma_latency: u32,
    pub f32_macs_per_cycle: u32,
    pub i8_macs_per_cycle: u32,
    pub vector_elems_per_cycle: u32,
    pub special_elems_per_cycle: u32,
    pub insn_overhead: u32,
    /// Cycles of one page-table walk (a TLB miss) of a DMA instruction.
    pub walk_cycles: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            dma_bytes_per_cycle: 64,
            dma_latency: 64,
            f32_macs_per_cycle: 256,
            i8_macs_per_cycle: 1024,
            vector_elems_per_cycle: 32,
            special_elems_per_cycle: 8,
            insn_overhead: 2,
            walk_cycles: 3,
        }
    }
}

impl CostModel {
    /// Register view, in order from COST_BASE.
    pub fn registers(&self) -> [u32; COST_REGISTERS] {
        [
            self.dma_bytes_per_cycle,
            self.dma_latency,
            self.f32_macs_per_cycle,
            self.i8_macs_per_cycle,
            self.vector_elems_per_cycle,
            self.special_elems_per_cycle,
            self.insn_overhead,
            self.walk_cycles,
        ]
    }
    pub fn dma(&self, bytes: u64) -> u64 {
        self.dma_rows(bytes, 0)
    }
    /// A transfer of `bytes` in `rows` rows: the engine moves at most one
    /// row per cycle, however short the rows are.
    pub fn dma_rows(&self, bytes: u64, rows: u64) -> u64 {
        let transfer = bytes.div_ceil(self.dma_bytes_per_cycle as u64).max(rows);
        (self.insn_overhead as u64 + self.dma_latency as u64).saturating_add(transfer)
    }
    pub fn walks(&self, walks: u64) -> u64 {
        walks.saturating_mul(self.walk_cycles as u64)
    }
    pub fn macs(&self, macs: u64, int8: bool) -> u64 {
        let rate = if int8 {
            self.i8_macs_per_cycle
        } else {
            self.f32_macs_per_cycle
        };
        self.insn_overhead as u64 + macs.div_ceil(rate as u64)
    }
    pub fn vector(&self, elems: u64, special: bool) -> u64 {
        let rate = if special {
            self.special_elems_per_cycle
        } else {
            self.vector_elems_per_cycle
        };
        self.insn_overhead as u64 + elems.div_ceil(rate as u64)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Engine {
    Dma = 0,
    Compute = 1,
}

/// Which SRAM bytes an engine's issued work still uses, and until when:
/// disjoint segments `lo -> (hi, done)`. An engine's instructions finish in
/// issue order (each starts when the previous one is free), so a newer use
/// of a byte supersedes an older one and assigning a range just overwrites.
#[derive(Default)]
struct Uses(
    std::collections::BTreeMap<u64, (u64, u64)>,
    /// Keys to remove, kept between calls (no allocation per instruction).
    Vec<u64>,
);

impl Uses {
    /// Record that [lo, hi) is used until `done`.
    fn assign(&mut self, lo: u64, hi: u64, done: u64) {
        if lo >= hi {
            return;
        }
        // A segment starting before lo and reaching into the range is cut.
        if let Some((&s, &(e, d))) = self.0.range(..lo).next_back() {
            if e > lo {
                self.0.insert(s, (lo, d));
                if e > hi {
                    self.0.insert(hi, (e, d));
                }
            }
        }
        // Segments starting inside the range go, keeping any tail past hi.
        let mut inside = std::mem::take(&mut self.1);
        inside.clear();
        inside.extend(self.0.range(lo..hi).map(|(&s, _)| s));
        for &s in &inside {
            if let Some((e, d)) = self.0.remove(&s) {
                if e > hi {
                    self.0.insert(hi, (e, d));
                }
            }
        }
        self.1 = inside;
        self.0.insert(lo, (hi, done));
    }

    /// Latest finish time of a use overlapping [lo, hi). Segments that end
    /// no later than `retired` can never delay anything again and are
    /// dropped as they are met; every segment met here ends up retired by
    /// the instruction asking, so each is scanned O(1) times: linear.
    fn latest(&mut self, lo: u64, hi: u64, retired: u64, work: &mut u64) -> u64 {
        let mut latest = 0;
        let mut dead = std::mem::take(&mut self.1);
        dead.clear();
        let first = self
            .0
            .range(..lo)
            .next_back()
            .filter(|(_, &(e, _))| e > lo)
            .map(|(&s, _)| s);
        let from = first.unwrap_or(lo);
        for (&s, &(_, d)) in self.0.range(from..hi) {
            *work += 1;
            if d <= retired {
                dead.push(s);
            } else {
                latest = latest.max(d);
            }
        }
        for &s in &dead {
            self.0.remove(&s);
        }
        self.1 = dead;
        latest
    }
}

/// Timing state of one job.
#[derive(Default)]
pub struct Timeline {
    free: [u64; 2],
    fence: u64,
    /// Per engine: ranges it writes, and ranges it reads or writes.
    writes: [Uses; 2],
    touches: [Uses; 2],
    work: u64,
    /// Per engine: the cycles of the instructions issued to it (its busy
    /// time, without the time it waited).
    busy: [u64; 2],
}

impl Timeline {
    /// Schedule `cycles` of work on `engine` that reads `reads` and writes
    /// `writes` (SRAM byte ranges [lo, hi)); returns its finish time.
    pub fn issue(
        &mut self,
        engine: Engine,
        reads: &[(u64, u64)],
        writes: &[(u64, u64)],
        cycles: u64,
    ) -> u64 {
        let me = engine as usize;
        let other = 1 - me;
        let mut start = self.free[me].max(self.fence);
        // Anything of the other engine done by the time this engine can
        // start is behind every later instruction of this engine too.
        let retired = start;
        for &(lo, hi) in reads {
            start = start.max(self.writes[other].latest(lo, hi, retired, &mut self.work));
        }
        for &(lo, hi) in writes {
            start = start.max(self.touches[other].latest(lo, hi, retired, &mut self.work));
        }
        let done = start.saturating_add(cycles);
        self.free[me] = done;
        self.busy[me] = self.busy[me].saturating_add(cycles);
        for &(lo, hi) in reads {
            self.touches[me].assign(lo, hi, done);
        }
        for &(lo, hi) in writes {
            self.touches[me].assign(lo, hi, done);
            self.writes[me].assign(lo, hi, done);
        }
        done
    }

    pub fn barrier(&mut self) {
        self.fence = self.free[0].max(self.free[1]);
        self.writes = Default::default();
        self.touches = Default::default();
    }

    pub fn total(&self) -> u64 {
        self.free[0].max(self.free[1]).max(self.fence)
    }

    /// Cycles of the instructions issued to `engine` so far.
    pub fn busy(&self, engine: Engine) -> u64 {
        self.busy[engine as usize]
    }

    /// Scoreboard segments examined so far (for tests of its complexity).
    pub fn work(&self) -> u64 {
        self.work
    }
}
