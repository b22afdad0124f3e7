//! Data-movement ops (concat, slice, pad, transpose, depth_to_space,
//! space_to_depth, resize) on the device model against onnxruntime
//! (tests/onnx_ref.py): single-node ONNX models run on onnxruntime's CPU
//! provider. Movement is exact (every element bit for bit, f32 and int8);
//! linear resize within 1e-5. Each case runs at 16 KiB of SRAM (so copies
//! are tiled and resize works in bands of rows) and at 1 MiB, on shapes
//! that are no multiple of anything; the two results must be equal bit for
//! bit, and onnxruntime checks them. The library's own CPU reference must
//! agree too. Needs python3 with numpy, onnx and onnxruntime
//! (scripts/host-deps.sh).

mod common;
use common::list;

use npu::ir::{CoordMode, Graph, NearestRound, Op, Quant, ResizeMode, TensorType};
use npu::reference::TensorData;
use npu::{CompileOptions, DType};
use std::collections::HashMap;
use std::process::{Command, Stdio};

const SRAMS: [u32; 2] = [16 << 10, 1 << 20];

fn require_onnxruntime() {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, onnx, onnxruntime"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with numpy, onnx and onnxruntime is missing: run scripts/host-deps.sh"
    );
}

/// A tensor for onnx_ref.py (`feed`: a graph input, else an initializer).
fn spec(d: &TensorData, shape: &[usize], feed: bool) -> String {
    let (dtype, data, bits) = match d {
        TensorData::I8(v) => ("i8", list(v), false),
        TensorData::I32(v) => ("i32", list(v), false),
        TensorData::U8(v) => ("u8", list(v), false),
        TensorData::F16(v) => ("f16", list(v), false),
        TensorData::Bf16(v) => ("bf16", list(v), false),
        TensorData::F32(v) => (
            "f32",
            list(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            true,
        ),
    };
    format!(
        "{{\"dtype\":\"{dtype}\",\"shape\":{},\"data\":{data},\"bits\":{bits},\"feed\":{feed}}}",
        list(shape)
    )
}

fn i64s(v: &[i64]) -> String {
    format!(
        "{{\"dtype\":\"i64\",\"shape\":[{}],\"data\":{},\"feed\":false}}",
        v.len(),
        list(v)
    )
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

/// Deterministic data (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn data(&mut self, dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::I8 => TensorData::I8((0..n).map(|_| (self.next() >> 56) as u8 as i8).collect()),
            _ => TensorData::F32(
                (0..n)
                    .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0)
                    .collect(),
            ),
        }
    }
}

fn ty(dtype: DType, shape: &[usize]) -> TensorType {
    match dtype {
        DType::I8 => TensorType::quantized(
            shape,
            Quant::PerTensor {
                scale: 0.05,
                zero_point: 3,
            },
        ),
        _ => TensorType::new(dtype, shape),
    }
}

/// One ONNX node and the IR graph that should compute it.
struct Case {
    what: String,
    g: Graph,
    inputs: HashMap<String, TensorData>,
    /// The ONNX node's inputs after the graph inputs (initializers, or
    /// `null` for an omitted one).
    extra: Vec<String>,
    op: &'static str,
    attrs: String,
    opset: u32,
    tol: Option<f64>,
}

