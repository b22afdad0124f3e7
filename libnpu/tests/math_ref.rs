//! The f32 math ops (UNARY F 7..16, BINARY prelu, scalar operands,
//! reductions over any axes, softmax and log-softmax on any axis) compiled
//! at 16 KiB and 1 MiB of SRAM, run on the device model and compared with
//! onnxruntime running the same operator as a single-node ONNX model
//! (tests/math_ref.py): a reference nobody here wrote.
//!
//! Tolerances come from npu-hw.rst's accuracy statements, doubled where
//! onnxruntime's own functions carry an error of the same kind: sqrt,
//! reciprocal, rsqrt (Sqrt then Reciprocal), leaky relu and prelu are
//! correctly rounded on both sides, so they must match exactly; log, erf and
//! elu are within 4 ulp; gelu within 2^-21 |x|; reductions within the
//! sequential-summation bound (n - 1) 2^-24 sum|x|. The int8 forms
//! (dequantize, the f32 op, quantize on the SRAM tile) must match
//! onnxruntime's DequantizeLinear -> op -> QuantizeLinear within one step
//! where an f32 ulp of difference crosses a rounding boundary.
//! Needs python3 with numpy, onnx and onnxruntime (scripts/host-deps.sh).

mod common;
use common::list;

use npu::ir::{BinaryOp, Graph, Op, Quant, ReduceKind, TensorType, UnaryOp};
use npu::isa::{self, Broadcast, Insn};
use npu::reference::TensorData;
use npu::{CompileOptions, DType, DeviceParams};
use std::collections::HashMap;

const SRAMS: [u32; 2] = [16 << 10, 1 << 20];
const ULP1: f64 = 1.0 / (1u64 << 23) as f64; // 2^-23, an ulp of 1

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32s(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32))
            .collect()
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() >> 56) as u8 as i8).collect()
    }
}

fn f32_spec(v: &[f32], shape: &[usize], feed: bool) -> String {
    let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
    format!(
        "{{\"dtype\":\"f32\",\"shape\":{},\"data\":{},\"feed\":{feed}}}",
        list(shape),
        list(&bits)
    )
}

fn i8_spec(v: &[i8], shape: &[usize]) -> String {
    format!(
        "{{\"dtype\":\"i8\",\"shape\":{},\"data\":{},\"feed\":true}}",
        list(shape),
        list(v)
    )
}

fn i64_spec(v: &[usize]) -> String {
    format!(
        "{{\"dtype\":\"i64\",\"shape\":[{}],\"data\":{}}}",
        v.len(),
        list(v)
    )
}

/// |got - want| <= atol + rtol |want| + xtol |x|.
#[derive(Clone, Copy)]
struct Tol {
    atol: f64,
    rtol: f64,
    xtol: f64,
}

const EXACT: Tol = Tol {
    atol: 0.0,
    rtol: 0.0,
    xtol: 0.0,
};

