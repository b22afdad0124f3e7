//! int8 gemm and conv2d on the device model against numpy
//! (tests/numpy_ref.py), a reference that shares no code with libnpu.
//! Needs python3 with numpy: with NPU_REQUIRE_NUMPY=1 (as `make test` sets
//! it) a missing numpy is a failure, otherwise the test says it did not run.

mod common;
use common::list;

use npu::ir::{Graph, Op, Quant, TensorType, UnaryOp, Window};
use npu::reference::TensorData;
use npu::{CompileOptions, DType};
use std::process::{Command, Stdio};

fn numpy_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let required = std::env::var("NPU_REQUIRE_NUMPY").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "NPU_REQUIRE_NUMPY=1 but python3 with numpy is missing (pip install numpy)"
        );
        eprintln!("numpy_ref: NOT RUN: python3 with numpy is missing (set NPU_REQUIRE_NUMPY=1 to make this a failure)");
    }
    ok
}

fn i8s(d: &TensorData) -> &[i8] {
    match d {
        TensorData::I8(v) => v,
        _ => panic!("int8 data expected"),
    }
}

/// Run the graph's single int8 output on the device, then numpy on `case`
/// (the JSON fields but `got`); numpy must agree on every element.
fn compare(
    g: &Graph,
    seed: u64,
    sram: u32,
    case: impl Fn(&std::collections::HashMap<String, TensorData>) -> String,
) {
    let inputs = common::random_inputs(g, seed);
    let run = common::run_device(g, &inputs, sram, CompileOptions::default());
    let out = &g.node(g.outputs()[0]).name;
    let got = i8s(&run.outputs[out]);
    let json = format!("{{{},\"got\":{}}}", case(&inputs), list(got));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/numpy_ref.py");
    let res = common::python_with_stdin(script, &json);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "numpy disagrees (seed {seed}): {stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        stdout.trim(),
        got.len().to_string(),
        "numpy checked a different number of elements"
    );
}

fn scales(v: &[f32]) -> String {
    list(&v.iter().map(|&s| s as f64).collect::<Vec<_>>())
}

#[test]
fn int8_gemm_matches_numpy() {
    if !numpy_available() {
        return;
    }
    for (seed, (m, n, k), per_channel, trans_b, relu) in [
        (1u64, (23, 37, 150), true, false, true),
        (2, (40, 9, 77), false, true, false),
        (3, (64, 64, 256), true, true, true),
    ] {
        let s_w: Vec<f32> = if per_channel {
            (0..n).map(|i| 0.002 + 0.0007 * i as f32).collect()
        } else {
            vec![0.01; n]
        };
        let wq = if per_channel {
            Quant::PerChannel {
                scales: s_w.clone(),
                axis: if trans_b { 0 } else { 1 },
                zero_points: vec![],
            }
        } else {
            Quant::PerTensor {
                scale: 0.01,
                zero_point: 0,
            }
        };
        let (s_in, s_out, zp_out) = (0.03f32, 0.07f32, -5i8);
        let wshape = if trans_b { [n, k] } else { [k, n] };
        let mut g = Graph::new();
        let a = g
            .input(
                "a",
                TensorType::quantized(
                    &[m, k],
                    Quant::PerTensor {
                        scale: s_in,
                        zero_point: 0,
                    },
                ),
            )
            .unwrap();
        let b = g.input("w", TensorType::quantized(&wshape, wq)).unwrap();
        let bias = g.input("bias", TensorType::new(DType::I32, &[n])).unwrap();
        let oq = Some(Quant::PerTensor {
            scale: s_out,
            zero_point: zp_out,
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
                oq,
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
        compare(&g, seed, 8 * 1024, |inp| {
            let TensorData::I32(bias) = &inp["bias"] else {
                panic!("i32 bias")
            };
            format!(
                "\"kind\":\"gemm\",\"a\":{},\"a_shape\":{},\"w\":{},\"w_shape\":{},\"trans_b\":{trans_b},\"bias\":{},\"s_in\":{},\"s_w\":{},\"s_out\":{},\"zp_out\":{zp_out},\"relu\":{relu}",
                list(i8s(&inp["a"])),
                list(&[m, k]),
                list(i8s(&inp["w"])),
                list(&wshape),
                list(bias),
                s_in as f64,
                scales(&s_w),
                s_out as f64,
            )
        });
    }
}

#[test]
fn int8_conv2d_matches_numpy() {
    if !numpy_available() {
        return;
    }
    // (input NCHW, K, kernel, stride, pad, dilation, groups)
    type Case = ([usize; 4], usize, [usize; 2], usize, usize, usize, usize);
    let cases: [Case; 4] = [
        ([1, 3, 11, 9], 8, [3, 3], 1, 1, 1, 1),
        ([2, 4, 13, 10], 6, [3, 3], 2, 1, 1, 2),
        ([1, 8, 12, 12], 8, [3, 3], 1, 1, 1, 8),
        ([1, 3, 15, 14], 5, [3, 2], 1, 2, 2, 1),
    ];
    for (i, (x, k, rs, stride, pad, dil, groups)) in cases.into_iter().enumerate() {
        let s_w: Vec<f32> = (0..k).map(|c| 0.003 + 0.001 * c as f32).collect();
        let (s_in, s_out, zp_out) = (0.04f32, 0.05f32, 3i8);
        let wshape = [k, x[1] / groups, rs[0], rs[1]];
        let win = Window {
            stride: [stride, stride],
            padding: [pad, pad],
            dilation: [dil, dil],
        };
        let mut g = Graph::new();
        let xi = g
            .input(
                "x",
                TensorType::quantized(
                    &x,
                    Quant::PerTensor {
                        scale: s_in,
                        zero_point: 0,
                    },
                ),
            )
            .unwrap();
        let wi = g
            .input(
                "w",
                TensorType::quantized(
                    &wshape,
                    Quant::PerChannel {
                        scales: s_w.clone(),
                        axis: 0,
                        zero_points: vec![],
                    },
                ),
            )
            .unwrap();
        let bi = g.input("bias", TensorType::new(DType::I32, &[k])).unwrap();
        let oq = Some(Quant::PerTensor {
            scale: s_out,
            zero_point: zp_out,
        });
        let y = g
            .add(
                "y",
                Op::Conv2d {
                    input: xi,
                    weight: wi,
                    bias: Some(bi),
                    window: win,
                    groups,
                },
                oq,
            )
            .unwrap();
        g.output(y).unwrap();
        compare(&g, 40 + i as u64, 16 * 1024, |inp| {
            let TensorData::I32(bias) = &inp["bias"] else {
                panic!("i32 bias")
            };
            format!(
                "\"kind\":\"conv2d\",\"a\":{},\"a_shape\":{},\"w\":{},\"w_shape\":{},\"stride\":{},\"pad\":{},\"dilation\":{},\"groups\":{groups},\"bias\":{},\"s_in\":{},\"s_w\":{},\"s_out\":{},\"zp_out\":{zp_out},\"relu\":false",
                list(i8s(&inp["x"])),
                list(&x),
                list(i8s(&inp["w"])),
                list(&wshape),
                list(&[stride, stride]),
                list(&[pad, pad]),
                list(&[dil, dil]),
                list(bias),
                s_in as f64,
                scales(&s_w),
                s_out as f64,
            )
        });
    }
}
