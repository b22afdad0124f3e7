//! Data-movement ops without onnxruntime: graph outputs that are a reshape
//! or an input, the text form, errors for bad parameters (never a panic),
//! and how many instructions the copies take (movement_ref.rs checks the
//! values against onnxruntime).

mod common;

use npu::ir::{Graph, Op, Quant, TensorType};
use npu::reference::TensorData;
use npu::{compile, CompileOptions, DType, DeviceParams};
use std::collections::HashMap;

fn f32t(s: &[usize]) -> TensorType {
    TensorType::new(DType::F32, s)
}

fn iota(n: usize) -> TensorData {
    TensorData::F32((0..n).map(|i| i as f32).collect())
}

#[test]
fn outputs_may_be_reshapes_and_inputs() {
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[2, 3, 4])).unwrap();
    let y = g.input("y", f32t(&[5])).unwrap();
    let t = g
        .add(
            "t",
            Op::Transpose {
                x,
                perm: vec![2, 0, 1],
            },
            None,
        )
        .unwrap();
    let r = g
        .add(
            "r",
            Op::Reshape {
                x: t,
                shape: vec![4, 6],
            },
            None,
        )
        .unwrap();
    // A reshape of an input, an input, and a reshape of a reshape output.
    let rx = g
        .add("rx", Op::Reshape { x, shape: vec![24] }, None)
        .unwrap();
    let rr = g
        .add(
            "rr",
            Op::Reshape {
                x: r,
                shape: vec![24],
            },
            None,
        )
        .unwrap();
    for v in [r, rx, y, rr] {
        g.output(v).unwrap();
    }
    let inputs = HashMap::from([("x".to_string(), iota(24)), ("y".to_string(), iota(5))]);
    for sram in [4096, 1 << 20] {
        let run = common::run_device(&g, &inputs, sram, CompileOptions::default());
        // x[a][b][c] = 12a + 4b + c; t[c][a][b] = x[a][b][c].
        let want_t: Vec<f32> = (0..4)
            .flat_map(|c| {
                (0..2).flat_map(move |a| (0..3).map(move |b| (12 * a + 4 * b + c) as f32))
            })
            .collect();
        assert_eq!(run.outputs["r"], TensorData::F32(want_t.clone()));
        assert_eq!(run.outputs["rr"], TensorData::F32(want_t));
        assert_eq!(run.outputs["rx"], iota(24));
        assert_eq!(run.outputs["y"], iota(5));
    }
}

#[test]
fn text_form_round_trips_the_movement_ops() {
    let src = "input x: f32[1,8,6,10]
input q: i8[1,2,5,7] q(scale=0.05, zp=-2)
a = transpose(x, perm=[0,2,3,1])
b = slice(x, begin=[0,1,5,9], step=[1,2,1,-3], shape=[1,4,1,4])
c = pad(q, begin=[0,0,1,2], end=[0,1,0,3], value=0.25)
d = depth_to_space(x, block=2, crd=true)
e = space_to_depth(x, block=2)
f = resize(x, size=[12,15], scale=[2.0,1.5], mode=linear, coord=align_corners)
h = resize(q, size=[10,14], scale=[2.0,2.0], mode=nearest, round=floor, coord=asymmetric)
k = concat(x, x, axis=1)
m = pad(x, begin=[0,1,2,0], end=[0,0,1,3], mode=reflect)
n = pad(q, begin=[0,0,3,3], end=[0,0,0,1], mode=edge)
output a, b, c, d, e, f, h, k, m, n
";
    let g = npu::text::parse(src).unwrap_or_else(|e| panic!("{e}"));
    let printed = npu::text::print(&g);
    let again = npu::text::parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(g, again, "{printed}");
    let ty = |n: &str| g.ty(g.lookup(n).unwrap()).clone();
    assert_eq!(ty("a").shape, [1, 6, 10, 8]);
    assert_eq!(ty("c").shape, [1, 3, 6, 12]);
    assert_eq!(
        ty("c").quant,
        Some(Quant::PerTensor {
            scale: 0.05,
            zero_point: -2
        })
    );
    assert_eq!(ty("d").shape, [1, 2, 12, 20]);
    assert_eq!(ty("e").shape, [1, 32, 3, 5]);
    assert_eq!(ty("k").shape, [1, 16, 6, 10]);
    // And they run: every output against the library's reference.
    common::check(&g, 3, 16 << 10, 1e-5);
}