/// One comparison for tests/math_ref.py: the device's `got` against
/// onnxruntime running `op` (`extra`: more JSON fields, e.g. the tolerance
/// or `qdq`).
fn case_json(
    op: &str,
    inputs: &[String],
    attrs: &str,
    out_shape: &[usize],
    got: &TensorData,
    extra: &str,
) -> String {
    let got = match got {
        TensorData::F32(v) => list(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        TensorData::I8(v) => list(v),
        TensorData::I32(v) => list(v),
        TensorData::U8(v) => list(v),
        TensorData::F16(v) | TensorData::Bf16(v) => list(v),
    };
    format!(
        "{{\"op\":\"{op}\",\"inputs\":[{}],\"attrs\":{attrs},\"out_shape\":{},\"got\":{got}{extra}}}",
        inputs.join(","),
        list(out_shape)
    )
}

/// One case on its own.
fn ort(
    op: &str,
    inputs: &[String],
    attrs: &str,
    out_shape: &[usize],
    got: &TensorData,
    extra: &str,
) -> Result<usize, String> {
    let c = case_json(op, inputs, attrs, out_shape, got, extra);
    common::math_ref_batch(&[(op.to_string(), c)]).remove(0).1
}

fn tol_json(t: Tol) -> String {
    format!(
        ",\"atol\":{:e},\"rtol\":{:e},\"xtol\":{:e}",
        t.atol, t.rtol, t.xtol
    )
}

fn run(g: &Graph, inputs: &HashMap<String, TensorData>, sram: u32) -> TensorData {
    let r = common::run_device(g, inputs, sram, CompileOptions::default());
    r.outputs[&g.node(g.outputs()[0]).name].clone()
}

fn insns(g: &Graph, sram: u32) -> Vec<Insn> {
    npu::compile(
        g,
        DeviceParams { sram_size: sram },
        CompileOptions::default(),
    )
    .unwrap()
    .insns()
    .to_vec()
}

/// One f32 unary op: the IR op, the ONNX operator and attributes, the
/// input range and the tolerance.
struct UnaryCase {
    op: UnaryOp,
    onnx: &'static str,
    attrs: &'static str,
    range: (f32, f32),
    tol: Tol,
}

fn unary_cases() -> Vec<UnaryCase> {
    let c = |op, onnx, attrs, range, tol| UnaryCase {
        op,
        onnx,
        attrs,
        range,
        tol,
    };
    // 4 ulp on each side, relative, and an absolute floor of 4 ulp of the
    // results' largest magnitude for results near 0 (log near 1, erf and
    // elu near 0 are exact enough that the relative part covers them).
    let ulps = |n: f64, scale: f64| Tol {
        atol: n * ULP1 * scale / 2.0,
        rtol: n * ULP1,
        xtol: 0.0,
    };
    let gelu = Tol {
        atol: 0.0,
        rtol: 0.0,
        // 2^-21 |x| on the device's side and as much on onnxruntime's.
        xtol: 2.0 * 2f64.powi(-21),
    };
    // alpha * x + beta rounded twice (onnxruntime may fuse): an ulp of 1.
    let hard = Tol {
        atol: ULP1,
        rtol: ULP1,
        xtol: 0.0,
    };
    vec![
        c(UnaryOp::Sqrt, "Sqrt", "{}", (0.0, 100.0), EXACT),
        c(UnaryOp::Reciprocal, "Reciprocal", "{}", (0.05, 20.0), EXACT),
        c(UnaryOp::Log, "Log", "{}", (0.001, 100.0), ulps(8.0, 4.0)),
        c(UnaryOp::Erf, "Erf", "{}", (-4.0, 4.0), ulps(8.0, 1.0)),
        c(UnaryOp::Gelu, "Gelu", "{}", (-6.0, 6.0), gelu),
        c(
            UnaryOp::GeluTanh,
            "Gelu",
            "{\"approximate\":\"tanh\"}",
            (-6.0, 6.0),
            gelu,
        ),
        c(
            UnaryOp::LeakyRelu { alpha: 0.1 },
            "LeakyRelu",
            "{\"alpha\":0.1}",
            (-5.0, 5.0),
            EXACT,
        ),
        c(
            UnaryOp::Elu { alpha: 0.7 },
            "Elu",
            "{\"alpha\":0.7}",
            (-5.0, 5.0),
            ulps(8.0, 1.0),
        ),
        c(
            UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            "HardSigmoid",
            "{\"alpha\":0.2,\"beta\":0.5}",
            (-4.0, 4.0),
            hard,
        ),
        c(
            UnaryOp::HardSwish {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            "HardSwish",
            "{}",
            (-5.0, 5.0),
            Tol {
                atol: 6.0 * ULP1,
                ..hard
            },
        ),
    ]
}

fn unary_graph(op: UnaryOp, shape: &[usize]) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, shape)).unwrap();
    let y = g.add("y", Op::Unary { op, x }, None).unwrap();
    g.output(y).unwrap();
    g
}

/// Odd shapes: one that fits a tile, one longer than 16 KiB of f32.
const SHAPES: [&[usize]; 2] = [&[2, 3, 5, 7], &[3, 1667]];

#[test]
fn unary_functions_match_onnxruntime() {
    let mut rng = Rng(0x5eed);
    let mut cases = Vec::new();
    for case in unary_cases() {
        for shape in SHAPES {
            let g = unary_graph(case.op, shape);
            let n: usize = shape.iter().product();
            let x = rng.f32s(n, case.range.0, case.range.1);
            let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
            for sram in SRAMS {
                let got = run(&g, &inputs, sram);
                cases.push((
                    format!("{} {shape:?} at {sram} B", case.onnx),
                    case_json(
                        case.onnx,
                        &[f32_spec(&x, shape, true)],
                        case.attrs,
                        shape,
                        &got,
                        &tol_json(case.tol),
                    ),
                ));
            }
        }
    }
    println!("{} elements compared", common::math_ref_all_pass(&cases));
}

