//! npu-hw.rst's "Floating point" and "Operand overlap" rules, checked
//! against references computed here (f64 libm for the accuracy bounds, the
//! IEEE 754-2019 maximumNumber definition for max/min), not from the model.

mod common;
use common::*;
use npu_isa::*;

fn reduce_row(op: ReduceOp, x: &[f32]) -> f32 {
    let mut b = bench();
    let n = x.len() as u32;
    let prog = [
        load(IN_VA, 0, n * 4),
        Insn::Reduce {
            op,
            axis: Axis::Cols,
            dtype: DType::F32,
            rows: 1,
            cols: n,
            src: tile(0, n),
            dst: 4096,
        },
        store(OUT_VA, 4096, 4),
    ];
    let (c, out) = run_program(&mut b, &f32_bytes(x), 4, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    bytes_f32(&out)[0]
}

/// Distance in units in the last place between two finite f32 of one sign.
fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// An f64 reference for an f32 function.
type Reference = fn(f64) -> f64;

#[test]
fn exp_tanh_and_sigmoid_are_within_4_ulp() {
    // A sweep over [-87, 88] in uneven steps, plus small magnitudes.
    let mut xs: Vec<f32> = (0..4000)
        .map(|i| -87.0 + i as f32 * 0.04375 + (i % 7) as f32 * 1e-3)
        .collect();
    xs.extend((1..200).map(|i| (i as f32) * 1e-6));
    xs.extend((1..200).map(|i| -(i as f32) * 1e-4));
    let cases: [(UnaryOp, Reference); 3] = [
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Tanh, f64::tanh),
        (UnaryOp::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
    ];
    for (op, reference) in cases {
        let got = unary(op, &xs, 0.0, 0.0);
        let mut worst = 0;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = reference(x as f64) as f32;
            if !want.is_normal() {
                continue;
            }
            let d = ulps(g, want);
            worst = worst.max(d);
            assert!(d <= 4, "{op:?}({x}) = {g}, want {want} ({d} ulp)");
        }
        println!("{op:?}: worst {worst} ulp over {} inputs", xs.len());
    }
    let special = unary(UnaryOp::Tanh, &[f32::INFINITY, f32::NEG_INFINITY], 0.0, 0.0);
    assert_eq!(special, [1.0, -1.0]);
    let special = unary(
        UnaryOp::Sigmoid,
        &[f32::INFINITY, f32::NEG_INFINITY],
        0.0,
        0.0,
    );
    assert_eq!(special, [1.0, 0.0]);
    assert!(unary(UnaryOp::Exp, &[f32::NAN], 0.0, 0.0)[0].is_nan());
}

#[test]
fn max_and_min_are_maximum_number_and_minimum_number() {
    let nan = f32::NAN;
    let a = [nan, 1.0, nan, 0.0, -0.0, -0.0, 0.0, -2.0];
    let b = [1.0, nan, nan, -0.0, 0.0, -0.0, 0.0, 3.0];
    let max_want = [1.0, 1.0, nan, 0.0, 0.0, -0.0, 0.0, 3.0];
    let min_want = [1.0, 1.0, nan, -0.0, -0.0, -0.0, 0.0, -2.0];
    for (op, want) in [(BinaryOp::Max, max_want), (BinaryOp::Min, min_want)] {
        let got = binary(op, &a, &b);
        for i in 0..a.len() {
            assert!(
                same(got[i], want[i]),
                "{op:?}({}, {}) = {}, want {}",
                a[i],
                b[i],
                got[i],
                want[i]
            );
        }
    }
}

#[test]
fn relu_and_clamp_of_nan_and_negative_zero() {
    let got = unary(UnaryOp::Relu, &[f32::NAN, -0.0, -1.0, 2.5], 0.0, 0.0);
    let want = [0.0f32, 0.0, 0.0, 2.5];
    for (g, w) in got.iter().zip(want) {
        assert!(
            same(*g, w),
            "relu: got {g:?} ({:#x}), want {w:?}",
            g.to_bits()
        );
    }
    let got = unary(UnaryOp::Clamp, &[f32::NAN, -5.0, 5.0, 0.5], -1.0, 1.0);
    assert_eq!(got, [-1.0, -1.0, 1.0, 0.5]);
}

#[test]
fn reduce_max_ignores_nan_and_reduce_sum_adds_in_index_order() {
    assert_eq!(
        reduce_row(ReduceOp::Max, &[f32::NAN, 2.0, f32::NAN, -1.0]),
        2.0
    );
    assert_eq!(
        reduce_row(ReduceOp::Max, &[f32::NAN, f32::NAN]),
        f32::NEG_INFINITY
    );
    // In index order: 1e8 + 1 rounds to 1e8, - 1e8 gives 0, + 1 gives 1.
    // Pairwise it would be 0, in reverse order 0 as well.
    assert_eq!(reduce_row(ReduceOp::Sum, &[1e8, 1.0, -1e8, 1.0]), 1.0);
    assert_eq!(reduce_row(ReduceOp::Sum, &[1.0, -1e8, 1.0, 1e8]), 0.0);
}

