//! The f32 functions of UNARY F 7..16 and BINARY F 6 (prelu), checked
//! against npu-hw.rst: hand-computed values (Python's math module, to f64
//! precision, written here as constants), the special values the spec
//! names, accuracy sweeps against f64 references, the cost model's cycles
//! and the BAD_OPERAND faults for a bad F value or a dtype other than f32.

// The tables are hand-computed decimal values, some of which clippy takes
// for std's constants; the table rows are tuples on purpose.
#![allow(clippy::approx_constant, clippy::type_complexity)]

mod common;
use common::*;
use npu_isa::*;

/// Bit-identical, or both NaN.
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The size of one unit in the last place of f32 at `w` (a normal number).
fn ulp(w: f64) -> f64 {
    2f64.powi(w.abs().log2().floor() as i32 - 23)
}

const XS: [f32; 6] = [-3.0, -0.5, 0.0, 0.25, 2.0, 4.0];
const POSITIVE: [f32; 6] = [0.25, 0.5, 1.0, 2.0, 3.0, 10.0];

#[test]
fn hand_computed_values() {
    // (op, inputs, alpha, beta, exact results (f64 from Python's math
    // module), bound). Bound: 0 = the f32 nearest the value (correctly
    // rounded, or exact); Ulp(n) = within n ulp; AbsX = within 2^-21 |x|.
    enum Bound {
        Exact,
        Ulp(f64),
        AbsX,
    }
    use Bound::*;
    #[rustfmt::skip]
    let cases: Vec<(UnaryOp, [f32; 6], f32, f32, [f64; 6], Bound)> = vec![
        (UnaryOp::Sqrt, POSITIVE, 0.0, 0.0, [0.5, 0.7071067811865476, 1.0, 1.4142135623730951, 1.7320508075688772, 3.1622776601683795], Exact),
        (UnaryOp::Log, POSITIVE, 0.0, 0.0, [-1.3862943611198906, -0.6931471805599453, 0.0, 0.6931471805599453, 1.0986122886681098, 2.302585092994046], Ulp(4.0)),
        (UnaryOp::Erf, XS, 0.0, 0.0, [-0.9999779095030014, -0.5204998778130465, 0.0, 0.2763263901682369, 0.9953222650189527, 0.9999999845827421], Ulp(4.0)),
        (UnaryOp::Gelu, XS, 0.0, 0.0, [-0.00404969409489031, -0.15426876936299344, 0.0, 0.14967658142073093, 1.9544997361036416, 3.9998733150326675], AbsX),
        (UnaryOp::GeluTanh, XS, 0.0, 0.0, [-0.0036373920817729943, -0.15428599017485606, 0.0, 0.149675350701685, 1.954597694087775, 3.9999297540518075], AbsX),
        (UnaryOp::Elu, XS, 0.5, 0.0, [-0.475106465816068, -0.1967346701436833, 0.0, 0.25, 2.0, 4.0], Ulp(4.0)),
        // alpha 1/8: every product is exact.
        (UnaryOp::LeakyRelu, XS, 0.125, 0.0, [-0.375, -0.0625, 0.0, 0.25, 2.0, 4.0], Exact),
        // alpha 1/4, beta 1/2: exact in binary, so the results are too.
        (UnaryOp::HardSigmoid, XS, 0.25, 0.5, [0.0, 0.375, 0.5, 0.5625, 1.0, 1.0], Exact),
        (UnaryOp::HardSwish, XS, 0.25, 0.5, [-0.0, -0.1875, 0.0, 0.140625, 2.0, 4.0], Exact),
    ];
    for (op, x, alpha, beta, want, bound) in cases {
        let got = unary(op, &x, alpha, beta);
        for ((&x, &g), &w) in x.iter().zip(&got).zip(&want) {
            let ok = match bound {
                Exact => g == w as f32,
                _ if w == 0.0 => g == 0.0,
                Ulp(n) => (g as f64 - w).abs() <= n * ulp(w),
                AbsX => (g as f64 - w).abs() <= 2f64.powi(-21) * (x as f64).abs(),
            };
            assert!(ok, "{op:?}({x}) = {g:e}, want {w:e}");
        }
    }
    // rsqrt is the correctly rounded root, then a correctly rounded 1 / it.
    let got = unary(UnaryOp::Rsqrt, &POSITIVE, 0.0, 0.0);
    let want = [
        2.0f32,
        1.0 / 0.70710677,
        1.0,
        1.0 / 1.4142135,
        1.0 / 1.7320508,
        1.0 / 3.1622777,
    ];
    assert_eq!(got, want);
}