/// Sqrt then Reciprocal compiles to one UNARY rsqrt, exactly onnxruntime's
/// two nodes (the same two roundings).
#[test]
fn sqrt_then_reciprocal_is_one_rsqrt_and_exact() {
    let shape = [5usize, 301];
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, &shape)).unwrap();
    let s = g
        .add(
            "s",
            Op::Unary {
                op: UnaryOp::Sqrt,
                x,
            },
            None,
        )
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Unary {
                op: UnaryOp::Reciprocal,
                x: s,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    for sram in SRAMS {
        let unaries: Vec<isa::UnaryOp> = insns(&g, sram)
            .iter()
            .filter_map(|i| match i {
                Insn::Unary { op, .. } => Some(*op),
                _ => None,
            })
            .collect();
        assert!(!unaries.is_empty());
        assert!(
            unaries.iter().all(|&o| o == isa::UnaryOp::Rsqrt),
            "{unaries:?}"
        );
    }
    let mut rng = Rng(77);
    let xv = rng.f32s(shape.iter().product(), 0.0, 50.0);
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(xv.clone()))]);
    for sram in SRAMS {
        let got = run(&g, &inputs, sram);
        // onnxruntime's Sqrt, then numpy's correctly rounded f32 1 / root:
        // its two nodes.
        ort(
            "Sqrt",
            &[f32_spec(&xv, &shape, true)],
            "{}",
            &shape,
            &got,
            &(tol_json(EXACT) + ",\"post_reciprocal\":true"),
        )
        .unwrap_or_else(|e| panic!("rsqrt at {sram} B: {e}"));
    }
}

/// `1 / x` with a constant 1 is one UNARY recip (no tensor of ones, no
/// BINARY), and `1 / sqrt(x)` one rsqrt; both exact against onnxruntime's
/// Div (and Sqrt, then numpy's 1 / root).
#[test]
fn one_over_x_is_reciprocal_and_one_over_sqrt_is_rsqrt() {
    let shape = [7usize, 13];
    let mut rng = Rng(31);
    let xv = rng.f32s(91, 0.01, 30.0);
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(xv.clone()))]);
    for with_sqrt in [false, true] {
        let mut g = Graph::new();
        let x = g.input("x", TensorType::new(DType::F32, &shape)).unwrap();
        let one = g
            .constant(
                "one",
                TensorType::new(DType::F32, &[1]),
                TensorData::F32(vec![1.0]),
            )
            .unwrap();
        let d = if with_sqrt {
            g.add(
                "s",
                Op::Unary {
                    op: UnaryOp::Sqrt,
                    x,
                },
                None,
            )
            .unwrap()
        } else {
            x
        };
        let y = g
            .add(
                "y",
                Op::Binary {
                    op: BinaryOp::Div,
                    a: one,
                    b: d,
                },
                None,
            )
            .unwrap();
        g.output(y).unwrap();
        let want = if with_sqrt {
            isa::UnaryOp::Rsqrt
        } else {
            isa::UnaryOp::Recip
        };
        for sram in SRAMS {
            let prog = insns(&g, sram);
            assert!(!prog.iter().any(|i| matches!(i, Insn::Binary { .. })));
            assert!(prog
                .iter()
                .filter_map(|i| match i {
                    Insn::Unary { op, .. } => Some(*op),
                    _ => None,
                })
                .all(|op| op == want));
            let got = run(&g, &inputs, sram);
            let r = if with_sqrt {
                ort(
                    "Sqrt",
                    &[f32_spec(&xv, &shape, true)],
                    "{}",
                    &shape,
                    &got,
                    &(tol_json(EXACT) + ",\"post_reciprocal\":true"),
                )
            } else {
                ort(
                    "Div",
                    &[f32_spec(&[1.0], &[1], false), f32_spec(&xv, &shape, true)],
                    "{}",
                    &shape,
                    &got,
                    &tol_json(EXACT),
                )
            };
            r.unwrap_or_else(|e| panic!("sqrt {with_sqrt} at {sram} B: {e}"));
        }
    }
}

