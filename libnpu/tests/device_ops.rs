//! Every op and dtype, compiled and run on the in-process device model,
//! against the CPU reference. Small SRAM sizes force real tiling.

mod common;
use common::check;
use npu::ir::{BinaryOp, Graph, Op, PoolKind, Quant, TensorType, UnaryOp, Window};
use npu::DType;
use npu::{CompileOptions, TensorData};

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape)
}

#[test]
fn gemm_f32_tiled_with_bias_relu() {
    for (seed, (m, n, k)) in [(1u64, (5, 7, 3)), (2, (67, 45, 130)), (3, (1, 200, 33))].into_iter()
    {
        let mut g = Graph::new();
        let a = g.input("a", f32t(&[m, k])).unwrap();
        let b = g.input("b", f32t(&[k, n])).unwrap();
        let bias = g.input("bias", f32t(&[n])).unwrap();
        let c = g
            .add(
                "c",
                Op::Gemm {
                    a,
                    b,
                    bias: Some(bias),
                    trans_a: false,
                    trans_b: false,
                },
                None,
            )
            .unwrap();
        let r = g
            .add(
                "r",
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: c,
                },
                None,
            )
            .unwrap();
        g.output(r).unwrap();
        check(&g, seed, 8 * 1024, 1e-4);
    }
}

fn q(scale: f32) -> Option<Quant> {
    Some(Quant::PerTensor {
        scale,
        zero_point: 0,
    })
}

fn i8t(shape: &[usize], scale: f32) -> TensorType {
    TensorType::quantized(
        shape,
        Quant::PerTensor {
            scale,
            zero_point: 0,
        },
    )
}

#[test]
fn gemm_f32_transposes() {
    for (seed, ta, tb) in [(4u64, true, false), (5, false, true), (6, true, true)] {
        let (m, n, k) = (19, 23, 70);
        let mut g = Graph::new();
        let a = g
            .input("a", f32t(&if ta { [k, m] } else { [m, k] }))
            .unwrap();
        let b = g
            .input("b", f32t(&if tb { [n, k] } else { [k, n] }))
            .unwrap();
        let c = g
            .add(
                "c",
                Op::Gemm {
                    a,
                    b,
                    bias: None,
                    trans_a: ta,
                    trans_b: tb,
                },
                None,
            )
            .unwrap();
        g.output(c).unwrap();
        check(&g, seed, 4 * 1024, 1e-4);
    }
}

#[test]
fn gemm_int8_exact_per_tensor_and_per_channel() {
    for (seed, (m, n, k), per_channel, trans_b, relu) in [
        (7u64, (33, 17, 90), false, false, true),
        (8, (50, 70, 300), true, false, false),
        (9, (9, 40, 129), true, true, true),
    ] {
        let mut g = Graph::new();
        let a = g.input("a", i8t(&[m, k], 0.02)).unwrap();
        let wq = if per_channel {
            Quant::PerChannel {
                scales: (0..n).map(|i| 0.001 + 0.0005 * i as f32).collect(),
                axis: if trans_b { 0 } else { 1 },
                zero_points: vec![],
            }
        } else {
            Quant::PerTensor {
                scale: 0.01,
                zero_point: 0,
            }
        };
        let b = g
            .input(
                "w",
                TensorType::quantized(&if trans_b { [n, k] } else { [k, n] }, wq),
            )
            .unwrap();
        let bias = g.input("bias", TensorType::new(DType::I32, &[n])).unwrap();
        let out_q = Some(Quant::PerTensor {
            scale: 0.05,
            zero_point: -3,
        });
        let c = g
            .add(
                "c",
                Op::Gemm {
                    a,
                    b,
                    bias: Some(bias),
                    trans_a: false,
                    trans_b,
                },
                out_q,
            )
            .unwrap();
        let out = if relu {
            g.add(
                "r",
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: c,
                },
                None,
            )
            .unwrap()
        } else {
            c
        };
        g.output(out).unwrap();
        // The independent int8 reference (tests/common/int8_ref.rs) covers it.
        assert_eq!(
            common::int8_checked_outputs(&g, &common::random_inputs(&g, seed)),
            1
        );
        check(&g, seed, 6 * 1024, 0.0);
    }
}

