//! int8 ops on the device model against onnxruntime (tests/onnx_ref.py),
//! a reference nobody here wrote: single-node ONNX models (QLinearConv,
//! QLinearMatMul, QuantizeLinear, DequantizeLinear) built with the `onnx`
//! helpers and run on onnxruntime's CPU provider, compared bit for bit.
//! libnpu's int8 gemm/conv2d follow onnxruntime's evaluation of the ONNX
//! definition (f32 scale `(s_x * s_w) / s_y`, round half to even), so every
//! element must match exactly. Needs python3 with numpy, onnx and
//! onnxruntime (scripts/host-deps.sh installs them); without them the test
//! fails.

mod common;
use common::{list, onnx_spec as spec};

use npu::ir::{i8_to_u8, u8_zero_point, Graph, Op, Quant, TensorType, Window};
use npu::reference::TensorData;
use npu::{CompileOptions, DType};
use std::collections::HashMap;
use std::process::{Command, Stdio};

fn require_onnxruntime() {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, onnx, onnxruntime"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with numpy, onnx and onnxruntime is missing: run scripts/host-deps.sh \
         (pip install numpy onnx onnxruntime)"
    );
}

/// An int8 tensor for ONNX: as int8, or (`unsigned`) as the uint8 tensor
/// it represents (libnpu runs uint8 as int8 shifted by 128).
fn spec_q(v: &[i8], shape: &[usize], feed: bool, unsigned: bool) -> String {
    if unsigned {
        format!(
            "{{\"dtype\":\"u8\",\"shape\":{},\"data\":{},\"feed\":{feed}}}",
            list(shape),
            list(&i8_to_u8(v))
        )
    } else {
        spec(&TensorData::I8(v.to_vec()), shape, feed)
    }
}

fn scalar_f32(x: f32) -> String {
    spec(&TensorData::F32(vec![x]), &[], false)
}

fn scalar_i8(x: i8) -> String {
    spec(&TensorData::I8(vec![x]), &[], false)
}

/// Compare the device's `got` with onnxruntime running `op` on `inputs`;
/// returns how many elements were compared.
fn onnxruntime(op: &str, inputs: &[String], attrs: &str, out: &TensorType, got: &str) -> usize {
    onnxruntime_as(op, inputs, attrs, out, got, false)
}

/// [`onnxruntime`]; `unsigned`: the int8 result is a uint8 one (and `got`
/// holds its uint8 values).
fn onnxruntime_as(
    op: &str,
    inputs: &[String],
    attrs: &str,
    out: &TensorType,
    got: &str,
    unsigned: bool,
) -> usize {
    let out_dtype = match out.dtype {
        DType::I8 if unsigned => "u8",
        DType::I8 => "i8",
        DType::U8 => "u8",
        DType::I32 => "i32",
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Bf16 => "bf16",
    };
    let json = format!(
        "{{\"op\":\"{op}\",\"inputs\":[{}],\"attrs\":{attrs},\"out_dtype\":\"{out_dtype}\",\"out_shape\":{},\"got\":{got}}}",
        inputs.join(","),
        list(&out.shape)
    );
    common::onnx_ref_check(op, &json)
}

/// Deterministic test data (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() >> 56) as u8 as i8).collect()
    }
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
    /// Uniform in [lo, hi).
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

fn run(g: &Graph, inputs: &HashMap<String, TensorData>, sram: u32) -> TensorData {
    let run = common::run_device(g, inputs, sram, CompileOptions::default());
    let out = &g.node(g.outputs()[0]).name;
    run.outputs[out].clone()
}