/// The test of erf-gelu tells it from the tanh form, and the other way
/// round: each form compared with the other's onnxruntime operator fails.
#[test]
fn gelu_tests_tell_the_erf_and_tanh_forms_apart() {
    let shape = [4usize, 250];
    let mut rng = Rng(99);
    let x = rng.f32s(1000, -6.0, 6.0);
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
    let gelu = unary_cases()
        .into_iter()
        .find(|c| c.op == UnaryOp::Gelu)
        .unwrap()
        .tol;
    for (op, attrs) in [
        (UnaryOp::Gelu, "{\"approximate\":\"tanh\"}"),
        (UnaryOp::GeluTanh, "{}"),
    ] {
        let got = run(&unary_graph(op, &shape), &inputs, 1 << 20);
        let r = ort(
            "Gelu",
            &[f32_spec(&x, &shape, true)],
            attrs,
            &shape,
            &got,
            &tol_json(gelu),
        );
        assert!(r.is_err(), "{op:?} passed as the other form: {r:?}");
    }
    // And erf itself is not tanh.
    let got = run(&unary_graph(UnaryOp::Tanh, &shape), &inputs, 1 << 20);
    let erf_tol = unary_cases()
        .into_iter()
        .find(|c| c.op == UnaryOp::Erf)
        .unwrap()
        .tol;
    assert!(ort(
        "Erf",
        &[f32_spec(&x, &shape, true)],
        "{}",
        &shape,
        &got,
        &tol_json(erf_tol)
    )
    .is_err());
}

/// PRelu with a per-channel slope ([C, 1, 1] over NCHW) and with one slope
/// for all; exact.
#[test]
fn prelu_per_channel_and_scalar_match_onnxruntime() {
    let shape = [2usize, 3, 5, 7];
    let mut rng = Rng(5);
    let x = rng.f32s(210, -3.0, 3.0);
    for slope_shape in [&[3usize, 1, 1][..], &[1][..], &[7][..]] {
        let ns: usize = slope_shape.iter().product();
        let slope = rng.f32s(ns, -0.5, 1.5);
        let mut g = Graph::new();
        let xv = g.input("x", TensorType::new(DType::F32, &shape)).unwrap();
        let s = g
            .constant(
                "slope",
                TensorType::new(DType::F32, slope_shape),
                TensorData::F32(slope.clone()),
            )
            .unwrap();
        let y = g
            .add(
                "y",
                Op::Binary {
                    op: BinaryOp::Prelu,
                    a: xv,
                    b: s,
                },
                None,
            )
            .unwrap();
        g.output(y).unwrap();
        let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
        for sram in SRAMS {
            let got = run(&g, &inputs, sram);
            ort(
                "PRelu",
                &[
                    f32_spec(&x, &shape, true),
                    f32_spec(&slope, slope_shape, false),
                ],
                "{}",
                &shape,
                &got,
                &tol_json(EXACT),
            )
            .unwrap_or_else(|e| panic!("slope {slope_shape:?} at {sram} B: {e}"));
        }
    }
}

/// An elementwise op with a one-element constant takes it as the BINARY
/// scalar immediate (broadcast 3): no load of it, and exact results.
#[test]
fn scalar_operands_are_immediates_and_match_onnxruntime() {
    let shape = [3usize, 7, 11];
    let mut rng = Rng(11);
    let x = rng.f32s(231, -4.0, 4.0);
    for (op, onnx) in [
        (BinaryOp::Add, "Add"),
        (BinaryOp::Sub, "Sub"),
        (BinaryOp::Mul, "Mul"),
        (BinaryOp::Div, "Div"),
        (BinaryOp::Max, "Max"),
        (BinaryOp::Prelu, "PRelu"),
    ] {
        let mut g = Graph::new();
        let xv = g.input("x", TensorType::new(DType::F32, &shape)).unwrap();
        let c = g
            .constant(
                "c",
                TensorType::new(DType::F32, &[1]),
                TensorData::F32(vec![0.37]),
            )
            .unwrap();
        let y = g.add("y", Op::Binary { op, a: xv, b: c }, None).unwrap();
        g.output(y).unwrap();
        for sram in SRAMS {
            let prog = insns(&g, sram);
            let binaries: Vec<&Insn> = prog
                .iter()
                .filter(|i| matches!(i, Insn::Binary { .. }))
                .collect();
            assert!(
                binaries.iter().all(|i| matches!(
                    i,
                    Insn::Binary {
                        bcast: Broadcast::Scalar,
                        scalar,
                        ..
                    } if *scalar == 0.37f32.to_bits()
                )),
                "{onnx}: {binaries:?}"
            );
            let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
            let got = run(&g, &inputs, sram);
            ort(
                onnx,
                &[f32_spec(&x, &shape, true), f32_spec(&[0.37], &[1], false)],
                "{}",
                &shape,
                &got,
                &tol_json(EXACT),
            )
            .unwrap_or_else(|e| panic!("{onnx} at {sram} B: {e}"));
        }
    }
}