/// Run `c` at every SRAM size; returns the elements compared with
/// onnxruntime.
fn check(c: &Case) -> usize {
    let out = c.g.outputs()[0];
    let oty = c.g.ty(out).clone();
    let mut ins: Vec<String> =
        c.g.inputs()
            .map(|v| {
                let n = &c.g.node(v).name;
                spec(&c.inputs[n], &c.g.ty(v).shape, true)
            })
            .collect();
    ins.extend(c.extra.iter().cloned());
    // The device at every SRAM size (tiled differently), then onnxruntime
    // once on the first result: the others must equal it bit for bit.
    let mut results = Vec::new();
    for sram in SRAMS {
        let run = common::run_device(&c.g, &c.inputs, sram, CompileOptions::default());
        // The library's reference agrees (exactly for movement).
        npu::runtime::check(&c.g, &c.inputs, &run.outputs, c.tol.unwrap_or(0.0) as f32)
            .unwrap_or_else(|e| panic!("{} at {sram} bytes: reference: {e}", c.what));
        results.push(run.outputs[&c.g.node(out).name].clone());
    }
    for (sram, r) in SRAMS.iter().zip(&results) {
        assert_eq!(
            r, &results[0],
            "{}: {sram} bytes of SRAM differ from {}",
            c.what, SRAMS[0]
        );
    }
    let out_dtype = if oty.dtype == DType::I8 { "i8" } else { "f32" };
    let tol = c.tol.map_or(String::new(), |t| format!(",\"tol\":{t}"));
    let json = format!(
        "{{\"op\":\"{}\",\"inputs\":[{}],\"attrs\":{},\"out_dtype\":\"{out_dtype}\",\"out_shape\":{},\"got\":{},\"opset\":{}{tol}}}",
        c.op,
        ins.join(","),
        c.attrs,
        list(&oty.shape),
        got_list(&results[0]),
        c.opset
    );
    common::onnx_ref_check(&c.what, &json)
}

/// A graph of inputs `x0, x1, ...` of `shapes` and one op on them.
fn graph(
    dtype: DType,
    shapes: &[&[usize]],
    op: impl FnOnce(&[npu::ir::ValueId]) -> Op,
    seed: u64,
) -> (Graph, HashMap<String, TensorData>) {
    let mut g = Graph::new();
    let mut rng = Rng(seed | 1);
    let mut inputs = HashMap::new();
    let xs: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = format!("x{i}");
            inputs.insert(name.clone(), rng.data(dtype, s.iter().product()));
            g.input(&name, ty(dtype, s)).unwrap()
        })
        .collect();
    let y = g.add("y", op(&xs), None).unwrap_or_else(|e| panic!("{e}"));
    g.output(y).unwrap();
    (g, inputs)
}

fn case(
    what: String,
    (g, inputs): (Graph, HashMap<String, TensorData>),
    op: &'static str,
    extra: Vec<String>,
    attrs: String,
) -> Case {
    Case {
        what,
        g,
        inputs,
        extra,
        op,
        attrs,
        opset: 13,
        tol: None,
    }
}

const DTYPES: [DType; 2] = [DType::F32, DType::I8];

#[test]
fn concat_matches_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    for dtype in DTYPES {
        for axis in 0..4 {
            let mut shapes = [[2, 3, 5, 7], [2, 3, 5, 7], [2, 3, 5, 7]];
            shapes[0][axis] = 1;
            shapes[2][axis] = 4;
            let sh: Vec<&[usize]> = shapes.iter().map(|s| &s[..]).collect();
            let gi = graph(
                dtype,
                &sh,
                |xs| Op::Concat {
                    xs: xs.to_vec(),
                    axis,
                },
                axis as u64 + 7,
            );
            n += check(&case(
                format!("concat {dtype:?} axis {axis}"),
                gi,
                "Concat",
                vec![],
                format!("{{\"axis\":{axis}}}"),
            ));
        }
        // Large enough to be tiled at 16 KiB: [1, 9, 37, 41] + [1, 3, 37, 41].
        let gi = graph(
            dtype,
            &[&[1, 9, 37, 41], &[1, 3, 37, 41]],
            |xs| Op::Concat {
                xs: xs.to_vec(),
                axis: 1,
            },
            3,
        );
        n += check(&case(
            format!("concat {dtype:?} large"),
            gi,
            "Concat",
            vec![],
            "{\"axis\":1}".into(),
        ));
    }
    eprintln!("concat: {n} elements compared");
}

