//! GATHER (opcode 0x14), the indexed load, against npu-hw.rst's
//! definition: the rows it moves, INDEX_RANGE for indices outside the table
//! (nothing moved), hostile operands, MMU faults per row, and a reset
//! noticed between rows.

mod common;
use common::*;
use npu_device::cost::CostModel;
use npu_device::exec::{Executor, JobControl};
use npu_device::mem::{bus_write, HostMemory};
use npu_device::mmu::{Mmu, PAGE_SIZE, PTE_READ, PTE_VALID};
use npu_isa::*;

/// A table of `rows` rows of `row` bytes, `stride` bytes apart: byte b of
/// row j is `j * 16 + b + 1` (never 0xee, the background).
fn table(rows: usize, row: usize, stride: usize) -> Vec<u8> {
    let mut t = vec![0u8; rows * stride];
    for j in 0..rows {
        for b in 0..row {
            t[j * stride + b] = (j * 16 + b + 1) as u8;
        }
    }
    t
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const TABLE_ROWS: u32 = 10;
const ROW: u32 = 12;
const STRIDE: u32 = 16;
/// SRAM: the index vector at 0, the rows at DST, DST_STRIDE apart.
const DST: u32 = 256;
const DST_STRIDE: u32 = 16;

fn gather(indices: u32, count: u32, table_rows: u32, wrap: bool) -> Insn {
    Insn::Gather {
        wrap_negative: wrap,
        va: IN_VA,
        sram: DST,
        row_bytes: ROW,
        count,
        table_rows,
        table_stride: STRIDE,
        indices,
        sram_stride: DST_STRIDE,
    }
}

/// Load `idx` to SRAM 0, paint the destination 0xee, run `g`; returns the
/// completion. The input holds the table, then the indices.
fn run_gather(b: &mut Bench, idx: &[i32], g: Insn) -> npu_device::testbench::Completion {
    let mut input = table(TABLE_ROWS as usize, ROW as usize, STRIDE as usize);
    let idx_off = input.len() as u64;
    input.extend(i32_bytes(idx));
    let (c, _) = run_program(
        b,
        &input,
        0,
        &[
            load(IN_VA + idx_off, 0, 4 * idx.len() as u32),
            Insn::Fill {
                dst: DST,
                len: 1024,
                pattern: 0xeeee_eeee,
            },
            g,
        ],
    );
    c
}

/// The destination rows as the next job finds them in the SRAM (which
/// persists across jobs).
fn dst_after(b: &mut Bench, n: u32) -> Vec<u8> {
    let len = n * DST_STRIDE;
    let (c, out) = run_program(b, &[], len as usize, &[store(OUT_VA, DST, len)]);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    out
}

use npu_device::testbench::Bench;

#[test]
fn gather_moves_the_indexed_rows_and_wraps_negative_indices() {
    let mut b = bench();
    let idx = [3, 0, 9, 3, -1, -10];
    let c = run_gather(&mut b, &idx, gather(0, idx.len() as u32, TABLE_ROWS, true));
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    let t = table(TABLE_ROWS as usize, ROW as usize, STRIDE as usize);
    let mut want = Vec::new();
    for &i in &idx {
        let j = if i < 0 { i + TABLE_ROWS as i32 } else { i } as usize;
        want.extend_from_slice(&t[j * STRIDE as usize..][..ROW as usize]);
        // The stride's gap keeps the background.
        want.extend_from_slice(&[0xee; (DST_STRIDE - ROW) as usize]);
    }
    assert_eq!(dst_after(&mut b, idx.len() as u32), want);
}

#[test]
fn an_index_outside_the_table_is_index_range_and_moves_nothing() {
    let cases: &[(&[i32], u32, bool)] = &[
        (&[0, 10], TABLE_ROWS, false),   // one past the end
        (&[2, -1], TABLE_ROWS, false),   // negative without WRAP_NEGATIVE
        (&[2, -11], TABLE_ROWS, true),   // below -table_rows
        (&[i32::MIN], TABLE_ROWS, true), // the most negative
        (&[i32::MAX], TABLE_ROWS, true),
        (&[0], 0, true), // an empty table: every index is outside
        (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], TABLE_ROWS, false), // the last one
    ];
    for &(idx, rows, wrap) in cases {
        let mut b = bench();
        let c = run_gather(&mut b, idx, gather(0, idx.len() as u32, rows, wrap));
        assert_eq!(c.fault(), Some(Fault::IndexRange), "{idx:?}: {c:?}");
        // The byte offset of the GATHER (the third instruction).
        assert_eq!(c.fault_addr, 2 * INSN_SIZE as u64, "{idx:?}");
        assert_eq!(
            dst_after(&mut b, idx.len() as u32),
            vec![0xee; idx.len() * DST_STRIDE as usize],
            "{idx:?}: a row moved before the index check"
        );
    }
}