fn got_list(d: &TensorData) -> String {
    match d {
        TensorData::I8(v) => list(v),
        TensorData::I32(v) => list(v),
        TensorData::U8(v) => list(v),
        TensorData::F16(v) | TensorData::Bf16(v) => list(v),
        TensorData::F32(v) => list(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
    }
}

struct ConvCase {
    x: [usize; 4],
    k: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    zx: i8,
    zw: i8,
    per_channel: bool,
    /// Per-channel weight zero points (random over the whole int8 range,
    /// with `per_channel`) instead of `zw`.
    zw_per_channel: bool,
    zy: i8,
    /// A uint8 conv (x, w, y uint8); the zero points above are the int8
    /// ones libnpu runs it with (u8 zero point = int8 one + 128).
    unsigned: bool,
}

/// QLinearConv on the device (at `sram` bytes of SRAM) and on onnxruntime.
fn qlinearconv(c: &ConvCase, seed: u64, sram: u32) -> usize {
    let mut rng = Rng(seed | 1);
    let [n, ch, h, w] = c.x;
    let cg = ch / c.groups;
    let taps = cg * c.kernel[0] * c.kernel[1];
    let sx = 0.02f32;
    // The output scale keeps the results spread over the int8 range.
    let sy = 0.02 * (taps as f32).sqrt() * 0.5;
    let wscales: Vec<f32> = (0..c.k)
        .map(|_| if c.per_channel { rng.f32(0.5, 1.5) } else { 1.0 } / 127.0 * 2.0)
        .collect();
    let xv = rng.i8s(n * ch * h * w);
    let wv = rng.i8s(c.k * taps);
    let bias: Vec<i32> = (0..c.k).map(|_| rng.range(-3000, 3000)).collect();
    let zws: Vec<i8> = if c.zw_per_channel {
        (0..c.k).map(|_| rng.range(-128, 127) as i8).collect()
    } else {
        vec![c.zw; c.k]
    };
    let mut g = Graph::new();
    let x = g
        .input(
            "x",
            TensorType::quantized(
                &c.x,
                Quant::PerTensor {
                    scale: sx,
                    zero_point: c.zx,
                },
            ),
        )
        .unwrap();
    let wshape = [c.k, cg, c.kernel[0], c.kernel[1]];
    let wq = if c.per_channel {
        Quant::PerChannel {
            scales: wscales.clone(),
            axis: 0,
            zero_points: zws.clone(),
        }
    } else {
        Quant::PerTensor {
            scale: wscales[0],
            zero_point: c.zw,
        }
    };
    let wt = g
        .constant(
            "w",
            TensorType::quantized(&wshape, wq),
            TensorData::I8(wv.clone()),
        )
        .unwrap();
    let b = g
        .constant(
            "b",
            TensorType::new(DType::I32, &[c.k]),
            TensorData::I32(bias.clone()),
        )
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Conv2d {
                input: x,
                weight: wt,
                bias: Some(b),
                window: Window {
                    stride: c.stride,
                    padding: c.pad,
                    dilation: c.dilation,
                },
                groups: c.groups,
            },
            Some(Quant::PerTensor {
                scale: sy,
                zero_point: c.zy,
            }),
        )
        .unwrap();
    g.output(y).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(xv.clone()))]);
    let got = run(&g, &inputs, sram);
    let (w_scale, w_zp) = if c.per_channel {
        (
            spec(&TensorData::F32(wscales), &[c.k], false),
            spec(&TensorData::I8(zws.clone()), &[c.k], false),
        )
    } else {
        (scalar_f32(wscales[0]), scalar_i8(c.zw))
    };
    let u = c.unsigned;
    let zp = |z: i8| spec_q(&[z], &[], false, u);
    let w_zp = if u {
        let zs = zws[..if c.per_channel { c.k } else { 1 }].to_vec();
        spec_q(&zs, &[c.k][..usize::from(c.per_channel)], false, true)
    } else {
        w_zp
    };
    let ins = [
        spec_q(&xv, &c.x, true, u),
        scalar_f32(sx),
        zp(c.zx),
        spec_q(&wv, &wshape, false, u),
        w_scale,
        w_zp,
        scalar_f32(sy),
        zp(c.zy),
        spec(&TensorData::I32(bias), &[c.k], false),
    ];
    let attrs = format!(
        "{{\"strides\":{},\"pads\":{},\"dilations\":{},\"group\":{},\"kernel_shape\":{}}}",
        list(&c.stride),
        list(&[c.pad[0], c.pad[1], c.pad[0], c.pad[1]]),
        list(&c.dilation),
        c.groups,
        list(&c.kernel)
    );
    let got = match (&got, u) {
        (TensorData::I8(v), true) => list(&i8_to_u8(v)),
        _ => got_list(&got),
    };
    onnxruntime_as("QLinearConv", &ins, &attrs, g.ty(y), &got, u)
}