fn reduce_graph(kind: ReduceKind, shape: &[usize], axes: &[usize], keepdims: bool) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, shape)).unwrap();
    let y = g
        .add(
            "y",
            Op::Reduce {
                kind,
                x,
                axes: axes.to_vec(),
                keepdims,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    g
}

#[test]
fn reductions_over_any_axes_match_onnxruntime() {
    let shape = [3usize, 5, 4, 7];
    let mut rng = Rng(3);
    let x = rng.f32s(420, -1.0, 1.0);
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
    let axes_sets: [&[usize]; 8] = [
        &[0],
        &[1],
        &[3],
        &[1, 2],
        &[0, 2],
        &[1, 3],
        &[0, 2, 3],
        &[0, 1, 2, 3],
    ];
    let mut cases = Vec::new();
    for (kind, onnx) in [
        (ReduceKind::Sum, "ReduceSum"),
        (ReduceKind::Mean, "ReduceMean"),
        (ReduceKind::Max, "ReduceMax"),
        (ReduceKind::Min, "ReduceMin"),
    ] {
        for axes in axes_sets {
            for keepdims in [true, false] {
                let g = reduce_graph(kind, &shape, axes, keepdims);
                let out_shape = g.ty(g.outputs()[0]).shape.clone();
                let n: usize = axes.iter().map(|&a| shape[a]).product();
                // Sequential sums, on each side: (n - 1) 2^-24 sum|x| with
                // |x| < 1; a mean divides it by n and rounds once more.
                let bound = 2.0 * (n as f64 - 1.0) * 2f64.powi(-24) * n as f64;
                let tol = match kind {
                    ReduceKind::Sum => Tol {
                        atol: bound,
                        rtol: ULP1,
                        xtol: 0.0,
                    },
                    ReduceKind::Mean => Tol {
                        atol: bound / n as f64,
                        rtol: 2.0 * ULP1,
                        xtol: 0.0,
                    },
                    _ => EXACT,
                };
                for sram in SRAMS {
                    let got = run(&g, &inputs, sram);
                    cases.push((
                        format!("{onnx} axes {axes:?} keepdims {keepdims} at {sram} B"),
                        case_json(
                            onnx,
                            &[f32_spec(&x, &shape, true), i64_spec(axes)],
                            &format!("{{\"keepdims\":{}}}", u8::from(keepdims)),
                            &out_shape,
                            &got,
                            &tol_json(tol),
                        ),
                    ));
                }
            }
        }
    }
    println!("{} elements compared", common::math_ref_all_pass(&cases));
}

/// A reduced axis longer than the SRAM holds at 16 KiB: chunks combine in
/// the accumulator.
#[test]
fn long_reductions_accumulate_chunks() {
    let mut rng = Rng(8);
    for (shape, axes) in [
        (&[2usize, 9000][..], &[1usize][..]),
        (&[5000, 3][..], &[0][..]),
    ] {
        let n: usize = shape.iter().product();
        let x = rng.f32s(n, -1.0, 1.0);
        let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
        for (kind, onnx) in [
            (ReduceKind::Max, "ReduceMax"),
            (ReduceKind::Sum, "ReduceSum"),
        ] {
            let g = reduce_graph(kind, shape, axes, true);
            let out_shape = g.ty(g.outputs()[0]).shape.clone();
            let len = shape[axes[0]] as f64;
            let tol = if kind == ReduceKind::Sum {
                Tol {
                    atol: 2.0 * len * len * 2f64.powi(-24),
                    rtol: 0.0,
                    xtol: 0.0,
                }
            } else {
                EXACT
            };
            let got = run(&g, &inputs, 16 << 10);
            ort(
                onnx,
                &[f32_spec(&x, shape, true), i64_spec(axes)],
                "{\"keepdims\":1}",
                &out_shape,
                &got,
                &tol_json(tol),
            )
            .unwrap_or_else(|e| panic!("{onnx} {shape:?}: {e}"));
        }
    }
}

#[test]
fn softmax_and_log_softmax_on_every_axis_match_onnxruntime() {
    let shape = [3usize, 5, 4, 7];
    let mut rng = Rng(21);
    let x = rng.f32s(420, -4.0, 4.0);
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
    let mut cases = Vec::new();
    for axis in 0..4 {
        let n = shape[axis] as f64;
        for log in [false, true] {
            let mut g = Graph::new();
            let xv = g.input("x", TensorType::new(DType::F32, &shape)).unwrap();
            let op = if log {
                Op::LogSoftmax { x: xv, axis }
            } else {
                Op::Softmax { x: xv, axis }
            };
            let y = g.add("y", op, None).unwrap();
            g.output(y).unwrap();
            // exp within 4 ulp, n sequential additions, a reciprocal and a
            // product (or a log within 4 ulp of a sum good to n ulp), on
            // each side.
            let tol = if log {
                Tol {
                    atol: 2.0 * (n + 8.0) * ULP1,
                    rtol: 8.0 * ULP1,
                    xtol: 0.0,
                }
            } else {
                Tol {
                    atol: 0.0,
                    rtol: 2.0 * (n + 8.0) * ULP1,
                    xtol: 0.0,
                }
            };
            for sram in SRAMS {
                let got = run(&g, &inputs, sram);
                cases.push((
                    format!("log {log} axis {axis} at {sram} B"),
                    case_json(
                        if log { "LogSoftmax" } else { "Softmax" },
                        &[f32_spec(&x, &shape, true)],
                        &format!("{{\"axis\":{axis}}}"),
                        &shape,
                        &got,
                        &tol_json(tol),
                    ),
                ));
            }
        }
    }
    println!("{} elements compared", common::math_ref_all_pass(&cases));
}

/// int8 log-softmax (dequantize, the f32 log-softmax, quantize with the
/// result's own quantization) on every axis, against onnxruntime's
/// DequantizeLinear -> LogSoftmax -> QuantizeLinear: within one step, at
/// most two elements one step off (an f32 ulp across a rounding boundary).
/// A result without its quantization is refused.
#[test]
fn int8_log_softmax_matches_onnxruntime_qdq() {
    let shape = [3usize, 5, 4, 7];
    let (sx, zx) = (0.06f32, 9i8);
    let (sy, zy) = (0.05f32, 127i8);
    let mut rng = Rng(777);
    let x = rng.i8s(420);
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(x.clone()))]);
    let xq = TensorType::quantized(
        &shape,
        Quant::PerTensor {
            scale: sx,
            zero_point: zx,
        },
    );
    let mut cases = Vec::new();
    for axis in 0..4 {
        let mut g = Graph::new();
        let xv = g.input("x", xq.clone()).unwrap();
        let q = Quant::PerTensor {
            scale: sy,
            zero_point: zy,
        };
        let y = g.add("y", Op::LogSoftmax { x: xv, axis }, Some(q)).unwrap();
        g.output(y).unwrap();
        let qdq =
            format!(",\"qdq\":{{\"inputs\":[[{sx},{zx}]],\"output\":[{sy},{zy}]}},\"max_off\":2");
        for sram in SRAMS {
            let got = run(&g, &inputs, sram);
            cases.push((
                format!("int8 log_softmax axis {axis} at {sram} B"),
                case_json(
                    "LogSoftmax",
                    &[i8_spec(&x, &shape)],
                    &format!("{{\"axis\":{axis}}}"),
                    &shape,
                    &got,
                    &qdq,
                ),
            ));
        }
    }
    println!("{} elements compared", common::math_ref_all_pass(&cases));
    let mut g = Graph::new();
    let xv = g.input("x", xq).unwrap();
    let e = g
        .add("y", Op::LogSoftmax { x: xv, axis: 1 }, None)
        .unwrap_err();
    assert!(e.to_string().contains("quantization"), "{e}");
}