#[test]
fn slice_matches_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    // (shape, starts, ends, axes, steps) as ONNX takes them.
    type S = (Vec<usize>, Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);
    let cases: Vec<S> = vec![
        (
            vec![2, 5, 9, 13],
            vec![0, 1, -7, 12],
            vec![2, 5, 100, 0],
            vec![0, 1, 2, 3],
            vec![1, 2, 1, -3],
        ),
        (
            vec![3, 17, 19],
            vec![-1, i64::MIN],
            vec![i64::MIN, i64::MAX],
            vec![0, -1],
            vec![-1, 1],
        ),
        (
            vec![1, 8, 33, 35],
            vec![1, 2, 3],
            vec![7, 30, 34],
            vec![1, 2, 3],
            vec![1, 1, 1],
        ),
        (
            vec![1, 8, 33, 35],
            vec![0, 34],
            vec![100, 0],
            vec![2, 3],
            vec![2, -2],
        ),
    ];
    for dtype in DTYPES {
        for (i, (shape, starts, ends, axes, steps)) in cases.iter().enumerate() {
            let r = shape.len();
            let (mut begin, mut step, mut out) = (
                (0..r).map(|_| 0).collect::<Vec<usize>>(),
                vec![1i64; r],
                shape.clone(),
            );
            for k in 0..axes.len() {
                let a = if axes[k] < 0 {
                    axes[k] + r as i64
                } else {
                    axes[k]
                } as usize;
                let (b, s, c) =
                    npu::ir::slice_axis(shape[a], starts[k], ends[k], steps[k]).unwrap();
                begin[a] = b;
                step[a] = s;
                out[a] = c;
            }
            let gi = graph(
                dtype,
                &[shape],
                |xs| Op::Slice {
                    x: xs[0],
                    begin,
                    step,
                    shape: out,
                },
                i as u64 + 11,
            );
            let extra = vec![i64s(starts), i64s(ends), i64s(axes), i64s(steps)];
            n += check(&case(
                format!("slice {dtype:?} case {i}"),
                gi,
                "Slice",
                extra,
                "{}".into(),
            ));
        }
    }
    eprintln!("slice: {n} elements compared");
}

#[test]
fn pad_matches_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    for dtype in DTYPES {
        for (i, (shape, begin, end)) in [
            (
                vec![1usize, 3, 17, 19],
                vec![0usize, 1, 2, 3],
                vec![1usize, 0, 3, 1],
            ),
            (vec![2, 4, 30, 33], vec![0, 0, 1, 0], vec![0, 0, 2, 5]),
            (vec![5, 7], vec![3, 0], vec![0, 2]),
        ]
        .into_iter()
        .enumerate()
        {
            // The pad value: 1.5 for f32; for int8 the raw value 7, which is
            // (7 - 3) * 0.05 = 0.2 in real units.
            let (value, onnx_value) = match dtype {
                DType::I8 => (0.2, spec(&TensorData::I8(vec![7]), &[], false)),
                _ => (1.5, spec(&TensorData::F32(vec![1.5]), &[], false)),
            };
            let pads: Vec<i64> = begin.iter().chain(&end).map(|&p| p as i64).collect();
            let gi = graph(
                dtype,
                &[&shape],
                |xs| Op::Pad {
                    x: xs[0],
                    begin,
                    end,
                    value,
                    mode: npu::ir::PadMode::Constant,
                },
                i as u64 + 5,
            );
            n += check(&case(
                format!("pad {dtype:?} case {i}"),
                gi,
                "Pad",
                vec![i64s(&pads), onnx_value],
                "{\"mode\":\"constant\"}".into(),
            ));
        }
    }
    // Edge and reflect (the pads at most the axis size - 1 for reflect).
    for dtype in DTYPES {
        for mode in [npu::ir::PadMode::Edge, npu::ir::PadMode::Reflect] {
            for (i, (shape, begin, end)) in [
                (
                    vec![2usize, 3, 17, 19],
                    vec![0usize, 1, 2, 3],
                    vec![1usize, 2, 3, 1],
                ),
                (vec![2, 4, 30, 33], vec![0, 0, 1, 0], vec![0, 0, 2, 5]),
                (vec![5, 7], vec![3, 0], vec![0, 6]),
            ]
            .into_iter()
            .enumerate()
            {
                let pads: Vec<i64> = begin.iter().chain(&end).map(|&p| p as i64).collect();
                let gi = graph(
                    dtype,
                    &[&shape],
                    |xs| Op::Pad {
                        x: xs[0],
                        begin,
                        end,
                        value: 0.0,
                        mode,
                    },
                    i as u64 + 15,
                );
                n += check(&case(
                    format!("pad {dtype:?} {} case {i}", mode.name()),
                    gi,
                    "Pad",
                    vec![i64s(&pads)],
                    format!("{{\"mode\":\"{}\"}}", mode.name()),
                ));
            }
        }
    }
    eprintln!("pad: {n} elements compared");
}