fn conv(
    x: [usize; 4],
    k: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> ConvCase {
    ConvCase {
        x,
        k,
        kernel: [kernel, kernel],
        stride: [stride, stride],
        pad: [pad, pad],
        dilation: [1, 1],
        groups,
        zx: 0,
        zw: 0,
        per_channel: true,
        zw_per_channel: false,
        zy: 0,
        unsigned: false,
    }
}

#[test]
fn qlinearconv_matches_onnxruntime_bit_for_bit() {
    require_onnxruntime();
    let cases = [
        // Symmetric, per-channel weights.
        conv([1, 8, 9, 11], 16, 3, 1, 1, 1),
        // Asymmetric input and output.
        ConvCase {
            zx: -5,
            zy: 3,
            ..conv([1, 8, 9, 11], 16, 3, 1, 1, 1)
        },
        // Stride 2, a non-zero per-tensor weight zero point.
        ConvCase {
            zx: 9,
            zw: 2,
            per_channel: false,
            zy: -7,
            ..conv([2, 6, 10, 10], 12, 3, 2, 1, 1)
        },
        // The ResNet stem: 7x7, stride 2, padding 3, three channels.
        ConvCase {
            zx: -128,
            zy: 17,
            ..conv([1, 3, 17, 15], 8, 7, 2, 3, 1)
        },
        // 1x1, many channels.
        ConvCase {
            zx: 100,
            zy: -1,
            ..conv([1, 64, 6, 6], 40, 1, 1, 0, 1)
        },
        // Depthwise, stride 1 and 2, asymmetric.
        ConvCase {
            zx: 11,
            zw: -3,
            per_channel: false,
            zy: 5,
            ..conv([1, 12, 10, 10], 12, 3, 1, 1, 12)
        },
        ConvCase {
            zx: -20,
            zy: 2,
            ..conv([1, 16, 9, 9], 16, 3, 2, 1, 16)
        },
        // uint8 activations and weights: u8 zero points 131 (x), 120
        // (per-tensor w), 128 (per-channel w), 77 (y).
        ConvCase {
            zx: u8_zero_point(131),
            zw: u8_zero_point(120),
            per_channel: false,
            zy: u8_zero_point(77),
            unsigned: true,
            ..conv([1, 8, 9, 11], 16, 3, 1, 1, 1)
        },
        ConvCase {
            zx: u8_zero_point(0),
            zw: u8_zero_point(128),
            zy: u8_zero_point(255),
            unsigned: true,
            ..conv([1, 8, 10, 10], 8, 3, 2, 1, 8)
        },
        // Grouped, dilated.
        ConvCase {
            dilation: [2, 2],
            zx: 3,
            zy: -2,
            ..conv([1, 6, 9, 9], 4, 3, 1, 2, 2)
        },
        // Per-channel weight zero points (the outer-product correction),
        // with padding (the receptive field's sum includes it as x's zero
        // point), stride 1 and 2, grouped, depthwise, uint8.
        ConvCase {
            zx: -7,
            zw_per_channel: true,
            zy: 4,
            ..conv([1, 8, 9, 11], 16, 3, 1, 1, 1)
        },
        ConvCase {
            zx: 50,
            zw_per_channel: true,
            zy: -9,
            ..conv([2, 6, 10, 10], 12, 3, 2, 2, 1)
        },
        ConvCase {
            zx: -1,
            zw_per_channel: true,
            zy: 1,
            ..conv([1, 3, 17, 15], 8, 7, 2, 3, 1)
        },
        ConvCase {
            dilation: [2, 2],
            zx: 3,
            zw_per_channel: true,
            zy: -2,
            ..conv([1, 6, 9, 9], 4, 3, 1, 2, 2)
        },
        ConvCase {
            zx: 13,
            zw_per_channel: true,
            zy: 6,
            ..conv([1, 12, 10, 10], 12, 3, 1, 1, 12)
        },
        ConvCase {
            zx: u8_zero_point(140),
            zw_per_channel: true,
            zy: u8_zero_point(90),
            unsigned: true,
            ..conv([1, 8, 9, 11], 16, 3, 1, 1, 1)
        },
        // Many channels, 1x1 (several output-channel blocks at 16 KiB).
        ConvCase {
            zx: 100,
            zw_per_channel: true,
            zy: -1,
            ..conv([1, 64, 6, 6], 40, 1, 1, 0, 1)
        },
    ];
    let mut total = 0;
    for (i, c) in cases.iter().enumerate() {
        for sram in [256u32 << 10, 16 << 10] {
            total += qlinearconv(c, 100 + i as u64, sram);
        }
    }
    eprintln!("QLinearConv: {total} elements equal to onnxruntime's");
    assert!(total > 10_000, "only {total} elements compared");
}

/// QLinearMatMul with a constant second operand (per-column scales).
/// `zb`: the second operand's zero point (per-tensor scale then);
/// `zb_cols`: per-column scales and random per-column zero points instead;
/// `unsigned`: uint8 operands and result (zero points as libnpu's int8).
#[allow(clippy::too_many_arguments)]
fn qlinearmatmul(
    m: usize,
    k: usize,
    n: usize,
    za: i8,
    (zb, zb_cols): (i8, bool),
    zy: i8,
    unsigned: bool,
    seed: u64,
    sram: u32,
) -> usize {
    let mut rng = Rng(seed | 1);
    let sa = 0.03f32;
    let sy = 0.03 * (k as f32).sqrt() * 0.6;
    let scales: Vec<f32> = (0..n).map(|_| rng.f32(0.5, 1.5) / 127.0 * 2.0).collect();
    let av = rng.i8s(m * k);
    let bv = rng.i8s(k * n);
    let zbs: Vec<i8> = if zb_cols {
        (0..n).map(|_| rng.range(-128, 127) as i8).collect()
    } else {
        vec![0; n]
    };
    let per_col = zb == 0 || zb_cols;
    let mut g = Graph::new();
    let a = g
        .input(
            "a",
            TensorType::quantized(
                &[m, k],
                Quant::PerTensor {
                    scale: sa,
                    zero_point: za,
                },
            ),
        )
        .unwrap();
    let b = g
        .constant(
            "b",
            TensorType::quantized(
                &[k, n],
                if per_col {
                    Quant::PerChannel {
                        scales: scales.clone(),
                        axis: 1,
                        zero_points: zbs.clone(),
                    }
                } else {
                    Quant::PerTensor {
                        scale: scales[0],
                        zero_point: zb,
                    }
                },
            ),
            TensorData::I8(bv.clone()),
        )
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Gemm {
                a,
                b,
                bias: None,
                trans_a: false,
                trans_b: false,
            },
            Some(Quant::PerTensor {
                scale: sy,
                zero_point: zy,
            }),
        )
        .unwrap();
    g.output(y).unwrap();
    let inputs = HashMap::from([("a".to_string(), TensorData::I8(av.clone()))]);
    let got = run(&g, &inputs, sram);
    let u = unsigned;
    let (b_scale, b_zp) = if per_col {
        (
            spec(&TensorData::F32(scales), &[n], false),
            spec_q(&zbs, &[n], false, u),
        )
    } else {
        (scalar_f32(scales[0]), spec_q(&[zb], &[], false, u))
    };
    let ins = [
        spec_q(&av, &[m, k], true, u),
        scalar_f32(sa),
        spec_q(&[za], &[], false, u),
        spec_q(&bv, &[k, n], false, u),
        b_scale,
        b_zp,
        scalar_f32(sy),
        spec_q(&[zy], &[], false, u),
    ];
    let got = match (&got, u) {
        (TensorData::I8(v), true) => list(&i8_to_u8(v)),
        _ => got_list(&got),
    };
    onnxruntime_as("QLinearMatMul", &ins, "{}", g.ty(y), &got, u)
}

