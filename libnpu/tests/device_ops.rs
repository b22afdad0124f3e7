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

/// f16 and bf16 inputs and outputs through cast, from the text form: the
/// caller's elements are 16-bit, converted to and from f32 on the device.
/// Every f16 bit pattern but NaNs and -0 goes through relu and back, whose
/// result is known by hand (the value when positive, else +0); the bf16
/// output is compared with the `half` crate's f16 -> f32 -> bf16, at two
/// SRAM sizes (tiles of a few hundred elements and of everything).
#[test]
fn f16_and_bf16_inputs_and_outputs_convert_on_the_device() {
    let src = "\
input x: f16[63,1024]
xf = cast(x, to=f32)
r = relu(xf)
y = cast(r, to=f16)
yb = cast(xf, to=bf16)
output y, yb
";
    let g = npu::text::parse(src).unwrap();
    assert_eq!(npu::text::parse(&npu::text::print(&g)).unwrap(), g);
    assert_eq!(g.ty(g.lookup("y").unwrap()).dtype, DType::F16);
    assert_eq!(g.ty(g.lookup("yb").unwrap()).dtype, DType::Bf16);
    let is_nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
    let mut bits: Vec<u16> = (0..=u16::MAX)
        .filter(|&h| !is_nan(h) && h != 0x8000)
        .collect();
    bits.resize(63 * 1024, 0x3c00);
    let inputs =
        std::collections::HashMap::from([("x".to_string(), TensorData::F16(bits.clone()))]);
    let want_y: Vec<u16> = bits
        .iter()
        .map(|&h| if h & 0x8000 == 0 { h } else { 0 })
        .collect();
    let want_yb: Vec<u16> = bits
        .iter()
        .map(|&h| half::bf16::from_f32(half::f16::from_bits(h).to_f32()).to_bits())
        .collect();
    for sram in [4096, 512 << 10] {
        let run = common::run_device(&g, &inputs, sram, CompileOptions::default());
        assert_eq!(
            run.outputs["y"],
            TensorData::F16(want_y.clone()),
            "sram {sram}"
        );
        assert_eq!(
            run.outputs["yb"],
            TensorData::Bf16(want_yb.clone()),
            "sram {sram}"
        );
    }
    // f16 only converts: another op on it is refused.
    let e = npu::text::parse("input x: f16[4]\ny = relu(x)\noutput y\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cast"), "{e}");
    for bad in [
        "input x: f16[4]\ny = cast(x, to=bf16)\noutput y\n",
        "input x: f32[4]\ny = cast(x, to=f32)\noutput y\n",
        "input x: i8[4] q(scale=0.5, zp=0)\ny = cast(x, to=f16)\noutput y\n",
        "input x: f32[4]\ny = cast(x, to=i8)\noutput y\n",
        "input x: f32[4]\ny = cast(x)\noutput y\n",
        "input x: f16[4] q(scale=0.5, zp=0)\noutput x\n",
    ] {
        assert!(npu::text::parse(bad).is_err(), "{bad}");
    }
}

/// Half-precision narrowing on the device: f32 inputs whose f16 and bf16
/// roundings are known by hand (ties to even, overflow to infinity, the
/// subnormal range, NaN), at the graph's output.
#[test]
fn f32_outputs_narrow_to_f16_and_bf16_as_the_spec_rounds() {
    let g = npu::text::parse(
        "input x: f32[12]\nh = cast(x, to=f16)\nb = cast(x, to=bf16)\noutput h, b\n",
    )
    .unwrap();
    let x = [
        1.0 + 2f32.powi(-11),        // f16 tie: even 0x3c00
        1.0 + 3.0 * 2f32.powi(-11),  // f16 tie: even 0x3c02
        f32::from_bits(0x3f81_8000), // bf16 tie: even 0x3f82
        65520.0,                     // f16 overflow (tie at the top)
        65504.0,                     // the largest f16
        2f32.powi(-24),              // the smallest f16 subnormal
        2f32.powi(-25),              // f16 tie with 0
        -0.0,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,                    // bf16 overflow
        f32::from_bits(0x0001_8000), // bf16 subnormal tie: even 0x0002
    ];
    let inputs = std::collections::HashMap::from([("x".to_string(), TensorData::F32(x.to_vec()))]);
    let run = common::run_device(&g, &inputs, 4096, CompileOptions::default());
    assert_eq!(
        run.outputs["h"],
        TensorData::F16(vec![
            0x3c00, 0x3c02, 0x3c0c, 0x7c00, 0x7bff, 0x0001, 0x0000, 0x8000, 0xfc00, 0x7e00, 0x7c00,
            0x0000
        ])
    );
    assert_eq!(
        run.outputs["b"],
        TensorData::Bf16(vec![
            0x3f80, 0x3f80, 0x3f82, 0x4780, 0x4780, 0x3380, 0x3300, 0x8000, 0xff80, 0x7fc0, 0x7f80,
            0x0002
        ])
    );
}

/// A small f16 network: an f16 input converted to f32 on the device, f16
/// weights and a bf16 bias widened at compile time, a gemm with bias in
/// f32, an f16 output; random inputs against the library's reference.
#[test]
fn f16_gemm_with_f16_constants() {
    let (m, k, n) = (9, 70, 33);
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F16, &[m, k])).unwrap();
    let w: Vec<u16> = (0..k * n)
        .map(|i| half::f16::from_f32(((i * 37 % 101) as f32 - 50.0) / 64.0).to_bits())
        .collect();
    let w = g
        .constant(
            "w",
            TensorType::new(DType::F16, &[k, n]),
            TensorData::F16(w),
        )
        .unwrap();
    let b: Vec<u16> = (0..n)
        .map(|i| half::bf16::from_f32(i as f32 / 8.0 - 2.0).to_bits())
        .collect();
    let b = g
        .constant("b", TensorType::new(DType::Bf16, &[n]), TensorData::Bf16(b))
        .unwrap();
    let cast = |g: &mut Graph, name: &str, x, to| g.add(name, Op::Cast { x, to }, None).unwrap();
    let xf = cast(&mut g, "xf", x, DType::F32);
    let wf = cast(&mut g, "wf", w, DType::F32);
    let bf = cast(&mut g, "bf", b, DType::F32);
    let c = g
        .add(
            "c",
            Op::Gemm {
                a: xf,
                b: wf,
                bias: Some(bf),
                trans_a: false,
                trans_b: false,
            },
            None,
        )
        .unwrap();
    let y = cast(&mut g, "y", c, DType::F16);
    g.output(y).unwrap();
    // The constants' casts fold at compile time (exact): f32 constants.
    let opt = npu::ir::passes::optimize(&g).unwrap();
    let casts: Vec<&str> = opt
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Cast { .. }))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(casts, ["xf", "y"]);
    assert_eq!(opt.ty(opt.lookup("wf").unwrap()).dtype, DType::F32);
    for (seed, sram) in [(1, 8 * 1024), (2, 256 * 1024)] {
        common::check(&g, seed, sram, 1e-4);
    }
}