#[test]
fn an_output_overlapping_its_input_sees_the_input_as_it_was() {
    // BINARY add of a tile with itself shifted by one element, written over
    // the input: each output from the original inputs.
    let mut b = bench();
    let x: Vec<f32> = (0..9).map(|i| i as f32).collect();
    let prog = [
        load(IN_VA, 0, 36),
        Insn::Binary {
            op: BinaryOp::Add,
            dtype: DType::F32,
            bcast: Broadcast::None,
            rows: 1,
            cols: 8,
            a: tile(0, 8),
            b: tile(4, 8),
            out: tile(4, 8),
            scalar: 0,
        },
        store(OUT_VA, 0, 36),
    ];
    let (c, out) = run_program(&mut b, &f32_bytes(&x), 36, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    let want: Vec<f32> = std::iter::once(0.0)
        .chain((0..8).map(|i| (2 * i + 1) as f32))
        .collect();
    assert_eq!(bytes_f32(&out), want);
}

/// Run `prog` on `x` loaded at SRAM 0 and return the first `x.len()` words
/// of the SRAM after it.
fn sram_after(x: &[f32], prog: &[Insn]) -> Vec<f32> {
    let mut b = bench();
    let bytes = (x.len() * 4) as u32;
    let mut all = vec![load(IN_VA, 0, bytes)];
    all.extend_from_slice(prog);
    all.push(store(OUT_VA, 0, bytes));
    let (c, out) = run_program(&mut b, &f32_bytes(x), bytes as usize, &all);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    bytes_f32(&out)
}

#[test]
fn every_overlap_of_an_output_and_its_operands_reads_them_as_they_were() {
    let x: Vec<f32> = (0..9).map(|i| i as f32).collect();
    let mul = |a: Tile, b: Tile, bcast, out: Tile| Insn::Binary {
        op: BinaryOp::Mul,
        dtype: DType::F32,
        bcast,
        rows: 2,
        cols: 3,
        a,
        b,
        out,
        scalar: 2f32.to_bits(),
    };
    // 2 x 3 tiles of row pitch 4 over words 0..8. The output one element
    // past A (a partial overlap, rows interleaved): 2 * the old A.
    assert_eq!(
        sram_after(
            &x,
            &[mul(tile(0, 4), tile(0, 0), Broadcast::Scalar, tile(4, 4))]
        ),
        [0.0, 0.0, 2.0, 4.0, 4.0, 8.0, 10.0, 12.0, 8.0]
    );
    // The output is A itself, B (per row: words 7 and 8) above it.
    assert_eq!(
        sram_after(
            &x,
            &[mul(tile(0, 4), tile(28, 0), Broadcast::PerRow, tile(0, 4))]
        ),
        [0.0, 7.0, 14.0, 3.0, 32.0, 40.0, 48.0, 7.0, 8.0]
    );
    // A above the output, B (a whole tile) below and partly under it:
    // out[r][c] = A[r][c] * B[r][c] with A at words 2.., B at 0.., out at
    // 1.. (row pitch 4: A = [2 3 4; 6 7 8], B = [0 1 2; 4 5 6]).
    assert_eq!(
        sram_after(
            &x,
            &[mul(tile(8, 4), tile(0, 4), Broadcast::None, tile(4, 4))]
        ),
        [0.0, 0.0, 3.0, 8.0, 4.0, 24.0, 35.0, 48.0, 8.0]
    );
    // A and B the output itself: squares.
    assert_eq!(
        sram_after(
            &x,
            &[mul(tile(4, 4), tile(4, 4), Broadcast::None, tile(4, 4))]
        ),
        [0.0, 1.0, 4.0, 9.0, 4.0, 25.0, 36.0, 49.0, 8.0]
    );
    // The output under the start of A (words 4..) and over B (per column,
    // words 0..2): A - B.
    assert_eq!(
        sram_after(
            &[3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 9.0, 4.0, 5.0, 6.0],
            &[Insn::Binary {
                op: BinaryOp::Sub,
                dtype: DType::F32,
                bcast: Broadcast::PerCol,
                rows: 2,
                cols: 3,
                a: tile(16, 4),
                b: tile(0, 0),
                out: tile(0, 3),
                scalar: 0,
            }]
        ),
        [-2.0, 0.0, 2.0, 1.0, 3.0, 5.0, 3.0, 9.0, 4.0, 5.0, 6.0]
    );
    // UNARY clamp to [-1, 2], written one element past its source, and in
    // place.
    let clamp = |src: u32, dst: u32| Insn::Unary {
        op: UnaryOp::Clamp,
        dtype: DType::F32,
        rows: 1,
        cols: 8,
        src: tile(src, 8),
        dst: tile(dst, 8),
        lo: (-1f32).to_bits(),
        hi: 2f32.to_bits(),
    };
    let y: Vec<f32> = (-4..5).map(|i| i as f32).collect();
    assert_eq!(
        sram_after(&y, &[clamp(0, 4)]),
        [-4.0, -1.0, -1.0, -1.0, -1.0, 0.0, 1.0, 2.0, 2.0]
    );
    assert_eq!(
        sram_after(&y, &[clamp(0, 0)]),
        [-1.0, -1.0, -1.0, -1.0, 0.0, 1.0, 2.0, 2.0, 4.0]
    );
    // POOL max 2 x 2, stride 2, written over its own input.
    let geom = PoolGeom {
        channels: 1,
        in_h: 2,
        in_w: 4,
        out_h: 1,
        out_w: 2,
        kernel: [2, 2],
        stride: [2, 2],
        pad: [0, 0],
    };
    assert_eq!(
        sram_after(
            &[1.0, 5.0, 2.0, 0.0, 3.0, 4.0, 8.0, 7.0],
            &[Insn::Pool {
                op: PoolOp::Max,
                geom,
                src: 0,
                dst: 4,
            }]
        ),
        [1.0, 5.0, 8.0, 0.0, 3.0, 4.0, 8.0, 7.0]
    );
}