#[test]
fn special_values() {
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    #[rustfmt::skip]
    let cases: Vec<(UnaryOp, Vec<f32>, f32, f32, Vec<f32>)> = vec![
        (UnaryOp::Sqrt, vec![-0.0, 0.0, -1.0, inf, -inf, nan], 0.0, 0.0, vec![-0.0, 0.0, nan, inf, nan, nan]),
        (UnaryOp::Rsqrt, vec![-0.0, 0.0, -1.0, inf, nan, 4.0], 0.0, 0.0, vec![-inf, inf, nan, 0.0, nan, 0.5]),
        (UnaryOp::Log, vec![0.0, -0.0, -1.0, 1.0, inf, nan], 0.0, 0.0, vec![-inf, -inf, nan, 0.0, inf, nan]),
        (UnaryOp::Erf, vec![inf, -inf, -0.0, 0.0, nan, 10.0], 0.0, 0.0, vec![1.0, -1.0, -0.0, 0.0, nan, 1.0]),
        (UnaryOp::Gelu, vec![inf, -inf, -0.0, nan, -20.0, 20.0], 0.0, 0.0, vec![inf, -0.0, -0.0, nan, -0.0, 20.0]),
        (UnaryOp::GeluTanh, vec![inf, -inf, -0.0, nan, -20.0, 1e20], 0.0, 0.0, vec![inf, -0.0, -0.0, nan, -0.0, 1e20]),
        (UnaryOp::LeakyRelu, vec![-0.0, nan, -inf, inf, -2.0, 1.0], 0.5, 0.0, vec![-0.0, nan, -inf, inf, -1.0, 1.0]),
        (UnaryOp::Elu, vec![-0.0, nan, -inf, inf, 0.0, 1.0], 2.0, 0.0, vec![-0.0, nan, -2.0, inf, 0.0, 1.0]),
        (UnaryOp::HardSigmoid, vec![nan, -inf, inf, -0.0, 100.0, -100.0], 0.25, 0.5, vec![nan, 0.0, 1.0, 0.5, 1.0, 0.0]),
        (UnaryOp::HardSwish, vec![nan, -inf, inf, -0.0, -100.0, 100.0], 0.25, 0.5, vec![nan, -0.0, inf, -0.0, -0.0, 100.0]),
    ];
    for (op, x, alpha, beta, want) in cases {
        let got = unary(op, &x, alpha, beta);
        for i in 0..x.len() {
            assert!(
                same(got[i], want[i]),
                "{op:?}({:?}) = {:?}, want {:?}",
                x[i],
                got[i],
                want[i]
            );
        }
    }
}

/// Inputs for the sweeps: uneven steps over [-lim, lim], small magnitudes
/// of both signs, and a few large ones.
fn sweep(lim: f32) -> Vec<f32> {
    let mut xs: Vec<f32> = (0..8000)
        .map(|i| -lim + i as f32 * (lim / 4000.0) + (i % 7) as f32 * 1e-4)
        .collect();
    xs.extend((1..300).map(|i| i as f32 * 3.7e-6));
    xs.extend((1..300).map(|i| -(i as f32) * 3.7e-6));
    xs.extend([1e-30, -1e-30, 1e10, -1e10, 3e38, -3e38]);
    xs
}

#[test]
fn sqrt_and_rsqrt_are_exactly_the_spec_roundings() {
    let mut xs: Vec<f32> = sweep(1000.0).into_iter().map(f32::abs).collect();
    xs.extend([f32::MIN_POSITIVE, 1e-45, f32::MAX, 2.0, 3.0]);
    let got = unary(UnaryOp::Sqrt, &xs, 0.0, 0.0);
    for (&x, &g) in xs.iter().zip(&got) {
        // f64 has more than 2 * 24 + 2 bits, so rounding its correctly
        // rounded root to f32 is the correctly rounded f32 root.
        let want = (x as f64).sqrt() as f32;
        assert_eq!(g, want, "sqrt({x:e})");
    }
    let got = unary(UnaryOp::Rsqrt, &xs, 0.0, 0.0);
    for (&x, &g) in xs.iter().zip(&got) {
        let root = (x as f64).sqrt() as f32;
        let want = (1.0 / root as f64) as f32;
        assert_eq!(g, want, "rsqrt({x:e})");
    }
}