#[test]
fn qlinearmatmul_matches_onnxruntime_bit_for_bit() {
    require_onnxruntime();
    let mut total = 0;
    for (i, &(m, k, n, za, zb, zy, unsigned)) in [
        (5, 7, 3, 0, 0, 0, false),
        (33, 70, 45, -9, 0, 4, false),
        (64, 300, 130, 127, 0, -128, false),
        (1, 512, 1000, -3, 0, 12, false),
        // Non-zero zero points on both operands.
        (20, 90, 33, 5, -7, 1, false),
        (40, 270, 70, -128, 127, 9, false),
        // uint8: zero points 140 (a), 120 (b), 128 (y).
        (
            17,
            100,
            29,
            u8_zero_point(140),
            u8_zero_point(120),
            u8_zero_point(128),
            true,
        ),
    ]
    .iter()
    .enumerate()
    {
        for sram in [256u32 << 10, 16 << 10] {
            total += qlinearmatmul(m, k, n, za, (zb, false), zy, unsigned, 200 + i as u64, sram);
        }
    }
    // Per-column zero points of b (the outer-product correction), int8
    // and uint8, tiles of every size.
    for (i, &(m, k, n, za, zy, unsigned)) in [
        (5, 7, 3, 0, 0, false),
        (33, 70, 45, -9, 4, false),
        (64, 300, 130, 127, -128, false),
        (1, 512, 1000, -3, 12, false),
        (17, 100, 29, u8_zero_point(140), u8_zero_point(128), true),
    ]
    .iter()
    .enumerate()
    {
        for sram in [256u32 << 10, 16 << 10] {
            total += qlinearmatmul(m, k, n, za, (0, true), zy, unsigned, 300 + i as u64, sram);
        }
    }
    eprintln!("QLinearMatMul: {total} elements equal to onnxruntime's");
    assert!(total > 10_000);
}

