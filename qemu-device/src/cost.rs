//! The cost model: how many cycles the modelled hardware spends.
//!
//! A DMA engine (loads, stores, copies, fills) and a compute engine run in
//! parallel. Instructions execute in program order functionally; for timing,
//! each starts on its engine when that engine is free and when the SRAM
//! ranges it touches are no longer being written (or, for its writes, read)
//! by in-flight work of the other engine: a scoreboard. BARRIER waits for
//! both engines.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostModel {
    pub dma_bytes_per_cycle: u32,
    pub dma_latency: u32,
    pub f32_macs_per_cycle: u32,
    pub i8_macs_per_cycle: u32,
    pub vector_elems_per_cycle: u32,
    pub special_elems_per_cycle: u32,
    pub insn_overhead: u32,
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
        }
    }
}

impl CostModel {
    /// Register view, in order from COST_BASE.
    pub fn registers(&self) -> [u32; 7] {
        [
            self.dma_bytes_per_cycle,
            self.dma_latency,
            self.f32_macs_per_cycle,
            self.i8_macs_per_cycle,
            self.vector_elems_per_cycle,
            self.special_elems_per_cycle,
            self.insn_overhead,
        ]
    }
    pub fn dma(&self, bytes: u64) -> u64 {
        self.insn_overhead as u64
            + self.dma_latency as u64
            + bytes.div_ceil(self.dma_bytes_per_cycle as u64)
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

#[derive(Clone, Copy)]
struct Use {
    lo: u64,
    hi: u64,
    write: bool,
    engine: Engine,
    done: u64,
}

/// Timing state of one job.
#[derive(Default)]
pub struct Timeline {
    free: [u64; 2],
    fence: u64,
    inflight: Vec<Use>,
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
        let mut start = self.free[engine as usize].max(self.fence);
        for u in &self.inflight {
            if u.engine == engine {
                continue;
            }
            let hits = |r: &(u64, u64)| r.0 < u.hi && u.lo < r.1;
            let raw = u.write && reads.iter().any(hits);
            let waw_war = writes.iter().any(hits);
            if raw || waw_war {
                start = start.max(u.done);
            }
        }
        let done = start + cycles;
        self.free[engine as usize] = done;
        let oldest = self.free[0].min(self.free[1]).max(self.fence);
        self.inflight.retain(|u| u.done > oldest);
        for &(lo, hi) in reads {
            self.inflight.push(Use {
                lo,
                hi,
                write: false,
                engine,
                done,
            });
        }
        for &(lo, hi) in writes {
            self.inflight.push(Use {
                lo,
                hi,
                write: true,
                engine,
                done,
            });
        }
        done
    }

    pub fn barrier(&mut self) {
        self.fence = self.free[0].max(self.free[1]);
        self.inflight.clear();
    }

    pub fn total(&self) -> u64 {
        self.free[0].max(self.free[1]).max(self.fence)
    }
}
