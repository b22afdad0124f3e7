//! Helpers shared by the device tests.
#![allow(dead_code)]

use npu_device::testbench::{Bench, Completion};
use npu_device::DeviceConfig;
use npu_isa::{assemble, BinaryOp, Broadcast, DType, Fault, Insn, Strided, Tile, UnaryOp};

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

/// Runs one UNARY f32 `op` over the row `x` (`lo`, `hi` in w7, w8: the
/// clamp bounds or a function's alpha and beta); the results.
pub fn unary(op: UnaryOp, x: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    let mut b = bench();
    let n = x.len() as u32;
    let bytes = n * 4;
    let prog = [
        load(IN_VA, 0, bytes),
        Insn::Unary {
            op,
            dtype: DType::F32,
            rows: 1,
            cols: n,
            src: tile(0, n),
            dst: tile(bytes, n),
            lo: lo.to_bits(),
            hi: hi.to_bits(),
        },
        store(OUT_VA, bytes, bytes),
    ];
    let (c, out) = run_program(&mut b, &f32_bytes(x), bytes as usize, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{op:?}: {c:?}");
    bytes_f32(&out)
}

/// Runs one BINARY f32 `op` of the rows `a` and `bv` (same length, no
/// broadcast); the results.
pub fn binary(op: BinaryOp, a: &[f32], bv: &[f32]) -> Vec<f32> {
    let mut b = bench();
    let n = a.len() as u32;
    let bytes = n * 4;
    let mut input = f32_bytes(a);
    input.extend(f32_bytes(bv));
    let prog = [
        load(IN_VA, 0, 2 * bytes),
        Insn::Binary {
            op,
            dtype: DType::F32,
            bcast: Broadcast::None,
            rows: 1,
            cols: n,
            a: tile(0, n),
            b: tile(bytes, n),
            out: tile(2 * bytes, n),
            scalar: 0,
        },
        store(OUT_VA, 2 * bytes, bytes),
    ];
    let (c, out) = run_program(&mut b, &input, bytes as usize, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{op:?}: {c:?}");
    bytes_f32(&out)
}