fn conv_graph(
    dtype: DType,
    x: [usize; 4],
    k: usize,
    rs: [usize; 2],
    win: Window,
    groups: usize,
    act: Option<UnaryOp>,
) -> Graph {
    let mut g = Graph::new();
    let cg = x[1] / groups;
    let (input, weight, bias, oq) = if dtype == DType::F32 {
        (f32t(&x), f32t(&[k, cg, rs[0], rs[1]]), f32t(&[k]), None)
    } else {
        (
            i8t(&x, 0.03),
            TensorType::quantized(
                &[k, cg, rs[0], rs[1]],
                Quant::PerChannel {
                    scales: (0..k).map(|i| 0.002 + 0.001 * i as f32).collect(),
                    axis: 0,
                    zero_points: vec![],
                },
            ),
            TensorType::new(DType::I32, &[k]),
            q(0.04),
        )
    };
    let i = g.input("x", input).unwrap();
    let w = g.input("w", weight).unwrap();
    let b = g.input("b", bias).unwrap();
    let c = g
        .add(
            "y",
            Op::Conv2d {
                input: i,
                weight: w,
                bias: Some(b),
                window: win,
                groups,
            },
            oq,
        )
        .unwrap();
    let out = match act {
        Some(op) => g.add("act", Op::Unary { op, x: c }, None).unwrap(),
        None => c,
    };
    g.output(out).unwrap();
    g
}

#[test]
fn conv2d_f32_and_int8() {
    let w = |s: usize, p: usize, d: usize| Window {
        stride: [s, s],
        padding: [p, p],
        dilation: [d, d],
    };
    type Case = ([usize; 4], usize, [usize; 2], Window, usize);
    let cases: &[Case] = &[
        ([1, 3, 9, 11], 8, [3, 3], w(1, 1, 1), 1),
        ([2, 4, 13, 10], 6, [3, 3], w(2, 1, 1), 2),
        ([1, 8, 12, 12], 8, [3, 3], w(1, 1, 1), 8), // depthwise
        ([1, 3, 15, 14], 5, [3, 2], w(1, 2, 2), 1), // dilation
        ([1, 16, 20, 20], 20, [1, 1], w(1, 0, 1), 1),
    ];
    for (i, &(x, k, rs, win, groups)) in cases.iter().enumerate() {
        for dtype in [DType::F32, DType::I8] {
            let g = conv_graph(dtype, x, k, rs, win, groups, Some(UnaryOp::Relu));
            let tol = if dtype == DType::F32 { 1e-4 } else { 0.0 };
            let covered = common::int8_checked_outputs(&g, &common::random_inputs(&g, 1));
            assert_eq!(
                covered,
                (dtype == DType::I8) as usize,
                "independent int8 reference"
            );
            check(&g, 100 + i as u64, 16 * 1024, tol);
        }
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    let shapes: &[(&[usize], &[usize])] = &[
        (&[37, 29], &[37, 29]),
        (&[5, 7, 33], &[33]),
        (&[5, 7, 33], &[7, 33]),
        (&[40, 9], &[40, 1]),
        (&[6, 5, 4], &[1]),
        (&[3, 1], &[3, 50]),
        (&[2, 4, 5, 6], &[4, 1, 1]),
        (&[3, 7, 9], &[3, 1, 9]),
    ];
    for (i, &(sa, sb)) in shapes.iter().enumerate() {
        for op in BinaryOp::ALL {
            // The device broadcasts only the second operand; a broadcast first
            // operand is swapped (and sub negated); div and prelu refuse it.
            let swap_needed = sa.iter().product::<usize>() < sb.iter().product::<usize>();
            let mut g = Graph::new();
            let a = g.input("a", f32t(sa)).unwrap();
            let b = g.input("b", f32t(sb)).unwrap();
            let c = g.add("c", Op::Binary { op, a, b }, None).unwrap();
            g.output(c).unwrap();
            if swap_needed && matches!(op, BinaryOp::Div | BinaryOp::Prelu) {
                let r = npu::compile(
                    &g,
                    npu::DeviceParams { sram_size: 4096 },
                    Default::default(),
                );
                assert!(
                    matches!(r, Err(npu::LowerError::Unsupported { .. })),
                    "{sa:?} / {sb:?}: {:?}",
                    r.err()
                );
                continue;
            }
            check(&g, 200 + i as u64, 4 * 1024, 1e-5);
        }
    }
}

#[test]
fn unary_f32_and_int8() {
    let ops = [
        UnaryOp::Relu,
        UnaryOp::Clamp { lo: -0.3, hi: 0.5 },
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let mut g = Graph::new();
        let x = g.input("x", f32t(&[3, 1001])).unwrap();
        let y = g.add("y", Op::Unary { op, x }, None).unwrap();
        g.output(y).unwrap();
        check(&g, 300 + i as u64, 4 * 1024, 1e-5);
        if matches!(op, UnaryOp::Relu | UnaryOp::Clamp { .. }) {
            let mut g = Graph::new();
            let x = g
                .input(
                    "x",
                    TensorType::quantized(
                        &[5000],
                        Quant::PerTensor {
                            scale: 0.01,
                            zero_point: 7,
                        },
                    ),
                )
                .unwrap();
            let y = g.add("y", Op::Unary { op, x }, None).unwrap();
            g.output(y).unwrap();
            check(&g, 310 + i as u64, 4 * 1024, 0.0);
        }
    }
}

#[test]
fn pooling_max_and_avg() {
    for (i, kind) in [PoolKind::Max, PoolKind::Avg].into_iter().enumerate() {
        for (j, (kernel, s, p)) in [([2, 2], 2, 0), ([3, 3], 2, 1), ([3, 2], 1, 1)]
            .into_iter()
            .enumerate()
        {
            let mut g = Graph::new();
            let x = g.input("x", f32t(&[2, 5, 11, 13])).unwrap();
            let win = Window {
                stride: [s, s],
                padding: [p, p],
                dilation: [1, 1],
            };
            let y = g
                .add(
                    "y",
                    Op::Pool {
                        kind,
                        x,
                        kernel,
                        window: win,
                    },
                    None,
                )
                .unwrap();
            g.output(y).unwrap();
            check(&g, 400 + (i * 10 + j) as u64, 4 * 1024, 1e-5);
        }
    }
}

#[test]
fn softmax_last_axis() {
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[3, 37, 100])).unwrap();
    let y = g.add("y", Op::Softmax { x, axis: 2 }, None).unwrap();
    g.output(y).unwrap();
    check(&g, 500, 4 * 1024, 1e-5);
}