#[test]
fn log_erf_and_elu_are_within_4_ulp() {
    type Reference = fn(f64) -> f64;
    let positive: Vec<f32> = sweep(100.0)
        .into_iter()
        .map(f32::abs)
        .filter(|&x| x > 0.0)
        .chain((0..200).map(|i| 1.0 + (i as f32 - 100.0) * 1e-5))
        .collect();
    let cases: [(UnaryOp, Vec<f32>, Reference); 3] = [
        (UnaryOp::Log, positive, f64::ln),
        (UnaryOp::Erf, sweep(5.0), libm::erf),
        (UnaryOp::Elu, sweep(30.0), |x| {
            if x > 0.0 {
                x
            } else {
                0.75 * x.exp_m1()
            }
        }),
    ];
    for (op, xs, reference) in cases {
        let got = unary(op, &xs, 0.75, 0.0);
        let mut worst = 0.0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = reference(x as f64);
            if !(want as f32).is_normal() {
                continue;
            }
            let d = (g as f64 - want).abs() / ulp(want);
            worst = worst.max(d);
            assert!(d <= 4.0, "{op:?}({x:e}) = {g:e}, want {want:e} ({d} ulp)");
        }
        println!("{op:?}: worst {worst:.2} ulp over {} inputs", xs.len());
    }
}

#[test]
fn gelu_forms_are_within_2_pow_minus_21_of_x() {
    let xs = sweep(12.0);
    let erf_form = |x: f64| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()));
    let tanh_form = |x: f64| {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    };
    for (op, reference, other) in [
        (
            UnaryOp::Gelu,
            erf_form as fn(f64) -> f64,
            tanh_form as fn(f64) -> f64,
        ),
        (UnaryOp::GeluTanh, tanh_form, erf_form),
    ] {
        let got = unary(op, &xs, 0.0, 0.0);
        let mut distinguished = false;
        for (&x, &g) in xs.iter().zip(&got) {
            let x64 = x as f64;
            let bound = 2f64.powi(-21) * x64.abs();
            let want = reference(x64);
            assert!(
                (g as f64 - want).abs() <= bound,
                "{op:?}({x:e}) = {g:e}, want {want:e}"
            );
            // The bound tells the forms apart (they differ by up to ~5e-4).
            distinguished |= (g as f64 - other(x64)).abs() > bound;
        }
        assert!(
            distinguished,
            "{op:?} is indistinguishable from the other form"
        );
    }
}

#[test]
fn prelu_takes_the_slope_per_column_and_keeps_nan_and_negative_zero() {
    let mut b = bench();
    let a = [-2.0f32, -0.0, 3.0, f32::NAN, -8.0, 1.0];
    let slope = [0.25f32, 2.0, -1.0];
    let mut input = f32_bytes(&a);
    input.extend(f32_bytes(&slope));
    let prog = [
        load(IN_VA, 0, 36),
        Insn::Binary {
            op: BinaryOp::Prelu,
            dtype: DType::F32,
            bcast: Broadcast::PerCol,
            rows: 2,
            cols: 3,
            a: tile(0, 3),
            b: tile(24, 0),
            out: tile(64, 3),
            scalar: 0,
        },
        // And with a scalar slope: a leaky relu.
        Insn::Binary {
            op: BinaryOp::Prelu,
            dtype: DType::F32,
            bcast: Broadcast::Scalar,
            rows: 2,
            cols: 3,
            a: tile(0, 3),
            b: tile(0, 0),
            out: tile(88, 3),
            scalar: 0.5f32.to_bits(),
        },
        store(OUT_VA, 64, 48),
    ];
    let (c, out) = run_program(&mut b, &input, 48, &prog);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    let got = bytes_f32(&out);
    let want = [
        -0.5f32,
        -0.0,
        3.0,
        f32::NAN,
        -16.0,
        1.0,
        -1.0,
        -0.0,
        3.0,
        f32::NAN,
        -4.0,
        1.0,
    ];
    for i in 0..want.len() {
        assert!(
            same(got[i], want[i]),
            "{i}: {:?} want {:?}",
            got[i],
            want[i]
        );
    }
}