#[test]
fn bad_parameters_are_errors_with_a_message() {
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[1, 6, 4, 5])).unwrap();
    let q = g
        .input(
            "q",
            TensorType::quantized(
                &[1, 6, 4, 5],
                Quant::PerTensor {
                    scale: 0.1,
                    zero_point: 0,
                },
            ),
        )
        .unwrap();
    let q2 = g
        .input(
            "q2",
            TensorType::quantized(
                &[1, 6, 4, 5],
                Quant::PerTensor {
                    scale: 0.2,
                    zero_point: 0,
                },
            ),
        )
        .unwrap();
    let bad: Vec<(Op, &str)> = vec![
        (
            Op::Transpose {
                x,
                perm: vec![0, 1, 1, 2],
            },
            "not a permutation",
        ),
        (
            Op::Transpose {
                x,
                perm: vec![0, 1, 2],
            },
            "not a permutation",
        ),
        (
            Op::Concat {
                xs: vec![],
                axis: 0,
            },
            "at least one operand",
        ),
        (
            Op::Concat {
                xs: vec![x, x],
                axis: 4,
            },
            "out of range",
        ),
        (
            Op::Concat {
                xs: vec![q, q2],
                axis: 1,
            },
            "requantize",
        ),
        (
            Op::Concat {
                xs: vec![x, q],
                axis: 1,
            },
            "share dtype",
        ),
        (
            Op::Slice {
                x,
                begin: vec![0, 0, 0, 4],
                step: vec![1, 1, 1, 1],
                shape: vec![1, 6, 4, 2],
            },
            "do not lie",
        ),
        (
            Op::Slice {
                x,
                begin: vec![0, 0, 0, 0],
                step: vec![1, 1, 0, 1],
                shape: vec![1, 6, 4, 5],
            },
            "steps must not be 0",
        ),
        (
            Op::Slice {
                x,
                begin: vec![0, 0, 3, 0],
                step: vec![1, 1, -2, 1],
                shape: vec![1, 6, 3, 5],
            },
            "do not lie",
        ),
        (
            Op::Pad {
                x,
                begin: vec![0, 0, 1],
                end: vec![0, 0, 1, 1],
                value: 0.0,
                mode: npu::ir::PadMode::Constant,
            },
            "one entry per axis",
        ),
        (
            Op::Pad {
                x,
                begin: vec![0, 0, usize::MAX, 0],
                end: vec![0, 0, 1, 0],
                value: 0.0,
                mode: npu::ir::PadMode::Constant,
            },
            "too large",
        ),
        (
            Op::DepthToSpace {
                x,
                block: 4,
                crd: false,
            },
            "multiple of block^2",
        ),
        (
            Op::DepthToSpace {
                x,
                block: 0,
                crd: false,
            },
            "block 0",
        ),
        (Op::SpaceToDepth { x, block: 3 }, "multiples of the block"),
        (
            Op::Resize {
                x,
                size: [8, 10],
                scale: [0.0, 2.0],
                mode: npu::ir::ResizeMode::Linear,
                coord: npu::ir::CoordMode::HalfPixel,
            },
            "positive and finite",
        ),
        (
            Op::Resize {
                x: q,
                size: [8, 10],
                scale: [2.0, 2.0],
                mode: npu::ir::ResizeMode::Linear,
                coord: npu::ir::CoordMode::HalfPixel,
            },
            "dequantize int8 first",
        ),
        (
            Op::Resize {
                x,
                size: [0, 10],
                scale: [2.0, 2.0],
                mode: npu::ir::ResizeMode::Linear,
                coord: npu::ir::CoordMode::HalfPixel,
            },
            "empty",
        ),
    ];
    for (i, (op, want)) in bad.into_iter().enumerate() {
        let e = g.add(&format!("bad{i}"), op, None).unwrap_err().to_string();
        assert!(e.contains(want), "case {i}: `{e}` should say `{want}`");
    }
    // Text errors.
    for (src, want) in [
        ("input x: f32[2,3]\ny = transpose(x)\noutput y\n", "needs `perm="),
        ("input x: f32[1,1,2,2]\ny = resize(x, size=[4,4], scale=[2,2], mode=cubic)\noutput y\n", "unknown resize mode"),
        ("input x: f32[1,1,2,2]\ny = resize(x, size=[4,4], scale=[2,2], coord=weird)\noutput y\n", "unknown coord"),
        ("input x: f32[2,3]\ny = slice(x, begin=[0,0], step=[1,x], shape=[1,1])\noutput y\n", "expected number"),
    ] {
        let e = npu::text::parse(src).unwrap_err().to_string();
        assert!(e.contains(want), "`{e}` should say `{want}`");
    }
}

/// Instructions of the one-op graph `op` on input `x: f32 shape`.
fn insns(shape: &[usize], op: impl FnOnce(npu::ir::ValueId) -> Op, sram: u32) -> usize {
    let mut g = Graph::new();
    let x = g.input("x", f32t(shape)).unwrap();
    let y = g.add("y", op(x), None).unwrap();
    g.output(y).unwrap();
    compile(
        &g,
        DeviceParams { sram_size: sram },
        CompileOptions::default(),
    )
    .unwrap()
    .insns()
    .len()
}