#[test]
fn small_cnn_end_to_end() {
    let g = npu::text::parse(include_str!("../examples/small_cnn.npu")).unwrap();
    check(&g, 600, 32 * 1024, 1e-4);
}

/// The modelled cycle count of a large gemm drops with double buffering.
#[test]
fn double_buffering_cuts_cycles() {
    let (m, n, k) = (256, 256, 256);
    let mut g = Graph::new();
    let a = g.input("a", f32t(&[m, k])).unwrap();
    let b = g.input("b", f32t(&[k, n])).unwrap();
    let c = g
        .add(
            "c",
            Op::Gemm {
                a,
                b,
                bias: None,
                trans_a: false,
                trans_b: false,
            },
            None,
        )
        .unwrap();
    g.output(c).unwrap();
    let inputs = common::random_inputs(&g, 77);
    let sram = 64 * 1024;
    let on = common::run_device(
        &g,
        &inputs,
        sram,
        CompileOptions {
            double_buffer: true,
            ..Default::default()
        },
    );
    let off = common::run_device(
        &g,
        &inputs,
        sram,
        CompileOptions {
            double_buffer: false,
            ..Default::default()
        },
    );
    println!(
        "gemm {m}x{n}x{k}, SRAM {sram}: double buffering {} cycles, single {} cycles",
        on.cycles, off.cycles
    );
    // Tile sizes differ, so f32 sums round differently: compare loosely.
    let (TensorData::F32(x), TensorData::F32(y)) = (&on.outputs["c"], &off.outputs["c"]) else {
        panic!("f32 output expected")
    };
    assert!(
        x.iter()
            .zip(y)
            .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0)),
        "double-buffered and serial results differ"
    );
    assert!(
        (on.cycles as f64) < 0.9 * off.cycles as f64,
        "double-buffered {} vs serial {} cycles",
        on.cycles,
        off.cycles
    );
}

/// A chain whose intermediates share scratch space, plus a value read twice
/// much later (it must survive the reuse).
#[test]
fn scratch_reuse_keeps_live_values() {
    let src = "input a: f32[33,70]\ninput v: f32[70]\nt = add(a, v) |> tanh |> sigmoid |> exp\nu = mul(t, t) |> relu\nw = sub(u, t.1)\noutput w";
    let g = npu::text::parse(src).unwrap();
    check(&g, 700, 4 * 1024, 1e-5);
}