/// A job of one compute instruction: its modelled cycles.
fn cycles_of(insn: Insn) -> u64 {
    let mut b = bench();
    let (c, _) = run_program(&mut b, &[], 0, &[insn]);
    assert_eq!(c.fault(), Some(Fault::Ok), "{c:?}");
    c.cycles.into()
}

#[test]
fn cost_model_special_and_vector_rates() {
    // npu-hw.rst, "Cost model": INSN_OVERHEAD (2) + elems / 8 for the
    // special functions, elems / 32 for the others.
    let n = 1000u32;
    let un = |op| Insn::Unary {
        op,
        dtype: DType::F32,
        rows: 10,
        cols: n / 10,
        src: tile(0, n / 10),
        dst: tile(8192, n / 10),
        lo: 0,
        hi: 0,
    };
    let base = cycles_of(un(UnaryOp::Relu));
    assert_eq!(base, cycles_of(un(UnaryOp::Move)));
    for op in UnaryOp::ALL {
        let want = if matches!(
            op,
            UnaryOp::Relu
                | UnaryOp::Clamp
                | UnaryOp::Move
                | UnaryOp::LeakyRelu
                | UnaryOp::HardSigmoid
                | UnaryOp::HardSwish
        ) {
            2 + 1000u64.div_ceil(32)
        } else {
            2 + 1000 / 8
        };
        // The job's cycles are the instruction's plus what every job costs
        // (the same for relu, whose cost is 2 + 32).
        assert_eq!(cycles_of(un(op)) - base + 34, want, "{op:?}");
    }
    let prelu = Insn::Binary {
        op: BinaryOp::Prelu,
        dtype: DType::F32,
        bcast: Broadcast::Scalar,
        rows: 10,
        cols: 100,
        a: tile(0, 100),
        b: tile(0, 0),
        out: tile(8192, 100),
        scalar: 0,
    };
    assert_eq!(cycles_of(prelu), base);
}

/// Run a raw command buffer of one instruction's words and END.
fn run_raw(words: [u8; INSN_SIZE]) -> Completion {
    let mut b = bench();
    let mut cmd = words.to_vec();
    cmd.extend(assemble(&[Insn::End]));
    b.run(0, CMD_VA, &cmd)
}

use npu_device::testbench::Completion;

#[test]
fn bad_f_values_and_dtypes_are_bad_operand() {
    let un = Insn::Unary {
        op: UnaryOp::Erf,
        dtype: DType::F32,
        rows: 1,
        cols: 4,
        src: tile(0, 4),
        dst: tile(64, 4),
        lo: 0,
        hi: 0,
    }
    .encode();
    assert_eq!(run_raw(un).fault(), Some(Fault::Ok));
    // F values past the last one.
    for f in [17u8, 18, 0x7f, 0xff] {
        let mut w = un;
        w[2] = f;
        let c = run_raw(w);
        assert_eq!(c.fault(), Some(Fault::BadOperand), "UNARY F {f}");
        assert_eq!(c.fault_addr, 0);
    }
    // Every new F value with dtype i32 (S1 = 1) or i8 (S1 = 2).
    for f in 7u8..=16 {
        for s1 in [1u8, 2] {
            let mut w = un;
            w[2] = f;
            w[1] = s1;
            assert_eq!(
                run_raw(w).fault(),
                Some(Fault::BadOperand),
                "UNARY F {f} dtype {s1}"
            );
        }
    }
    let bin = Insn::Binary {
        op: BinaryOp::Prelu,
        dtype: DType::F32,
        bcast: Broadcast::None,
        rows: 1,
        cols: 4,
        a: tile(0, 4),
        b: tile(16, 4),
        out: tile(64, 4),
        scalar: 0,
    }
    .encode();
    assert_eq!(run_raw(bin).fault(), Some(Fault::Ok));
    let mut w = bin;
    w[1] = 1; // i32 prelu
    assert_eq!(run_raw(w).fault(), Some(Fault::BadOperand));
    for f in [16u8, 0x80, 0xff] {
        let mut w = bin;
        w[2] = f;
        assert_eq!(run_raw(w).fault(), Some(Fault::BadOperand), "BINARY F {f}");
    }
}
