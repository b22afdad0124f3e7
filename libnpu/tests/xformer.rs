//! The transformer ops on the device model against onnxruntime
//! (tests/onnx_ref.py), a reference nobody here wrote: batched MatMul
//! (broadcast batches, a shared 2-D operand, B transposed), Gather with
//! negative indices, LayerNormalization (opset 17), each as a single-node
//! ONNX model; and a run-time index outside the table ending the job with
//! INDEX_RANGE. Needs python3 with numpy, onnx and onnxruntime
//! (scripts/host-deps.sh); without them the tests fail.

mod common;
use common::{list, onnx_spec as spec};

use npu::ir::{Graph, Op, Quant, TensorType};
use npu::reference::TensorData;
use npu::{CompileOptions, DType, Session};
use std::collections::HashMap;

/// onnxruntime runs `op` on `inputs` and compares with the device's f32
/// `got` (within `tol` relative to max(1, |want|); exactly with None).
fn onnxruntime(
    op: &str,
    opset: u32,
    inputs: &[String],
    attrs: &str,
    shape: &[usize],
    got: &[f32],
    tol: Option<f32>,
) -> usize {
    let bits: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
    let tol = tol.map_or(String::new(), |t| format!(",\"tol\":{t:e}"));
    let json = format!(
        "{{\"op\":\"{op}\",\"opset\":{opset},\"inputs\":[{}],\"attrs\":{attrs},\"out_dtype\":\"f32\",\"out_shape\":{},\"got\":{}{tol}}}",
        inputs.join(","),
        list(shape),
        list(&bits)
    );
    common::onnx_ref_check(op, &json)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

fn run(g: &Graph, feeds: &HashMap<String, TensorData>, sram: u32) -> Vec<f32> {
    let mut s = Session::model(sram);
    s.options = CompileOptions::default();
    let k = s
        .compile(g.clone())
        .unwrap_or_else(|e| panic!("compile at {sram}: {e}"));
    let r = s
        .run(&k, feeds)
        .unwrap_or_else(|e| panic!("run at {sram}: {e}"));
    let o = g.node(g.outputs()[0]).name.clone();
    match &r.outputs[&o] {
        TensorData::F32(v) => v.clone(),
        _ => panic!("f32 output"),
    }
}

/// b's last two dimensions swapped (ONNX MatMul has no transposed B).
fn transpose_last2(v: &[f32], shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let r = shape.len();
    let (rows, cols) = (shape[r - 2], shape[r - 1]);
    let mut out = vec![0f32; v.len()];
    for (bi, m) in v.chunks(rows * cols).enumerate() {
        for i in 0..rows {
            for j in 0..cols {
                out[bi * rows * cols + j * rows + i] = m[i * cols + j];
            }
        }
    }
    let mut s = shape.to_vec();
    s.swap(r - 2, r - 1);
    (out, s)
}

#[test]
fn batched_matmul_matches_onnxruntime() {
    require_onnxruntime();
    // (a, b as the graph holds it, b transposed, b a constant)
    let cases: &[(&[usize], &[usize], bool, bool)] = &[
        (&[4, 5, 7], &[4, 7, 3], false, false),
        // A shared 2-D weight (a constant), and a shared 2-D activation.
        (&[3, 6, 8], &[8, 5], false, true),
        (&[6, 8], &[3, 8, 5], false, true),
        // Batch dimensions broadcast: [2, 1] x [3] -> [2, 3].
        (&[2, 1, 5, 7], &[3, 7, 4], false, false),
        // Q x K^T per head.
        (&[4, 16, 8], &[4, 16, 8], true, false),
        // Several tiles in every dimension at the small SRAM.
        (&[2, 40, 130], &[2, 150, 130], true, false),
        (&[2, 40, 130], &[130, 150], false, true),
    ];
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for &(sa, sb, trans_b, b_const) in cases {
        let mut g = Graph::new();
        let av = r.f32s(sa.iter().product());
        let bv = r.f32s(sb.iter().product());
        let a = g.input("a", TensorType::new(DType::F32, sa)).unwrap();
        let b = if b_const {
            g.constant(
                "b",
                TensorType::new(DType::F32, sb),
                TensorData::F32(bv.clone()),
            )
            .unwrap()
        } else {
            g.input("b", TensorType::new(DType::F32, sb)).unwrap()
        };
        let y = g.add("y", Op::BatchMatMul { a, b, trans_b }, None).unwrap();
        g.output(y).unwrap();
        let shape = g.ty(y).shape.clone();
        let mut feeds = HashMap::from([("a".to_string(), TensorData::F32(av.clone()))]);
        if !b_const {
            feeds.insert("b".into(), TensorData::F32(bv.clone()));
        }
        let (ob, osb) = if trans_b {
            transpose_last2(&bv, sb)
        } else {
            (bv.clone(), sb.to_vec())
        };
        for sram in [16u32 << 10, 256 << 10] {
            let got = run(&g, &feeds, sram);
            let n = onnxruntime(
                "MatMul",
                13,
                &[
                    spec(&TensorData::F32(av.clone()), sa, true),
                    spec(&TensorData::F32(ob.clone()), &osb, false),
                ],
                "{}",
                &shape,
                &got,
                Some(1e-5),
            );
            assert_eq!(n, shape.iter().product::<usize>());
        }
    }
}

/// (a, b, za, zb, b a constant)
type Int8Case<'a> = (&'a [usize], &'a [usize], i8, i8, bool);

/// int8 batched matmul against onnxruntime's QLinearMatMul (N-D), which
/// libnpu's int8 gemm matches bit for bit: every element must be equal.
#[test]
fn int8_batched_matmul_matches_onnxruntime_exactly() {
    require_onnxruntime();
    let cases: &[Int8Case] = &[
        // Both at run time (a's zero point must then be 0), b's corrected
        // by a's row sums on the device.
        (&[3, 5, 7], &[3, 7, 4], 0, 5, false),
        // A shared constant 2-D b: a's zero point folds into the bias.
        (&[2, 6, 40], &[40, 9], -7, 3, true),
        // Per-batch constant b, broadcast batches.
        (&[2, 1, 6, 33], &[3, 33, 5], 4, 0, true),
    ];
    let mut r = Rng(0x1234_5678);
    for &(sa, sb, za, zb, b_const) in cases {
        let k = sa[sa.len() - 1];
        let i8s = |r: &mut Rng, n: usize| -> Vec<i8> { (0..n).map(|_| r.next() as i8).collect() };
        let av = i8s(&mut r, sa.iter().product());
        let bv = i8s(&mut r, sb.iter().product());
        let (s_a, s_b) = (0.02f32, 0.015f32);
        let s_y = s_a * s_b * 128.0 * (k as f32).sqrt();
        let q = |scale, zero_point| Quant::PerTensor { scale, zero_point };
        let mut g = Graph::new();
        let a = g.input("a", TensorType::quantized(sa, q(s_a, za))).unwrap();
        let b = if b_const {
            g.constant(
                "b",
                TensorType::quantized(sb, q(s_b, zb)),
                TensorData::I8(bv.clone()),
            )
            .unwrap()
        } else {
            g.input("b", TensorType::quantized(sb, q(s_b, zb))).unwrap()
        };
        let y = g
            .add(
                "y",
                Op::BatchMatMul {
                    a,
                    b,
                    trans_b: false,
                },
                Some(q(s_y, -2)),
            )
            .unwrap();
        g.output(y).unwrap();
        let shape = g.ty(y).shape.clone();
        let mut feeds = HashMap::from([("a".to_string(), TensorData::I8(av.clone()))]);
        if !b_const {
            feeds.insert("b".into(), TensorData::I8(bv.clone()));
        }
        let f = |x: f32| spec(&TensorData::F32(vec![x]), &[], false);
        let z = |x: i8| spec(&TensorData::I8(vec![x]), &[], false);
        let inputs = [
            spec(&TensorData::I8(av.clone()), sa, true),
            f(s_a),
            z(za),
            spec(&TensorData::I8(bv.clone()), sb, false),
            f(s_b),
            z(zb),
            f(s_y),
            z(-2),
        ];
        for sram in [16u32 << 10, 256 << 10] {
            let mut s = Session::model(sram);
            let kern = s
                .compile(g.clone())
                .unwrap_or_else(|e| panic!("{sa:?}: {e}"));
            let run = s.run(&kern, &feeds).unwrap();
            let TensorData::I8(got) = &run.outputs["y"] else {
                panic!("i8 output")
            };
            let json = format!(
                "{{\"op\":\"QLinearMatMul\",\"inputs\":[{}],\"attrs\":{{}},\"out_dtype\":\"i8\",\"out_shape\":{},\"got\":{}}}",
                inputs.join(","),
                list(&shape),
                list(got)
            );
            common::onnx_ref_check(&format!("{sa:?} x {sb:?} at {sram}"), &json);
            // Not all saturated: the comparison means something.
            let distinct: std::collections::HashSet<_> = got.iter().collect();
            assert!(
                distinct.len() > 10,
                "{sa:?}: {} distinct values",
                distinct.len()
            );
        }
    }
}

/// A run-time b with a non-zero zero point of a is refused at compile
/// time with a message (its column sums are unknown).
#[test]
fn int8_batched_matmul_with_run_time_b_needs_a_zero_point_of_zero() {
    let q = |zero_point| Quant::PerTensor {
        scale: 0.1,
        zero_point,
    };
    let mut g = Graph::new();
    let a = g
        .input("a", TensorType::quantized(&[2, 3, 4], q(3)))
        .unwrap();
    let b = g
        .input("b", TensorType::quantized(&[2, 4, 5], q(0)))
        .unwrap();
    let y = g
        .add(
            "y",
            Op::BatchMatMul {
                a,
                b,
                trans_b: false,
            },
            Some(q(0)),
        )
        .unwrap();
    g.output(y).unwrap();
    let err = Session::model(64 << 10)
        .compile(g)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("zero point"), "{err}");
}