/// int8 forms of the activations models quantize (leaky relu, hard
/// sigmoid, hard swish, gelu, elu) and of prelu: onnxruntime's
/// DequantizeLinear -> op -> QuantizeLinear.
#[test]
fn int8_activations_match_onnxruntime_qdq() {
    let shape = [2usize, 3, 5, 7];
    let n = 210;
    let (sx, zx, sy, zy) = (0.05f32, 3i8, 0.04f32, -5i8);
    let qx = Quant::PerTensor {
        scale: sx,
        zero_point: zx,
    };
    let qy = Quant::PerTensor {
        scale: sy,
        zero_point: zy,
    };
    let mut rng = Rng(1234);
    let x = rng.i8s(n);
    let qdq = format!(",\"qdq\":{{\"inputs\":[[{sx},{zx}]],\"output\":[{sy},{zy}]}},\"max_off\":4");
    let cases: Vec<(UnaryOp, &str, &str)> = vec![
        (
            UnaryOp::LeakyRelu { alpha: 0.1 },
            "LeakyRelu",
            "{\"alpha\":0.1}",
        ),
        (
            UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            "HardSigmoid",
            "{\"alpha\":0.2,\"beta\":0.5}",
        ),
        (
            UnaryOp::HardSwish {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            "HardSwish",
            "{}",
        ),
        (UnaryOp::Gelu, "Gelu", "{}"),
        (UnaryOp::Elu { alpha: 1.0 }, "Elu", "{}"),
    ];
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(x.clone()))]);
    for (op, onnx, attrs) in cases {
        let mut g = Graph::new();
        let xv = g
            .input("x", TensorType::quantized(&shape, qx.clone()))
            .unwrap();
        let y = g
            .add("y", Op::Unary { op, x: xv }, Some(qy.clone()))
            .unwrap();
        g.output(y).unwrap();
        for sram in SRAMS {
            let got = run(&g, &inputs, sram);
            ort(onnx, &[i8_spec(&x, &shape)], attrs, &shape, &got, &qdq)
                .unwrap_or_else(|e| panic!("int8 {onnx} at {sram} B: {e}"));
        }
    }
    // PRelu: both operands int8, the slope per channel.
    let slope_shape = [3usize, 1, 1];
    let (ss, zs) = (0.01f32, -20i8);
    let slope = rng.i8s(3);
    let mut g = Graph::new();
    let xv = g
        .input("x", TensorType::quantized(&shape, qx.clone()))
        .unwrap();
    let sv = g
        .input(
            "s",
            TensorType::quantized(
                &slope_shape,
                Quant::PerTensor {
                    scale: ss,
                    zero_point: zs,
                },
            ),
        )
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Binary {
                op: BinaryOp::Prelu,
                a: xv,
                b: sv,
            },
            Some(qy.clone()),
        )
        .unwrap();
    g.output(y).unwrap();
    let mut inputs = inputs.clone();
    inputs.insert("s".into(), TensorData::I8(slope.clone()));
    let qdq2 = format!(
        ",\"qdq\":{{\"inputs\":[[{sx},{zx}],[{ss},{zs}]],\"output\":[{sy},{zy}]}},\"max_off\":4"
    );
    for sram in SRAMS {
        let got = run(&g, &inputs, sram);
        ort(
            "PRelu",
            &[i8_spec(&x, &shape), i8_spec(&slope, &slope_shape)],
            "{}",
            &shape,
            &got,
            &qdq2,
        )
        .unwrap_or_else(|e| panic!("int8 PRelu at {sram} B: {e}"));
    }
}