/// A uint8 input and output through sign_flip, from the text form: the
/// int8 view is each byte minus 128 (its top bit flipped), and relu on
/// real values is `max(q, zp)` in uint8, checked by hand for every byte
/// value at two SRAM sizes (tiles of 256 elements and of everything).
#[test]
fn uint8_inputs_and_outputs_flip_on_the_device() {
    let src = "\
input x: u8[16,64] q(scale=0.5, zp=200)
xi = sign_flip(x)
r = relu(xi)
y = sign_flip(r)
output y, xi
";
    let g = npu::text::parse(src).unwrap();
    assert_eq!(npu::text::parse(&npu::text::print(&g)).unwrap(), g);
    assert_eq!(g.ty(g.lookup("y").unwrap()).dtype, DType::U8);
    assert_eq!(g.ty(g.lookup("xi").unwrap()).zero_point_value(), 72);
    let bytes: Vec<u8> = (0..1024).map(|i| (i * 7 % 256) as u8).collect();
    let inputs =
        std::collections::HashMap::from([("x".to_string(), TensorData::U8(bytes.clone()))]);
    for sram in [4096, 64 << 10] {
        let run = common::run_device(&g, &inputs, sram, CompileOptions::default());
        let want_xi: Vec<i8> = bytes.iter().map(|&b| (b as i32 - 128) as i8).collect();
        let want_y: Vec<u8> = bytes.iter().map(|&b| b.max(200)).collect();
        assert_eq!(run.outputs["xi"], TensorData::I8(want_xi));
        assert_eq!(run.outputs["y"], TensorData::U8(want_y));
    }
    // u8 only converts: another op on it is refused.
    let e = npu::text::parse("input x: u8[4] q(scale=0.5, zp=200)\ny = relu(x)\noutput y\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sign_flip"), "{e}");
}

/// Int8 ops without an integer ISA form run as dequantize -> f32 ->
/// quantize, exactly as the reference defines them.
#[test]
fn int8_through_f32_ops() {
    let src = "\
input a: i8[20,300] q(scale=0.05, zp=3)
input b: i8[300] q(scale=0.02, zp=-7)
input img: i8[2,3,9,10] q(scale=0.1, zp=0)
s: i8 q(scale=0.08, zp=1) = add(a, b)
m: i8 q(scale=0.08, zp=0) = mul(a, b)
d: i8 q(scale=0.5, zp=0) = div(a, b)
g: i8 q(scale=0.004, zp=-128) = sigmoid(a)
t: i8 q(scale=0.008, zp=0) = tanh(b)
e: i8 q(scale=0.2, zp=-100) = exp(a)
p = maxpool(img, kernel=3, stride=2, pad=1)
v: i8 q(scale=0.05, zp=0) = avgpool(img, kernel=2, stride=2)
f = dequantize(a) |> softmax(axis=1)
q: i8 q(scale=0.01, zp=-128) = softmax(a, axis=1)
r: i8 q(scale=0.03, zp=2) = quantize(f)
output s, m, d, g, t, e, p, v, r, q
";
    let g = npu::text::parse(src).unwrap();
    check(&g, 800, 4 * 1024, 0.0);
}

#[test]
fn binary_ops_with_a_one_element_constant() {
    // The constant is BINARY's immediate (nothing of it is loaded, so the
    // program has no constant buffer), over tiles of any shape of the
    // elements: 4099 is prime, 8192 splits into rows of 4096.
    let shapes: &[&[usize]] = &[&[6, 5, 4], &[3, 4099], &[2, 8192], &[1]];
    for (i, &sa) in shapes.iter().enumerate() {
        for op in BinaryOp::ALL {
            for first in [false, true] {
                if first && matches!(op, BinaryOp::Div | BinaryOp::Prelu) && sa != [1] {
                    continue; // a broadcast first operand of div or prelu is refused
                }
                let mut g = Graph::new();
                let a = g.input("a", f32t(sa)).unwrap();
                let k = g
                    .constant("k", f32t(&[1]), TensorData::F32(vec![-0.375]))
                    .unwrap();
                let (x, y) = if first { (k, a) } else { (a, k) };
                let c = g.add("c", Op::Binary { op, a: x, b: y }, None).unwrap();
                g.output(c).unwrap();
                check(&g, 300 + i as u64, 4 * 1024, 1e-6);
                let p = npu::compile(
                    &g,
                    npu::DeviceParams { sram_size: 4096 },
                    Default::default(),
                )
                .unwrap();
                if sa != [1] {
                    assert!(
                        p.buffers()
                            .iter()
                            .all(|b| b.kind != npu::lower::BufferKind::Constant),
                        "{sa:?} {op:?}: the constant was loaded"
                    );
                }
            }
        }
    }
}