#[test]
fn hostile_operands_end_the_job_with_their_fault() {
    let sram = 256 * 1024u32;
    let base = gather(0, 2, TABLE_ROWS, false);
    let with = |f: &dyn Fn(&mut Insn)| {
        let mut g = base;
        f(&mut g);
        g
    };
    let cases: Vec<(&str, Insn, Fault)> = vec![
        (
            "misaligned index vector",
            with(&|g| {
                if let Insn::Gather { indices, .. } = g {
                    *indices = 2
                }
            }),
            Fault::BadOperand,
        ),
        (
            "index vector past the SRAM",
            with(&|g| {
                if let Insn::Gather { indices, .. } = g {
                    *indices = sram - 4
                }
            }),
            Fault::SramRange,
        ),
        (
            "2^32 - 1 indices",
            with(&|g| {
                if let Insn::Gather { count, .. } = g {
                    *count = u32::MAX
                }
            }),
            Fault::SramRange,
        ),
        (
            "destination rows overlapping (stride < row)",
            with(&|g| {
                if let Insn::Gather { sram_stride, .. } = g {
                    *sram_stride = ROW - 1
                }
            }),
            Fault::BadOperand,
        ),
        (
            "destination past the SRAM",
            with(&|g| {
                if let Insn::Gather { sram: s, .. } = g {
                    *s = sram - ROW
                }
            }),
            Fault::SramRange,
        ),
        (
            "one 4 GiB row",
            with(&|g| {
                if let Insn::Gather {
                    row_bytes, count, ..
                } = g
                {
                    *row_bytes = u32::MAX;
                    *count = 1;
                }
            }),
            Fault::SramRange,
        ),
        (
            "a destination stride of 4 GiB",
            with(&|g| {
                if let Insn::Gather { sram_stride, .. } = g {
                    *sram_stride = u32::MAX
                }
            }),
            Fault::SramRange,
        ),
        (
            "VA + index * stride past 2^64",
            with(&|g| {
                if let Insn::Gather {
                    va, table_stride, ..
                } = g
                {
                    *va = u64::MAX - 8;
                    *table_stride = u32::MAX;
                }
            }),
            Fault::MmuVaRange,
        ),
        (
            "a table row at or above 2^39",
            with(&|g| {
                if let Insn::Gather { va, .. } = g {
                    *va = (1 << 39) - 16
                }
            }),
            Fault::MmuVaRange,
        ),
    ];
    for (what, g, fault) in cases {
        let mut b = bench();
        // Indices 1 and 2 are in the table.
        let c = run_gather(&mut b, &[1, 2], g);
        assert_eq!(c.fault(), Some(fault), "{what}: {c:?}");
    }
}

#[test]
fn an_empty_gather_touches_nothing_whatever_its_other_fields() {
    let mut b = bench();
    let junk = Insn::Gather {
        wrap_negative: false,
        va: u64::MAX,
        sram: u32::MAX,
        row_bytes: 0,
        count: u32::MAX,
        table_rows: 0,
        table_stride: u32::MAX,
        indices: 3,
        sram_stride: 0,
    };
    let c = run_gather(&mut b, &[1], junk);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    // No indices: a misaligned vector address past the SRAM and an empty
    // table are not looked at.
    let c = run_gather(&mut b, &[1], gather(u32::MAX - 2, 0, 0, false));
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
}

#[test]
fn an_unmapped_row_faults_at_its_va_after_the_rows_before_it() {
    let mut b = bench();
    // Rows of 4 KiB pages apart: index 0 is in the mapped table, index 3
    // lies 3 pages further, unmapped (the input maps fewer pages).
    let g = Insn::Gather {
        wrap_negative: false,
        va: IN_VA,
        sram: DST,
        row_bytes: ROW,
        count: 2,
        table_rows: 100,
        table_stride: 4096 * 3,
        indices: 0,
        sram_stride: DST_STRIDE,
    };
    let c = run_gather(&mut b, &[0, 1], g);
    assert_eq!(c.fault(), Some(Fault::MmuUnmapped), "{c:?}");
    assert_eq!(c.fault_addr, IN_VA + 4096 * 3);
    let got = dst_after(&mut b, 2);
    let t = table(1, ROW as usize, STRIDE as usize);
    assert_eq!(&got[..ROW as usize], &t[..ROW as usize], "row 0 moved");
    assert_eq!(&got[DST_STRIDE as usize..], &[0xee; DST_STRIDE as usize]);
}