#[test]
fn transpose_matches_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![1, 13, 17, 19], vec![0, 2, 3, 1]),
        (vec![1, 17, 19, 13], vec![0, 3, 1, 2]),
        (vec![37, 53], vec![1, 0]),
        (vec![3, 5, 7, 11], vec![3, 1, 0, 2]),
        (vec![2, 3, 4, 5, 6], vec![4, 2, 0, 3, 1]),
        (vec![4, 6, 5], vec![0, 1, 2]),
        (vec![1, 64, 9, 10], vec![0, 2, 3, 1]),
    ];
    for dtype in DTYPES {
        for (i, (shape, perm)) in cases.iter().enumerate() {
            let gi = graph(
                dtype,
                &[shape],
                |xs| Op::Transpose {
                    x: xs[0],
                    perm: perm.clone(),
                },
                i as u64 + 2,
            );
            n += check(&case(
                format!("transpose {dtype:?} {perm:?}"),
                gi,
                "Transpose",
                vec![],
                format!("{{\"perm\":{}}}", list(perm)),
            ));
        }
    }
    eprintln!("transpose: {n} elements compared");
}

#[test]
fn depth_and_space_match_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    for dtype in DTYPES {
        for (shape, block) in [
            ([1usize, 12, 7, 9], 2usize),
            ([2, 18, 5, 3], 3),
            ([1, 64, 15, 17], 2),
        ] {
            for crd in [false, true] {
                let gi = graph(
                    dtype,
                    &[&shape],
                    |xs| Op::DepthToSpace {
                        x: xs[0],
                        block,
                        crd,
                    },
                    9,
                );
                let mode = if crd { "CRD" } else { "DCR" };
                n += check(&case(
                    format!("depth_to_space {dtype:?} {shape:?} {mode}"),
                    gi,
                    "DepthToSpace",
                    vec![],
                    format!("{{\"blocksize\":{block},\"mode\":\"{mode}\"}}"),
                ));
            }
            let s = [
                shape[0],
                shape[1] / (block * block),
                shape[2] * block,
                shape[3] * block,
            ];
            let gi = graph(dtype, &[&s], |xs| Op::SpaceToDepth { x: xs[0], block }, 4);
            n += check(&case(
                format!("space_to_depth {dtype:?} {s:?}"),
                gi,
                "SpaceToDepth",
                vec![],
                format!("{{\"blocksize\":{block}}}"),
            ));
        }
    }
    eprintln!("depth/space: {n} elements compared");
}