/// Bad reductions are graph errors with a message, not panics.
#[test]
fn bad_reduction_axes_are_refused() {
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, &[2, 3])).unwrap();
    for axes in [vec![], vec![2], vec![1, 0], vec![1, 1]] {
        let e = g
            .add(
                "y",
                Op::Reduce {
                    kind: ReduceKind::Sum,
                    x,
                    axes: axes.clone(),
                    keepdims: true,
                },
                None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("axes"), "{axes:?}: {e}");
    }
    let i = g.input("i", TensorType::new(DType::I32, &[2, 3])).unwrap();
    let e = g
        .add(
            "y",
            Op::Reduce {
                kind: ReduceKind::Sum,
                x: i,
                axes: vec![0],
                keepdims: true,
            },
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("f32 or i8"), "{e}");
}

/// int8 reductions (dequantize, the f32 reduction, quantize) against
/// onnxruntime's DequantizeLinear -> Reduce* -> QuantizeLinear.
#[test]
fn int8_reductions_match_onnxruntime_qdq() {
    let shape = [3usize, 5, 4, 7];
    let (sx, zx) = (0.05f32, -7i8);
    let mut rng = Rng(4321);
    let x = rng.i8s(420);
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(x.clone()))]);
    let mut cases = Vec::new();
    for (kind, onnx, axes, sy, zy) in [
        (
            ReduceKind::Mean,
            "ReduceMean",
            &[1usize, 3][..],
            0.02f32,
            3i8,
        ),
        (ReduceKind::Max, "ReduceMax", &[0, 2][..], 0.05, -7),
        (ReduceKind::Min, "ReduceMin", &[3][..], 0.05, 0),
        (ReduceKind::Sum, "ReduceSum", &[2][..], 0.2, 1),
    ] {
        for keepdims in [true, false] {
            let mut g = Graph::new();
            let xv = g
                .input(
                    "x",
                    TensorType::quantized(
                        &shape,
                        Quant::PerTensor {
                            scale: sx,
                            zero_point: zx,
                        },
                    ),
                )
                .unwrap();
            let op = Op::Reduce {
                kind,
                x: xv,
                axes: axes.to_vec(),
                keepdims,
            };
            let q = Quant::PerTensor {
                scale: sy,
                zero_point: zy,
            };
            let y = g.add("y", op, Some(q)).unwrap();
            g.output(y).unwrap();
            let out_shape = g.ty(y).shape.clone();
            let qdq = format!(
                ",\"qdq\":{{\"inputs\":[[{sx},{zx}]],\"output\":[{sy},{zy}]}},\"max_off\":2"
            );
            for sram in SRAMS {
                let got = run(&g, &inputs, sram);
                cases.push((
                    format!("int8 {onnx} axes {axes:?} keepdims {keepdims} at {sram} B"),
                    case_json(
                        onnx,
                        &[i8_spec(&x, &shape), i64_spec(axes)],
                        &format!("{{\"keepdims\":{}}}", u8::from(keepdims)),
                        &out_shape,
                        &got,
                        &qdq,
                    ),
                ));
            }
        }
    }
    println!("{} elements compared", common::math_ref_all_pass(&cases));
}

