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
///
/// Held in a sorted `Vec` while there are few segments (the common case: a
/// program reuses a few tile buffers), so that an instruction allocates
/// nothing and touches a few cache lines; past [`FEW_SEGMENTS`] in the
/// B-tree [`Tree`], so that a program of many scattered ranges (a hostile
/// one) costs O(log n) per range rather than a memmove of the whole list.
/// Both hold the same segments and answer alike (tests::uses_*).
#[derive(Default)]
struct Uses {
    /// Sorted by `lo`; empty while `tree` is in use.
    few: Vec<Segment>,
    tree: Option<Tree>,
}

/// `[lo, hi)` used until `done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    lo: u64,
    hi: u64,
    done: u64,
}

/// Most segments [`Uses`] keeps in its `Vec`: an insert in the middle moves
/// at most this many.
const FEW_SEGMENTS: usize = 64;

impl Uses {
    /// Record that [lo, hi) is used until `done`.
    fn assign(&mut self, lo: u64, hi: u64, done: u64) {
        if lo >= hi {
            return;
        }
        if let Some(tree) = &mut self.tree {
            tree.assign(lo, hi, done);
            return;
        }
        let segs = &mut self.few;
        // Segments before `i` start before lo; `i..j` start inside the range.
        let i = segs.partition_point(|s| s.lo < lo);
        let j = i + segs[i..].partition_point(|s| s.lo < hi);
        // The part of a segment past hi stays: one starting before lo and
        // reaching past hi, or the last one starting inside the range.
        let mut tail = None;
        if i > 0 && segs[i - 1].hi > lo {
            let before = &mut segs[i - 1];
            if before.hi > hi {
                tail = Some(Segment { lo: hi, ..*before });
            }
            before.hi = lo;
        }
        if j > i && segs[j - 1].hi > hi {
            tail = Some(Segment {
                lo: hi,
                ..segs[j - 1]
            });
        }
        // segs[i..j] becomes [new] or [new, tail], moving the rest once.
        let new = Segment { lo, hi, done };
        let put = 1 + tail.is_some() as usize;
        // Room for what is missing (at most two), or the surplus removed.
        for _ in j - i..put {
            segs.insert(i, new);
        }
        if j - i > put {
            segs.drain(i + put..j);
        }
        segs[i] = new;
        if let Some(tail) = tail {
            segs[i + 1] = tail;
        }
        if segs.len() > FEW_SEGMENTS {
            let mut tree = Tree::default();
            for s in segs.drain(..) {
                tree.0.insert(s.lo, (s.hi, s.done));
            }
            self.tree = Some(tree);
        }
    }

    /// Latest finish time of a use overlapping [lo, hi). Segments that end
    /// no later than `retired` can never delay anything again and are
    /// dropped as they are met; every segment met here ends up retired by
    /// the instruction asking, so each is scanned O(1) times: linear.
    fn latest(&mut self, lo: u64, hi: u64, retired: u64, work: &mut u64) -> u64 {
        if let Some(tree) = &mut self.tree {
            let latest = tree.latest(lo, hi, retired, work);
            // Back to the Vec once most segments retired (not at once, so
            // that a count near the limit does not move them to and fro).
            if tree.0.len() <= FEW_SEGMENTS / 2 {
                self.few.extend(
                    tree.0
                        .iter()
                        .map(|(&lo, &(hi, done))| Segment { lo, hi, done }),
                );
                self.tree = None;
            }
            return latest;
        }
        let segs = &mut self.few;
        let i = segs.partition_point(|s| s.lo < lo);
        // A segment starting before lo counts if it reaches past lo.
        let from = if i > 0 && segs[i - 1].hi > lo {
            i - 1
        } else {
            i
        };
        let to = from + segs[from..].partition_point(|s| s.lo < hi);
        let mut latest = 0;
        let mut kept = from;
        for k in from..to {
            *work += 1;
            let s = segs[k];
            if s.done > retired {
                latest = latest.max(s.done);
                segs[kept] = s;
                kept += 1;
            }
        }
        segs.drain(kept..to);
        latest
    }

    fn clear(&mut self) {
        self.few.clear();
        self.tree = None;
    }
}

/// [`Uses`] for many segments: a B-tree map `lo -> (hi, done)`.
#[derive(Default)]
struct Tree(
    std::collections::BTreeMap<u64, (u64, u64)>,
    /// Keys to remove, kept between calls (no allocation per instruction).
    Vec<u64>,
);