/// Resize of `shape` by `scales` (as ONNX's scales input gives them).
fn resize_case(
    dtype: DType,
    shape: [usize; 4],
    scales: [f32; 2],
    mode: ResizeMode,
    coord: CoordMode,
    seed: u64,
) -> Case {
    let size = [
        (shape[2] as f32 * scales[0]).floor() as usize,
        (shape[3] as f32 * scales[1]).floor() as usize,
    ];
    let gi = graph(
        dtype,
        &[&shape],
        |xs| Op::Resize {
            x: xs[0],
            size,
            scale: scales,
            mode,
            coord,
        },
        seed,
    );
    let (m, round) = match mode {
        ResizeMode::Linear => ("linear", String::new()),
        ResizeMode::Nearest(r) => ("nearest", format!(",\"nearest_mode\":\"{}\"", r.name())),
    };
    let extra = vec![
        "null".to_string(),
        spec(
            &TensorData::F32(vec![1.0, 1.0, scales[0], scales[1]]),
            &[4],
            false,
        ),
    ];
    let attrs = format!(
        "{{\"mode\":\"{m}\",\"coordinate_transformation_mode\":\"{}\"{round}}}",
        coord.name()
    );
    let mut c = case(
        format!(
            "resize {dtype:?} {shape:?} x{scales:?} {m} {}{round}",
            coord.name()
        ),
        gi,
        "Resize",
        extra,
        attrs,
    );
    if mode == ResizeMode::Linear {
        c.tol = Some(1e-5);
    }
    c
}

#[test]
fn resize_nearest_matches_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    let modes = [
        (CoordMode::Asymmetric, NearestRound::Floor),
        (CoordMode::HalfPixel, NearestRound::RoundPreferFloor),
        (CoordMode::HalfPixel, NearestRound::RoundPreferCeil),
        (CoordMode::AlignCorners, NearestRound::RoundPreferFloor),
        (CoordMode::PytorchHalfPixel, NearestRound::Ceil),
        (CoordMode::TfHalfPixelForNn, NearestRound::Floor),
    ];
    for dtype in DTYPES {
        for (i, (coord, round)) in modes.into_iter().enumerate() {
            for (shape, scales) in [
                ([1, 3, 7, 9], [2.0, 2.0]),
                ([2, 2, 9, 11], [1.5, 0.5]),
                ([1, 4, 40, 37], [2.0, 3.0]),
            ] {
                n += check(&resize_case(
                    dtype,
                    shape,
                    scales,
                    ResizeMode::Nearest(round),
                    coord,
                    i as u64,
                ));
            }
        }
    }
    eprintln!("resize nearest: {n} elements compared");
}

#[test]
fn resize_linear_matches_onnxruntime() {
    require_onnxruntime();
    let mut n = 0;
    for (i, coord) in [
        CoordMode::HalfPixel,
        CoordMode::AlignCorners,
        CoordMode::PytorchHalfPixel,
        CoordMode::Asymmetric,
    ]
    .into_iter()
    .enumerate()
    {
        for (shape, scales) in [
            ([1, 3, 7, 9], [2.0, 2.0]),
            ([2, 2, 9, 11], [1.5, 0.5]),
            ([1, 4, 40, 37], [2.0, 1.75]),
        ] {
            n += check(&resize_case(
                DType::F32,
                shape,
                scales,
                ResizeMode::Linear,
                coord,
                i as u64,
            ));
        }
    }
    eprintln!("resize linear: {n} elements compared");
}

#[test]
fn upsample_matches_onnxruntime_opset_9() {
    require_onnxruntime();
    // Upsample (opset 9): nearest, asymmetric, floor: the importer's mapping.
    let mut n = 0;
    for dtype in DTYPES {
        let mut c = resize_case(
            dtype,
            [1, 3, 5, 7],
            [2.0, 3.0],
            ResizeMode::Nearest(NearestRound::Floor),
            CoordMode::Asymmetric,
            1,
        );
        c.op = "Upsample";
        c.opset = 9;
        c.extra = vec![spec(
            &TensorData::F32(vec![1.0, 1.0, 2.0, 3.0]),
            &[4],
            false,
        )];
        c.attrs = "{\"mode\":\"nearest\"}".into();
        n += check(&c);
    }
    eprintln!("upsample: {n} elements compared");
}