#[test]
fn a_gather_costs_a_dma_cycle_per_row() {
    let mut b = bench();
    let one = run_gather(&mut b, &[1], gather(0, 1, TABLE_ROWS, false));
    let idx: Vec<i32> = (0..64).map(|i| i % 10).collect();
    let many = run_gather(&mut b, &idx, gather(0, 64, TABLE_ROWS, false));
    assert_eq!(one.fault(), Some(Fault::Ok));
    assert_eq!(many.fault(), Some(Fault::Ok));
    // 64 rows of 12 bytes: 64 row cycles rather than 768 / 64 byte cycles;
    // the index load grows by 252 bytes (4 cycles).
    assert!(
        many.cycles >= one.cycles + 63,
        "{} vs {}",
        many.cycles,
        one.cycles
    );
}

/// Aborts the job at the `at`-th poll (as a SOFT_RESET does).
struct AbortAt {
    polls: u32,
    at: u32,
}

impl JobControl for AbortAt {
    fn poll(&mut self, _mmu: &mut Mmu) -> Result<(), Fault> {
        self.polls += 1;
        if self.polls >= self.at {
            return Err(Fault::Aborted);
        }
        Ok(())
    }
}

#[test]
fn a_reset_is_noticed_between_rows() {
    use vm_memory::{GuestAddress, GuestMemoryMmap};
    const MEM: u64 = 1 << 20;
    const ROOT: u64 = 0x1000;
    const CMD: u64 = 0x10_0000;
    const TABLE: u64 = 0x20_0000;
    let mem: HostMemory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)])
        .expect("memory")
        .into();
    let mut next = 0x2000u64;
    let mut map = |va: u64, frame: u64| {
        npu_device::testbench::set_pte(&mem, ROOT, va, frame | PTE_VALID | PTE_READ, || {
            let t = next;
            next += PAGE_SIZE;
            t
        });
    };
    map(CMD, 0x8_0000);
    map(TABLE, 0x9_0000);
    let rows = 32u32;
    let idx: Vec<i32> = (0..rows as i32).rev().collect();
    let prog = assemble(&[
        Insn::DmaLoad {
            va: TABLE,
            sram: 0,
            mem: Strided::contiguous(4 * rows),
            sram_layout: Strided::contiguous(4 * rows),
        },
        Insn::Gather {
            wrap_negative: false,
            va: TABLE,
            sram: 1024,
            row_bytes: 4,
            count: rows,
            table_rows: rows,
            table_stride: 4,
            indices: 0,
            sram_stride: 4,
        },
        Insn::End,
    ]);
    bus_write(&mem, 0x8_0000, &prog);
    // The table (rows of 4 bytes) is also the index vector.
    bus_write(&mem, 0x9_0000, &i32_bytes(&idx));
    let mut last = None;
    for at in [3u32, 10, 20] {
        let mut exec = Executor::new(64 << 10, CostModel::default());
        exec.sram.bytes_mut()[1024..1024 + 4 * rows as usize].fill(0xee);
        let mut mmu = Mmu::new(&mem, ROOT);
        let mut ctl = AbortAt { polls: 0, at };
        let out = exec.run(&mut mmu, CMD, prog.len() as u32, &mut ctl);
        assert_eq!(out.status, Fault::Aborted, "abort at poll {at}: {out:?}");
        // A prefix of the rows moved, the rest did not, and a later abort
        // moved more: the poll runs between rows.
        let dst = &exec.sram.bytes()[1024..1024 + 4 * rows as usize];
        let table_bytes = i32_bytes(&idx);
        let want = |r: usize| &table_bytes[idx[r] as usize * 4..][..4];
        let moved = (0..rows as usize)
            .take_while(|&r| dst[r * 4..r * 4 + 4] == *want(r))
            .count();
        for r in moved..rows as usize {
            assert_eq!(
                &dst[r * 4..r * 4 + 4],
                &[0xee; 4],
                "row {r} (abort at poll {at})"
            );
        }
        assert!(moved < rows as usize, "abort at poll {at}: every row moved");
        if let Some(l) = last {
            assert!(
                moved > l,
                "abort at poll {at}: {moved} rows, not more than {l}"
            );
        }
        last = Some(moved);
    }
}
