//! Helpers shared by the device tests.
#![allow(dead_code)]

use npu_device::testbench::{Bench, Completion};
use npu_device::DeviceConfig;
use npu_isa::{assemble, Insn, Strided, Tile};

pub const CMD_VA: u64 = 0x10_0000;
pub const IN_VA: u64 = 0x20_0000;
pub const OUT_VA: u64 = 0x40_0000;

pub fn bench() -> Bench {
    Bench::new(
        DeviceConfig {
            sram_size: 256 * 1024,
            contexts: 4,
            ..Default::default()
        },
        32,
    )
}

#[allow(unused_imports)]
pub use npu_device::testbench::Rng;

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
pub fn bytes_i32(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn load(va: u64, sram: u32, len: u32) -> Insn {
    Insn::DmaLoad {
        va,
        sram,
        mem: Strided::contiguous(len),
        sram_layout: Strided::contiguous(len),
    }
}
pub fn store(va: u64, sram: u32, len: u32) -> Insn {
    Insn::DmaStore {
        va,
        sram,
        mem: Strided::contiguous(len),
        sram_layout: Strided::contiguous(len),
    }
}
pub fn tile(addr: u32, ld: u32) -> Tile {
    Tile { addr, ld }
}

/// Run `prog` (END appended) with `input` at IN_VA and `out_len` bytes of
/// writable output at OUT_VA; returns the completion and the output.
pub fn run_program(
    b: &mut Bench,
    input: &[u8],
    out_len: usize,
    prog: &[Insn],
) -> (Completion, Vec<u8>) {
    let mut p = prog.to_vec();
    p.push(Insn::End);
    if !input.is_empty() {
        b.map(0, IN_VA, input.len() as u64, false);
        b.write(0, IN_VA, input);
    }
    if out_len > 0 {
        b.map(0, OUT_VA, out_len as u64, true);
    }
    let c = b.run(0, CMD_VA, &assemble(&p));
    let out = if out_len > 0 {
        b.read(0, OUT_VA, out_len)
    } else {
        vec![]
    };
    (c, out)
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}