fn gather_graph(rows: usize, d: usize, idx_shape: &[usize], table: &[f32]) -> Graph {
    let mut g = Graph::new();
    let t = g
        .constant(
            "table",
            TensorType::new(DType::F32, &[rows, d]),
            TensorData::F32(table.to_vec()),
        )
        .unwrap();
    let i = g
        .input("ids", TensorType::new(DType::I32, idx_shape))
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Gather {
                table: t,
                indices: i,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    g
}

#[test]
fn gather_matches_onnxruntime_with_negative_indices() {
    require_onnxruntime();
    let (rows, d) = (50, 200);
    let mut r = Rng(7);
    let table = r.f32s(rows * d);
    let idx_shape = [3, 7];
    let mut ids: Vec<i32> = (0..21)
        .map(|_| (r.next() % (2 * rows as u64)) as i32 - rows as i32)
        .collect();
    // Both ends of both ranges.
    ids[..4].copy_from_slice(&[0, rows as i32 - 1, -1, -(rows as i32)]);
    let g = gather_graph(rows, d, &idx_shape, &table);
    let feeds = HashMap::from([("ids".to_string(), TensorData::I32(ids.clone()))]);
    // 4 KiB: two rows of 800 bytes per chunk, so the chunks and slots are exercised.
    for sram in [4u32 << 10, 256 << 10] {
        let got = run(&g, &feeds, sram);
        let n = onnxruntime(
            "Gather",
            13,
            &[
                spec(&TensorData::F32(table.clone()), &[rows, d], false),
                spec(&TensorData::I32(ids.clone()), &idx_shape, true),
            ],
            "{\"axis\":0}",
            &[3, 7, d],
            &got,
            None,
        );
        assert_eq!(n, 3 * 7 * d);
    }
}

#[test]
fn an_index_outside_the_table_ends_the_run_with_index_range() {
    let (rows, d) = (10, 4);
    let table: Vec<f32> = (0..rows * d).map(|i| i as f32).collect();
    let g = gather_graph(rows, d, &[4], &table);
    for bad in [10, -11, i32::MAX, i32::MIN] {
        let mut s = Session::model(64 << 10);
        let k = s.compile(g.clone()).unwrap();
        let feeds = HashMap::from([("ids".to_string(), TensorData::I32(vec![1, 2, bad, 3]))]);
        let err = match s.run(&k, &feeds) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("index {bad} into {rows} rows ran"),
        };
        assert!(err.contains("IndexRange"), "index {bad}: {err}");
    }
}