/// The text form names every new op; a kernel of them prints and parses
/// back to the same graph, and runs like the graph built by hand.
#[test]
fn text_form_round_trips_the_math_ops() {
    let src = "\
input x: f32[4,6,5]
input s: f32[6,1]
a = sqrt(x) |> reciprocal
b = rsqrt(x) |> log |> erf |> gelu |> gelu_tanh
c = leaky_relu(x, alpha=-0.25) |> elu(alpha=0.5)
d = hard_sigmoid(x, alpha=0.2, beta=0.5) |> hard_swish(alpha=0.16666667, beta=0.5)
e = prelu(x, s)
f = reduce_mean(x, axes=[0,2], keepdims=1)
h = reduce_min(x, axes=[1], keepdims=0)
i = log_softmax(x, axis=1)
output a, b, c, d, e, f, h, i
";
    let g = npu::text::parse(src).unwrap_or_else(|e| panic!("{e}"));
    let printed = npu::text::print(&g);
    let g2 = npu::text::parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(g, g2);
    for want in [
        "leaky_relu(x, alpha=-0.25)",
        "hard_sigmoid(x, alpha=0.2, beta=0.5)",
        "reduce_mean(x, axes=[0,2], keepdims=1)",
        "reduce_min(x, axes=[1], keepdims=0)",
        "log_softmax(x, axis=1)",
        "prelu(x, s)",
    ] {
        assert!(printed.contains(want), "{want}:\n{printed}");
    }
    // It compiles and runs at both SRAM sizes, every output within 1e-5 of
    // libnpu's reference executor (f64 where it sums).
    for sram in SRAMS {
        common::check(&g, 5, sram, 1e-5);
    }
}

/// A constant first operand that broadcasts: sub is swapped and negated
/// (exact), div gets the constant materialised to the result's shape (the
/// device broadcasts only the second operand); both exact against
/// onnxruntime.
#[test]
fn constant_first_operands_match_onnxruntime() {
    let shape = [3usize, 4, 5];
    let mut rng = Rng(17);
    let xv = rng.f32s(60, 0.1, 4.0);
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(xv.clone()))]);
    let mut cases = Vec::new();
    for (op, onnx) in [(BinaryOp::Sub, "Sub"), (BinaryOp::Div, "Div")] {
        for (cshape, cval) in [
            (&[1usize][..], vec![2.5f32]),
            (&[4, 1][..], vec![1.5, -2.0, 3.0, 0.25]),
        ] {
            let mut g = Graph::new();
            let c = g
                .constant(
                    "c",
                    TensorType::new(DType::F32, cshape),
                    TensorData::F32(cval.clone()),
                )
                .unwrap();
            let x = g.input("x", TensorType::new(DType::F32, &shape)).unwrap();
            let y = g.add("y", Op::Binary { op, a: c, b: x }, None).unwrap();
            g.output(y).unwrap();
            for sram in SRAMS {
                let got = run(&g, &inputs, sram);
                cases.push((
                    format!("{onnx} c{cshape:?} at {sram} B"),
                    case_json(
                        onnx,
                        &[f32_spec(&cval, cshape, false), f32_spec(&xv, &shape, true)],
                        "{}",
                        &shape,
                        &got,
                        &tol_json(EXACT),
                    ),
                ));
            }
        }
    }
    common::math_ref_all_pass(&cases);
}