#[test]
fn quantize_and_dequantize_match_onnxruntime_bit_for_bit() {
    require_onnxruntime();
    let mut rng = Rng(7);
    let (scale, zp) = (0.037f32, -11i8);
    // Random values over beyond the range (saturation) and exact ties
    // (k + 0.5) * scale, where the rounding mode shows.
    let mut xs: Vec<f32> = (0..3000).map(|_| rng.f32(-6.0, 6.0)).collect();
    xs.extend((-140..140).map(|k| (k as f32 + 0.5) * scale));
    xs.extend([0.0, -0.0, 1e9, -1e9]);
    let n = xs.len();
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, &[n])).unwrap();
    let q = g
        .add(
            "q",
            Op::Quantize { x },
            Some(Quant::PerTensor {
                scale,
                zero_point: zp,
            }),
        )
        .unwrap();
    g.output(q).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(xs.clone()))]);
    let got = run(&g, &inputs, 256 << 10);
    let ins = [
        spec(&TensorData::F32(xs), &[n], true),
        scalar_f32(scale),
        scalar_i8(zp),
    ];
    let quantized = onnxruntime("QuantizeLinear", &ins, "{}", g.ty(q), &got_list(&got));

    let qs = rng.i8s(4096);
    let mut g = Graph::new();
    let x = g
        .input(
            "x",
            TensorType::quantized(
                &[4096],
                Quant::PerTensor {
                    scale,
                    zero_point: zp,
                },
            ),
        )
        .unwrap();
    let d = g.add("d", Op::Dequantize { x }, None).unwrap();
    g.output(d).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(qs.clone()))]);
    let got = run(&g, &inputs, 256 << 10);
    let got = match got {
        TensorData::F32(v) => list(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        _ => panic!("f32 expected"),
    };
    let ins = [
        spec(&TensorData::I8(qs), &[4096], true),
        scalar_f32(scale),
        scalar_i8(zp),
    ];
    let dequantized = onnxruntime("DequantizeLinear", &ins, "{}", g.ty(d), &got);
    assert_eq!((quantized, dequantized), (n, 4096));
}