#[test]
fn layer_norm_matches_onnxruntime() {
    require_onnxruntime();
    let mut r = Rng(11);
    // (shape, bias, offset added to x: a large mean tests the centring)
    let cases: &[(&[usize], bool, f32)] = &[
        (&[2, 5, 48], true, 0.0),
        (&[16, 64], false, 0.0),
        (&[3, 128], true, 100.0),
        (&[1, 7], true, -3.0),
    ];
    for &(shape, with_bias, offset) in cases {
        let d = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let xv: Vec<f32> = r.f32s(n).iter().map(|x| 2.0 * x + offset).collect();
        let sv: Vec<f32> = r.f32s(d).iter().map(|x| 1.0 + 0.5 * x).collect();
        let bv = r.f32s(d);
        let eps = 1e-5f32;
        let mut g = Graph::new();
        let x = g.input("x", TensorType::new(DType::F32, shape)).unwrap();
        let s = g
            .constant(
                "scale",
                TensorType::new(DType::F32, &[d]),
                TensorData::F32(sv.clone()),
            )
            .unwrap();
        let b = with_bias.then(|| {
            g.constant(
                "bias",
                TensorType::new(DType::F32, &[d]),
                TensorData::F32(bv.clone()),
            )
            .unwrap()
        });
        let y = g
            .add(
                "y",
                Op::LayerNorm {
                    x,
                    scale: s,
                    bias: b,
                    epsilon: eps,
                },
                None,
            )
            .unwrap();
        g.output(y).unwrap();
        let feeds = HashMap::from([("x".to_string(), TensorData::F32(xv.clone()))]);
        let mut inputs = vec![
            spec(&TensorData::F32(xv.clone()), shape, true),
            spec(&TensorData::F32(sv.clone()), &[d], false),
        ];
        if with_bias {
            inputs.push(spec(&TensorData::F32(bv.clone()), &[d], false));
        }
        for sram in [4u32 << 10, 256 << 10] {
            let got = run(&g, &feeds, sram);
            // Outputs are O(1): 1e-5 is about 80 f32 roundings of the
            // result, room for the mean, variance and rsqrt's few each.
            let cnt = onnxruntime(
                "LayerNormalization",
                17,
                &inputs,
                &format!("{{\"axis\":-1,\"epsilon\":{eps:e}}}"),
                shape,
                &got,
                Some(1e-5),
            );
            assert_eq!(cnt, n);
        }
    }
}