impl Tree {
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
        // Emptied, keeping their storage for the next instructions.
        for uses in self.writes.iter_mut().chain(&mut self.touches) {
            uses.clear();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The segments of `uses`, whichever structure holds them.
    fn segments(uses: &Uses) -> Vec<Segment> {
        match &uses.tree {
            Some(tree) => {
                assert!(uses.few.is_empty());
                tree.0
                    .iter()
                    .map(|(&lo, &(hi, done))| Segment { lo, hi, done })
                    .collect()
            }
            None => uses.few.clone(),
        }
    }

    /// (is a query, lo, len, done or retired step)
    fn ops() -> impl Strategy<Value = Vec<(bool, u64, u64, u64)>> {
        // Ranges in 300 bytes: up to ~150 segments, past FEW_SEGMENTS and
        // back, with queries retiring them.
        prop::collection::vec((any::<bool>(), 0..300u64, 0..40u64, 0..8u64), 1..600)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The Vec/tree hybrid holds the very segments the B-tree alone
        /// holds (the scoreboard before the hybrid), answers the same and
        /// counts the same work, empty ranges included.
        #[test]
        fn uses_matches_the_tree_alone(ops in ops()) {
            let (mut uses, mut tree) = (Uses::default(), Tree::default());
            let (mut w1, mut w2) = (0, 0);
            let mut time = 0;
            for (query, lo, len, step) in ops {
                time += step;
                let hi = lo + len;
                if query {
                    // Any retire time, not only increasing ones.
                    let retired = time.saturating_sub(3 * step);
                    prop_assert_eq!(
                        uses.latest(lo, hi, retired, &mut w1),
                        tree.latest(lo, hi, retired, &mut w2)
                    );
                } else {
                    uses.assign(lo, hi, time);
                    tree.assign(lo, hi, time);
                }
                prop_assert_eq!(w1, w2);
                let want: Vec<Segment> = tree
                    .0
                    .iter()
                    .map(|(&lo, &(hi, done))| Segment { lo, hi, done })
                    .collect();
                prop_assert_eq!(segments(&uses), want);
                prop_assert!(uses.few.len() <= FEW_SEGMENTS);
            }
        }

        /// Against the cost model's rule byte by byte (npu-hw.rst): a
        /// range waits for the latest use of any of its bytes still in
        /// flight (finishing after `retired`, which only grows, as an
        /// engine's start time does); the last assignment of a byte wins.
        #[test]
        fn uses_matches_a_per_byte_model(ops in ops()) {
            let mut uses = Uses::default();
            let mut bytes = [0u64; 340];
            let mut work = 0;
            let (mut time, mut retired) = (0, 0);
            for (query, lo, len, step) in ops {
                let hi = lo + len.max(1);
                if query {
                    retired += step;
                    let want = bytes[lo as usize..hi as usize]
                        .iter()
                        .copied()
                        .filter(|&d| d > retired)
                        .max()
                        .unwrap_or(0);
                    prop_assert_eq!(uses.latest(lo, hi, retired, &mut work), want);
                } else {
                    time += step;
                    uses.assign(lo, hi, time);
                    bytes[lo as usize..hi as usize].fill(time);
                }
            }
        }
    }

    #[test]
    fn a_cut_segment_keeps_both_ends() {
        let mut uses = Uses::default();
        let mut work = 0;
        uses.assign(0, 100, 5);
        uses.assign(40, 60, 9);
        let seg = |lo, hi, done| Segment { lo, hi, done };
        assert_eq!(
            segments(&uses),
            [seg(0, 40, 5), seg(40, 60, 9), seg(60, 100, 5)]
        );
        assert_eq!(uses.latest(10, 20, 0, &mut work), 5);
        assert_eq!(uses.latest(39, 41, 0, &mut work), 9);
        // Retired segments go as they are met.
        assert_eq!(uses.latest(0, 100, 5, &mut work), 9);
        assert_eq!(segments(&uses), [seg(40, 60, 9)]);
    }

    #[test]
    fn many_segments_move_to_the_tree_and_back() {
        let mut uses = Uses::default();
        let mut work = 0;
        for i in 0..=FEW_SEGMENTS as u64 {
            uses.assign(2 * i, 2 * i + 1, i + 1);
        }
        assert!(uses.tree.is_some() && uses.few.is_empty());
        assert_eq!(uses.latest(0, 1000, 0, &mut work), FEW_SEGMENTS as u64 + 1);
        // All but the last two retired: back in the Vec.
        assert_eq!(uses.latest(0, 1000, FEW_SEGMENTS as u64 - 1, &mut work), 65);
        assert!(uses.tree.is_none());
        assert_eq!(segments(&uses).len(), 2);
        assert_eq!(work, 2 * (FEW_SEGMENTS as u64 + 1));
    }
}