/// Cast f32 -> float16 and float16 -> f32 on the device, bit for bit
/// against onnxruntime's Cast: f32 values at and around the f16 ties, over
/// the whole range (overflow and the subnormals included), and every f16
/// value but the NaNs.
#[test]
fn cast_to_and_from_float16_matches_onnxruntime_bit_for_bit() {
    require_onnxruntime();
    let mut rng = Rng(16);
    let mut xs: Vec<f32> = (0..4000)
        .map(|_| f32::from_bits(rng.next() as u32))
        .filter(|x| !x.is_nan())
        .collect();
    // Every f16 exponent, with low f32 bits at, above and below a tie.
    for e in 100u32..145 {
        for man in [0u32, 0x1000, 0x3000, 0x2fff, 0x1001, 0x7f_e000, 0x7f_f000] {
            for sign in [0, 1u32 << 31] {
                xs.push(f32::from_bits(sign | e << 23 | man));
            }
        }
    }
    xs.extend([
        0.0,
        -0.0,
        65504.0,
        65519.0,
        65520.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    let n = xs.len();
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, &[n])).unwrap();
    let h = g.add("h", Op::Cast { x, to: DType::F16 }, None).unwrap();
    g.output(h).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(xs.clone()))]);
    let got = run(&g, &inputs, 64 << 10);
    let ins = [spec(&TensorData::F32(xs), &[n], true)];
    let narrowed = onnxruntime("Cast", &ins, "{\"to\":10}", g.ty(h), &got_list(&got));

    let hs: Vec<u16> = (0..=u16::MAX)
        .filter(|&h| !(h & 0x7c00 == 0x7c00 && h & 0x3ff != 0))
        .collect();
    let n = hs.len();
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F16, &[n])).unwrap();
    let f = g.add("f", Op::Cast { x, to: DType::F32 }, None).unwrap();
    g.output(f).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::F16(hs.clone()))]);
    let got = run(&g, &inputs, 64 << 10);
    let ins = [spec(&TensorData::F16(hs), &[n], true)];
    let widened = onnxruntime("Cast", &ins, "{\"to\":1}", g.ty(f), &got_list(&got));
    assert_eq!(widened, n);
    assert!(narrowed > 4000, "{narrowed}");
}

#[path = "models/nets.rs"]
mod nets;

fn quant_json(q: &Option<Quant>) -> String {
    match q {
        None => "null".into(),
        Some(Quant::PerTensor { scale, zero_point }) => {
            format!("{{\"scale\":{},\"zp\":{zero_point}}}", f64::from(*scale))
        }
        Some(Quant::PerChannel { scales, axis, .. }) => format!(
            "{{\"axis\":{axis},\"scales\":{}}}",
            list(&scales.iter().map(|s| f64::from(*s)).collect::<Vec<_>>())
        ),
    }
}