fn require_onnxruntime() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import numpy, onnx, onnxruntime"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with numpy, onnx and onnxruntime is missing: run scripts/host-deps.sh"
    );
}

/// Bad shapes and types are graph errors naming the value; a row that
/// cannot fit is a compile error naming the op, never a panic.
#[test]
fn bad_operands_are_errors_with_a_message() {
    let f = |s: &[usize]| TensorType::new(DType::F32, s);
    let mut g = Graph::new();
    let a = g.input("a", f(&[2, 3, 4])).unwrap();
    let b = g.input("b", f(&[3, 5, 6])).unwrap();
    let bad_k = g.input("bad_k", f(&[2, 5, 6])).unwrap();
    let v = g.input("v", f(&[4])).unwrap();
    let ids_f = g.input("ids_f", f(&[3])).unwrap();
    let err = |op: Op| g.clone().add("y", op, None).unwrap_err().to_string();
    let e = err(Op::BatchMatMul {
        a,
        b: bad_k,
        trans_b: false,
    });
    assert!(e.contains("inner dimensions differ"), "{e}");
    // [3, 5, 6] transposed gives K = 6, not a's 4.
    let e = err(Op::BatchMatMul {
        a,
        b,
        trans_b: true,
    });
    assert!(e.contains("inner dimensions differ"), "{e}");
    let e = err(Op::BatchMatMul {
        a,
        b: v,
        trans_b: false,
    });
    assert!(e.contains("rank 2"), "{e}");
    let e = err(Op::Gather {
        table: a,
        indices: ids_f,
    });
    assert!(e.contains("indices must be i32"), "{e}");
    let e = err(Op::LayerNorm {
        x: a,
        scale: b,
        bias: None,
        epsilon: 1e-5,
    });
    assert!(e.contains("scale and bias must be f32[4]"), "{e}");
    let e = err(Op::LayerNorm {
        x: a,
        scale: v,
        bias: None,
        epsilon: f32::NAN,
    });
    assert!(e.contains("epsilon"), "{e}");
    // Batch dimensions that do not broadcast.
    let mut g = Graph::new();
    let a = g.input("a", f(&[2, 3, 4])).unwrap();
    let b = g.input("b", f(&[3, 4, 5])).unwrap();
    let e = g
        .add(
            "y",
            Op::BatchMatMul {
                a,
                b,
                trans_b: false,
            },
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not broadcast"), "{e}");
    // A layer-norm row larger than the SRAM.
    let mut g = Graph::new();
    let d = 1 << 16;
    let x = g.input("x", f(&[2, d])).unwrap();
    let s = g
        .constant("s", f(&[d]), TensorData::F32(vec![1.0; d]))
        .unwrap();
    let y = g
        .add(
            "ln",
            Op::LayerNorm {
                x,
                scale: s,
                bias: None,
                epsilon: 1e-5,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    let e = Session::model(64 << 10)
        .compile(g)
        .err()
        .expect("does not fit")
        .to_string();
    assert!(e.contains("`ln`") && e.contains("whole row"), "{e}");
}