#[test]
fn copies_take_few_instructions() {
    let sram = 256 << 10;
    // NCHW -> NHWC of 64 x 56 x 56 f32 (784 KiB): one load/store pair per
    // SRAM slot of single-element rows, not one per element or row.
    let n = insns(
        &[1, 64, 56, 56],
        |x| Op::Transpose {
            x,
            perm: vec![0, 2, 3, 1],
        },
        sram,
    );
    let slots = (64 * 56 * 56 * 4usize).div_ceil(sram as usize);
    assert!(
        n <= 2 * slots + 8,
        "transpose: {n} instructions for {slots} slots"
    );
    eprintln!("transpose NCHW -> NHWC of [1, 64, 56, 56]: {n} instructions");
    // A channel slice and a concat move whole rows: a pair per slot.
    let n = insns(
        &[1, 64, 56, 56],
        |x| Op::Slice {
            x,
            begin: vec![0, 16, 0, 0],
            step: vec![1; 4],
            shape: vec![1, 32, 56, 56],
        },
        sram,
    );
    assert!(
        n <= 2 * (32 * 56 * 56 * 4usize).div_ceil(sram as usize) + 4,
        "slice: {n}"
    );
    eprintln!("channel slice of [1, 64, 56, 56]: {n} instructions");
    // 2x nearest upsampling of 64 x 28 x 28: per chunk a load, two column
    // runs, two row runs and a store.
    let n = insns(
        &[1, 64, 28, 28],
        |x| Op::Resize {
            x,
            size: [56, 56],
            scale: [2.0, 2.0],
            mode: npu::ir::ResizeMode::Nearest(npu::ir::NearestRound::Floor),
            coord: npu::ir::CoordMode::Asymmetric,
        },
        sram,
    );
    let bytes = 64 * (28 * 28 + 2 * 28 * 56 + 56 * 56) * 4usize;
    assert!(n <= 7 * bytes.div_ceil(sram as usize / 2), "resize: {n}");
    eprintln!("2x nearest resize of [1, 64, 28, 28]: {n} instructions");
}

#[test]
fn int8_pad_uses_the_quantized_value() {
    let mut g = Graph::new();
    let q = Quant::PerTensor {
        scale: 0.5,
        zero_point: -3,
    };
    let x = g.input("x", TensorType::quantized(&[2, 3], q)).unwrap();
    let y = g
        .add(
            "y",
            Op::Pad {
                x,
                begin: vec![1, 0],
                end: vec![0, 1],
                value: 2.0,
                mode: npu::ir::PadMode::Constant,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    let inputs = HashMap::from([("x".to_string(), TensorData::I8(vec![1, 2, 3, 4, 5, 6]))]);
    let run = common::run_device(&g, &inputs, 4096, CompileOptions::default());
    // 2.0 / 0.5 + (-3) = 1: the padding holds 1.
    assert_eq!(
        run.outputs["y"],
        TensorData::I8(vec![1, 1, 1, 1, 1, 2, 3, 1, 4, 5, 6, 1])
    );
}

#[test]
fn movement_of_constants_folds_at_compile_time() {
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[2, 3])).unwrap();
    let c = g
        .constant(
            "c",
            f32t(&[3, 2]),
            TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        )
        .unwrap();
    let t = g
        .add(
            "t",
            Op::Transpose {
                x: c,
                perm: vec![1, 0],
            },
            None,
        )
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Binary {
                op: npu::ir::BinaryOp::Add,
                a: x,
                b: t,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    let opt = npu::ir::passes::optimize(&g).unwrap();
    assert!(
        !opt.nodes()
            .iter()
            .any(|n| matches!(n.op, Op::Transpose { .. })),
        "{opt:?}"
    );
    let inputs = HashMap::from([("x".to_string(), TensorData::F32(vec![0.0; 6]))]);
    let run = common::run_device(&g, &inputs, 4096, CompileOptions::default());
    assert_eq!(
        run.outputs["y"],
        TensorData::F32(vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0])
    );
}

#[test]
fn an_input_output_through_the_runtime_api() {
    let npu = npu::Npu::model(64 * 1024).unwrap();
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[2, 3])).unwrap();
    let t = g
        .add(
            "t",
            Op::Transpose {
                x,
                perm: vec![1, 0],
            },
            None,
        )
        .unwrap();
    g.output(t).unwrap();
    g.output(x).unwrap();
    let model = npu.load_graph(g).expect("compile");
    let r = model.request();
    let xb: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    r.set_input("x", &xb).unwrap();
    r.run().unwrap();
    let floats = |b: Vec<u8>| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    assert_eq!(
        floats(r.output("t").unwrap()),
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
    assert_eq!(
        floats(r.output("x").unwrap()),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
}