fn bytes_of(d: &TensorData) -> Vec<u8> {
    match d {
        TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F16(v) | TensorData::Bf16(v) => {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
    }
}

/// Run the int8 network on the device at `sram` bytes of SRAM, and the same
/// graph as an ONNX model on onnxruntime (tests/onnx_net.py); every output
/// element must be equal. Returns how many were compared.
fn net_against_onnxruntime(net: &nets::Net, tag: &str, sram: u32) -> usize {
    use npu::ir::{BinaryOp, PoolKind, UnaryOp};
    let g = &net.g;
    let dir = std::env::temp_dir().join(format!("npu-onnx-net-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let name = |v: &npu::ValueId| format!("\"{}\"", g.node(*v).name);
    let mut nodes = Vec::new();
    for (i, n) in g.nodes().iter().enumerate() {
        let dtype = match n.ty.dtype {
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        };
        let ty = format!(
            "{{\"dtype\":\"{dtype}\",\"shape\":{},\"quant\":{}}}",
            list(&n.ty.shape),
            quant_json(&n.ty.quant)
        );
        let file = format!("v{i}.bin");
        let (op, extra) = match &n.op {
            Op::Input => {
                std::fs::write(dir.join(&file), bytes_of(&net.feeds[&n.name])).unwrap();
                ("input", format!(",\"file\":\"{file}\""))
            }
            Op::Constant { data } => {
                std::fs::write(dir.join(&file), bytes_of(data)).unwrap();
                ("constant", format!(",\"file\":\"{file}\""))
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                window,
                groups,
            } => {
                let ins: Vec<String> = [Some(*input), Some(*weight), *bias]
                    .iter()
                    .flatten()
                    .map(name)
                    .collect();
                (
                    "conv2d",
                    format!(
                        ",\"inputs\":[{}],\"stride\":{},\"padding\":{},\"dilation\":{},\"groups\":{groups}",
                        ins.join(","),
                        list(&window.stride),
                        list(&window.padding),
                        list(&window.dilation)
                    ),
                )
            }
            Op::Gemm {
                a,
                b,
                bias: None,
                trans_a: false,
                trans_b: false,
            } => ("gemm", format!(",\"inputs\":[{},{}]", name(a), name(b))),
            Op::Unary {
                op: UnaryOp::Relu,
                x,
            } => ("relu", format!(",\"inputs\":[{}]", name(x))),
            Op::Unary {
                op: UnaryOp::Clamp { lo, hi },
                x,
            } => (
                "clamp",
                format!(",\"inputs\":[{}],\"lo\":{lo},\"hi\":{hi}", name(x)),
            ),
            Op::Binary {
                op: BinaryOp::Add,
                a,
                b,
            } => ("add", format!(",\"inputs\":[{},{}]", name(a), name(b))),
            Op::Pool {
                kind,
                x,
                kernel,
                window,
            } => (
                if *kind == PoolKind::Max {
                    "maxpool"
                } else {
                    "avgpool"
                },
                format!(
                    ",\"inputs\":[{}],\"kernel\":{},\"stride\":{},\"padding\":{}",
                    name(x),
                    list(kernel),
                    list(&window.stride),
                    list(&window.padding)
                ),
            ),
            Op::Reshape { x, .. } => ("reshape", format!(",\"inputs\":[{}]", name(x))),
            op => panic!("{} is not exported", op.name()),
        };
        nodes.push(format!(
            "{{\"name\":\"{}\",\"op\":\"{op}\",\"type\":{ty}{extra}}}",
            n.name
        ));
    }
    let run = common::run_device(g, &net.feeds, sram, CompileOptions::default());
    let outputs: Vec<String> = g.outputs().iter().map(name).collect();
    for o in g.outputs() {
        let n = &g.node(*o).name;
        std::fs::write(dir.join(format!("got_{n}.bin")), bytes_of(&run.outputs[n])).unwrap();
    }
    let json = format!(
        "{{\"dir\":\"{}\",\"nodes\":[{}],\"outputs\":[{}]}}",
        dir.display(),
        nodes.join(","),
        outputs.join(",")
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx_net.py");
    let res = common::python_with_stdin(script, &json);
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{tag} at {} KiB: onnxruntime disagrees: {stdout}{}",
        sram >> 10,
        String::from_utf8_lossy(&res.stderr)
    );
    let mut fields = stdout.split_whitespace().map(|x| x.parse::<usize>());
    let (Some(Ok(total)), Some(Ok(distinct))) = (fields.next(), fields.next()) else {
        panic!("onnx_net.py printed {stdout}");
    };
    eprintln!(
        "{tag} at {} KiB: {total} output elements equal to onnxruntime's, {distinct} distinct values",
        sram >> 10
    );
    assert!(
        distinct >= 32,
        "{tag}: only {distinct} distinct output values: the network saturates"
    );
    total
}

/// int8 ResNet-18 and MobileNetV2 (224 x 224, He-scaled per-channel
/// weights, activations with a non-zero zero point) on the device model at
/// 256 KiB and 1 MiB against onnxruntime running the same network.
#[test]
fn int8_resnet18_and_mobilenet_v2_match_onnxruntime() {
    require_onnxruntime();
    let mut total = 0;
    for (tag, net) in [
        ("resnet18", nets::resnet18_int8(224, -7)),
        ("mobilenetv2", nets::mobilenet_v2_int8(224, 5)),
    ] {
        for sram in [256u32 << 10, 1 << 20] {
            total += net_against_onnxruntime(&net, tag, sram);
        }
    }
    assert_eq!(total, 4 * 1000);
}

/// QuantizeLinear and DequantizeLinear with per-channel scales on `axis`.
fn per_axis_case(shape: &[usize], axis: usize, seed: u64, sram: u32) -> usize {
    let mut rng = Rng(seed | 1);
    let n: usize = shape.iter().product();
    let scales: Vec<f32> = (0..shape[axis]).map(|_| rng.f32(0.005, 0.1)).collect();
    let q = Quant::per_channel(scales.clone(), axis);
    let xs: Vec<f32> = (0..n).map(|_| rng.f32(-8.0, 8.0)).collect();
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, shape)).unwrap();
    let y = g.add("y", Op::Quantize { x }, Some(q.clone())).unwrap();
    g.output(y).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(xs.clone()))]);
    let got = run(&g, &inputs, sram);
    let params = |s: &[f32]| {
        [
            spec(&TensorData::F32(s.to_vec()), &[s.len()], false),
            spec(&TensorData::I8(vec![0; s.len()]), &[s.len()], false),
        ]
    };
    let [sc, zp] = params(&scales);
    let attrs = format!("{{\"axis\":{axis}}}");
    let ins = [spec(&TensorData::F32(xs), shape, true), sc, zp];
    let mut total = onnxruntime("QuantizeLinear", &ins, &attrs, g.ty(y), &got_list(&got));

    let qs = rng.i8s(n);
    let mut g = Graph::new();
    let x = g.input("x", TensorType::quantized(shape, q)).unwrap();
    let d = g.add("d", Op::Dequantize { x }, None).unwrap();
    g.output(d).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(qs.clone()))]);
    let got = run(&g, &inputs, sram);
    let [sc, zp] = params(&scales);
    let ins = [spec(&TensorData::I8(qs), shape, true), sc, zp];
    total += onnxruntime("DequantizeLinear", &ins, &attrs, g.ty(d), &got_list(&got));
    total
}

#[test]
fn per_axis_quantize_and_dequantize_match_onnxruntime_bit_for_bit() {
    require_onnxruntime();
    let mut total = 0;
    for (i, (shape, axis)) in [
        (vec![2, 5, 3, 7], 1),
        (vec![6, 40], 0),
        (vec![3, 4, 300], 2),
        (vec![1, 96, 56, 56], 1),
    ]
    .into_iter()
    .enumerate()
    {
        for sram in [256u32 << 10, 8 << 10] {
            total += per_axis_case(&shape, axis, 300 + i as u64, sram);
        }
    }
    eprintln!("per-axis QuantizeLinear/DequantizeLinear: {total} elements equal");
    assert!(total > 100_000);
}
