//! Real networks through the compiler: constants, folding, the direct
//! convolution, jobs, and ResNet-18 / MobileNetV2 against numpy.

#[path = "models/nets.rs"]
mod nets;

use npu::ir::{BinaryOp, Graph, Op, UnaryOp, Window};
use npu::lower::BufferKind;
use npu::{compile, CompileOptions, DType, DeviceParams, Session, TensorData, TensorType};
use std::collections::HashMap;

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn constant(
    g: &mut Graph,
    name: &str,
    shape: &[usize],
    r: &mut impl FnMut() -> f32,
) -> npu::ValueId {
    let n: usize = shape.iter().product();
    g.constant(
        name,
        TensorType::new(DType::F32, shape),
        TensorData::F32((0..n).map(|_| r()).collect()),
    )
    .unwrap()
}

/// (input NCHW, out channels, kernel, stride, pad, dilation, groups, bias, relu)
type ConvCase = (
    [usize; 4],
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    usize,
    bool,
    bool,
);

fn conv_graph(case: ConvCase, seed: u64) -> Graph {
    let (x, k, kernel, stride, padding, dilation, groups, bias, relu) = case;
    let mut r = rng(seed);
    let mut g = Graph::new();
    let xi = g.input("x", TensorType::new(DType::F32, &x)).unwrap();
    let w = constant(
        &mut g,
        "w",
        &[k, x[1] / groups, kernel[0], kernel[1]],
        &mut r,
    );
    let b = bias.then(|| constant(&mut g, "b", &[k], &mut r));
    let window = Window {
        stride,
        padding,
        dilation,
    };
    let mut y = g
        .add(
            "y",
            Op::Conv2d {
                input: xi,
                weight: w,
                bias: b,
                window,
                groups,
            },
            None,
        )
        .unwrap();
    if relu {
        y = g
            .add(
                "r",
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: y,
                },
                None,
            )
            .unwrap();
    }
    g.output(y).unwrap();
    g
}

#[test]
fn direct_conv_matches_the_reference_across_shapes_and_tilings() {
    let cases: &[ConvCase] = &[
        (
            [1, 3, 9, 11],
            5,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
            true,
            true,
        ),
        (
            [2, 4, 10, 10],
            6,
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            1,
            true,
            false,
        ),
        (
            [1, 3, 17, 15],
            8,
            [7, 7],
            [2, 2],
            [3, 3],
            [1, 1],
            1,
            false,
            true,
        ),
        (
            [1, 8, 8, 8],
            8,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            8,
            true,
            false,
        ),
        (
            [1, 8, 9, 9],
            8,
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            8,
            true,
            true,
        ),
        (
            [1, 6, 7, 9],
            4,
            [3, 3],
            [1, 1],
            [2, 2],
            [2, 2],
            2,
            true,
            false,
        ),
        (
            [1, 16, 6, 6],
            32,
            [1, 1],
            [1, 1],
            [0, 0],
            [1, 1],
            1,
            true,
            false,
        ),
        (
            [1, 16, 8, 8],
            8,
            [1, 1],
            [2, 2],
            [0, 0],
            [1, 1],
            1,
            false,
            false,
        ),
        (
            [1, 5, 8, 7],
            3,
            [2, 3],
            [1, 2],
            [0, 1],
            [1, 1],
            1,
            true,
            true,
        ),
        (
            [1, 64, 12, 12],
            64,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
            true,
            true,
        ),
    ];
    for (i, &case) in cases.iter().enumerate() {
        let g = conv_graph(case, i as u64 + 1);
        for sram in [8u32 << 10, 64 << 10, 1 << 20] {
            let mut s = Session::model(sram);
            let k = s
                .compile(g.clone())
                .unwrap_or_else(|e| panic!("case {i} at {sram}: {e}"));
            assert!(
                k.program
                    .buffers()
                    .iter()
                    .any(|b| b.kind == BufferKind::Constant),
                "case {i}: weights are constants"
            );
            let inputs = npu::runtime::random_inputs(&g, 7 + i as u64);
            s.run_checked(&k, &inputs, 1e-4)
                .unwrap_or_else(|e| panic!("case {i} {case:?} at {sram} bytes of SRAM: {e}"));
        }
    }
}

#[test]
fn batch_norm_folds_into_the_conv_and_dead_code_is_dropped() {
    let mut r = rng(3);
    let mut g = Graph::new();
    let x = g
        .input("x", TensorType::new(DType::F32, &[1, 4, 6, 6]))
        .unwrap();
    let w = constant(&mut g, "w", &[8, 4, 3, 3], &mut r);
    let scale = constant(&mut g, "scale", &[1, 8, 1, 1], &mut r);
    let shift = constant(&mut g, "shift", &[8, 1, 1], &mut r);
    let window = Window {
        padding: [1, 1],
        ..Window::default()
    };
    let y = g
        .add(
            "conv",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: None,
                window,
                groups: 1,
            },
            None,
        )
        .unwrap();
    let y = g
        .add(
            "bn_mul",
            Op::Binary {
                op: BinaryOp::Mul,
                a: scale,
                b: y,
            },
            None,
        )
        .unwrap();
    let y = g
        .add(
            "bn_sub",
            Op::Binary {
                op: BinaryOp::Sub,
                a: y,
                b: shift,
            },
            None,
        )
        .unwrap();
    let y = g
        .add(
            "relu",
            Op::Unary {
                op: UnaryOp::Relu,
                x: y,
            },
            None,
        )
        .unwrap();
    // Nothing reads this.
    g.add(
        "dead",
        Op::Unary {
            op: UnaryOp::Exp,
            x,
        },
        None,
    )
    .unwrap();
    g.output(y).unwrap();
    let opt = npu::ir::passes::optimize(&g).unwrap();
    let names: Vec<&str> = opt
        .nodes()
        .iter()
        .filter(|n| !matches!(n.op, Op::Constant { .. }))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["x", "bn_sub", "relu"],
        "the conv absorbed the norm; `dead` is gone"
    );
    let mut s = Session::model(64 << 10);
    let k = s.compile(g.clone()).unwrap();
    let binaries = k
        .program
        .insns()
        .iter()
        .filter(|i| {
            matches!(
                i,
                npu::isa::Insn::Binary {
                    op: npu::isa::BinaryOp::Mul | npu::isa::BinaryOp::Sub,
                    ..
                }
            )
        })
        .count();
    assert_eq!(binaries, 0, "no multiply or subtract left on the device");
    s.run_checked(&k, &npu::runtime::random_inputs(&g, 5), 1e-4)
        .unwrap();
}

#[test]
fn constant_subgraphs_are_computed_at_compile_time() {
    let mut r = rng(4);
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, &[3, 4])).unwrap();
    let a = constant(&mut g, "a", &[3, 4], &mut r);
    let b = constant(&mut g, "b", &[4], &mut r);
    let ab = g
        .add(
            "ab",
            Op::Binary {
                op: BinaryOp::Max,
                a,
                b,
            },
            None,
        )
        .unwrap();
    let t = g
        .add(
            "t",
            Op::Unary {
                op: UnaryOp::Tanh,
                x: ab,
            },
            None,
        )
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Binary {
                op: BinaryOp::Add,
                a: x,
                b: t,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    let opt = npu::ir::passes::optimize(&g).unwrap();
    let t = opt.lookup("t").unwrap();
    assert!(
        matches!(opt.node(t).op, Op::Constant { .. }),
        "{:?}",
        opt.node(t).op
    );
    let mut s = Session::model(16 << 10);
    let k = s.compile(g.clone()).unwrap();
    s.run_checked(&k, &npu::runtime::random_inputs(&g, 6), 1e-5)
        .unwrap();
}

#[test]
fn long_programs_run_as_several_jobs_within_the_limit() {
    let g = conv_graph(
        (
            [1, 16, 20, 20],
            16,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
            true,
            true,
        ),
        9,
    );
    let limit = 64 * 40;
    let opts = CompileOptions {
        max_job_bytes: limit,
        ..Default::default()
    };
    // Small SRAM: many bands, so many steps... of one conv; chain three
    // convs so there are step boundaries to split at.
    let mut r = rng(10);
    let mut g3 = Graph::new();
    let x = g3
        .input("x", TensorType::new(DType::F32, &[1, 8, 12, 12]))
        .unwrap();
    let mut y = x;
    for i in 0..4 {
        let w = constant(&mut g3, &format!("w{i}"), &[8, 8, 3, 3], &mut r);
        let window = Window {
            padding: [1, 1],
            ..Window::default()
        };
        y = g3
            .add(
                &format!("c{i}"),
                Op::Conv2d {
                    input: y,
                    weight: w,
                    bias: None,
                    window,
                    groups: 1,
                },
                None,
            )
            .unwrap();
        y = g3
            .add(
                &format!("r{i}"),
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: y,
                },
                None,
            )
            .unwrap();
    }
    g3.output(y).unwrap();
    let p = compile(&g3, DeviceParams { sram_size: 1 << 20 }, opts).unwrap();
    assert!(p.jobs().len() >= 2, "{} jobs", p.jobs().len());
    for j in p.jobs() {
        assert!(j.len() * 64 <= limit as usize);
        assert_eq!(p.insns()[j.end - 1], npu::isa::Insn::End);
    }
    assert!(
        p.bind(&vec![0x10000; p.buffers().len()]).is_err(),
        "one command buffer cannot hold several jobs"
    );
    let mut s = Session::model(1 << 20);
    s.options = opts;
    let k = s.compile(g3.clone()).unwrap();
    assert_eq!(k.program.jobs().len(), p.jobs().len());
    s.run_checked(&k, &npu::runtime::random_inputs(&g3, 11), 1e-4)
        .unwrap();
    // One op that alone needs more than a job holds is a compile error.
    let e = compile(
        &g,
        DeviceParams { sram_size: 8 << 10 },
        CompileOptions {
            max_job_bytes: 64 * 4,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("above the 256-byte limit of one job"),
        "{e}"
    );
}

#[test]
fn absurd_shapes_are_errors_not_panics() {
    let mut g = Graph::new();
    let e = g
        .input("huge", TensorType::new(DType::F32, &[usize::MAX / 2, 3]))
        .unwrap_err();
    assert!(
        e.to_string().contains("more elements than fit in memory"),
        "{e}"
    );
    let x = g.input("x", TensorType::new(DType::F32, &[4])).unwrap();
    // 2^32 * 2^32 wraps to 0 in 64 bits; 2^62 * 4 would wrap in the byte count.
    for shape in [vec![1usize << 32, 1 << 32], vec![1 << 62, 4, 1]] {
        let e = g
            .add(
                "r",
                Op::Reshape {
                    x,
                    shape: shape.clone(),
                },
                None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("cannot reshape"), "{shape:?}: {e}");
    }
    let e = g
        .constant(
            "c",
            TensorType::new(DType::F32, &[2, 2]),
            TensorData::F32(vec![1.0; 3]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("needs 4 f32 values, got 3"), "{e}");
    // Representable, but not on this device: a compile error.
    let mut g = Graph::new();
    let w = g
        .input("w", TensorType::new(DType::F32, &[1 << 40, 1]))
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Unary {
                op: UnaryOp::Relu,
                x: w,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    let e = compile(
        &g,
        DeviceParams { sram_size: 1 << 20 },
        CompileOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("more than the ISA's 32-bit sizes express"),
        "{e}"
    );
}

/// Write `net` for tests/models/reference.py: graph.txt and data.bin.
fn dump(net: &nets::Net, dir: &std::path::Path) {
    use std::fmt::Write as _;
    let g = &net.g;
    let mut text = String::new();
    let mut data: Vec<u8> = Vec::new();
    let name = |v: &npu::ValueId| g.node(*v).name.clone();
    let shape = |s: &[usize]| {
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    for n in g.nodes() {
        let sh = shape(&n.ty.shape);
        let mut values = |d: &TensorData| {
            let TensorData::F32(v) = d else {
                panic!("f32 models only")
            };
            let off = data.len() / 4;
            data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            off
        };
        let _ = match &n.op {
            Op::Input => writeln!(
                text,
                "input {} {} {sh}",
                n.name,
                values(&net.feeds[&n.name])
            ),
            Op::Constant { data: d } => writeln!(text, "const {} {} {sh}", n.name, values(d)),
            Op::Conv2d {
                input,
                weight,
                bias,
                window: w,
                groups,
            } => writeln!(
                text,
                "conv {} {} {} {} {} {} {} {} {} {} {groups}",
                n.name,
                name(input),
                name(weight),
                bias.map(|b| name(&b)).unwrap_or("-".into()),
                w.stride[0],
                w.stride[1],
                w.padding[0],
                w.padding[1],
                w.dilation[0],
                w.dilation[1]
            ),
            Op::Binary { op, a, b } => writeln!(
                text,
                "binary {} {} {} {}",
                n.name,
                op.name(),
                name(a),
                name(b)
            ),
            Op::Unary {
                op: UnaryOp::Relu,
                x,
            } => writeln!(text, "relu {} {}", n.name, name(x)),
            Op::Unary {
                op: UnaryOp::Clamp { lo, hi },
                x,
            } => writeln!(text, "clamp {} {} {lo} {hi}", n.name, name(x)),
            Op::Pool {
                kind,
                x,
                kernel,
                window: w,
            } => writeln!(
                text,
                "pool {} {} {} {} {} {} {} {} {}",
                n.name,
                if *kind == npu::ir::PoolKind::Max {
                    "max"
                } else {
                    "avg"
                },
                name(x),
                kernel[0],
                kernel[1],
                w.stride[0],
                w.stride[1],
                w.padding[0],
                w.padding[1]
            ),
            Op::Gemm {
                a,
                b,
                bias,
                trans_a,
                trans_b,
            } => writeln!(
                text,
                "gemm {} {} {} {} {} {}",
                n.name,
                name(a),
                name(b),
                bias.map(|b| name(&b)).unwrap_or("-".into()),
                *trans_a as u8,
                *trans_b as u8
            ),
            Op::Reshape { x, shape: s } => {
                writeln!(text, "reshape {} {} {}", n.name, name(x), shape(s))
            }
            op => panic!("the numpy reference has no {}", op.name()),
        };
    }
    for o in g.outputs() {
        let _ = writeln!(text, "output {}", name(o));
    }
    std::fs::write(dir.join("graph.txt"), text).unwrap();
    std::fs::write(dir.join("data.bin"), data).unwrap();
}

/// Runs a numpy reference script (`cmd`, whose files are in `dir`): None
/// when python3 or numpy is missing (`dir` removed; an error with
/// NPU_REQUIRE_NUMPY=1); the script failing fails the test.
fn run_reference(
    mut cmd: std::process::Command,
    dir: &std::path::Path,
    script: &str,
) -> Option<()> {
    let out = cmd.output();
    let required = std::env::var("NPU_REQUIRE_NUMPY").is_ok_and(|v| v == "1");
    let missing = |why: String| {
        let _ = std::fs::remove_dir_all(dir);
        assert!(
            !required,
            "NPU_REQUIRE_NUMPY=1 but the numpy reference cannot run: {why}"
        );
        eprintln!("SKIPPED the numpy comparison: {why} (pip install numpy; NPU_REQUIRE_NUMPY=1 makes this a failure)");
        None
    };
    let out = match out {
        Err(e) => return missing(format!("python3: {e}")),
        Ok(o) => o,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("No module named 'numpy'") {
            return missing("numpy is not installed".into());
        }
        panic!("{script} failed: {stderr}");
    }
    Some(())
}

/// The outputs of `net` from numpy, or None when python3 or numpy is
/// missing (an error with NPU_REQUIRE_NUMPY=1).
fn numpy_outputs(net: &nets::Net, tag: &str) -> Option<HashMap<String, Vec<f32>>> {
    let dir = std::env::temp_dir().join(format!("npu-models-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dump(net, &dir);
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/models/reference.py"
    ))
    .arg(&dir);
    run_reference(cmd, &dir, "reference.py")?;
    let mut res = HashMap::new();
    for o in net.g.outputs() {
        let n = &net.g.node(*o).name;
        let b = std::fs::read(dir.join(format!("{n}.bin"))).unwrap();
        res.insert(
            n.clone(),
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(res)
}

/// Run `net` on the device model at each SRAM size and compare every
/// output with numpy: max |npu - numpy| within 1e-3 of max |numpy|.
fn check_against_numpy(net: &nets::Net, tag: &str) {
    let Some(want) = numpy_outputs(net, tag) else {
        return;
    };
    for sram in [256u32 << 10, 1 << 20] {
        let mut s = Session::model(sram);
        let k = s
            .compile(net.g.clone())
            .unwrap_or_else(|e| panic!("{tag} at {sram}: {e}"));
        let run = s
            .run(&k, &net.feeds)
            .unwrap_or_else(|e| panic!("{tag} at {sram}: {e}"));
        for (name, w) in &want {
            let TensorData::F32(got) = &run.outputs[name] else {
                panic!("f32 output")
            };
            assert_eq!(got.len(), w.len());
            let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            let err = got
                .iter()
                .zip(w)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            eprintln!("{tag} at {} KiB: max |npu - numpy| = {err:.3e}, max |numpy| = {scale:.3e}, {} jobs, {} cycles", sram >> 10, k.program.jobs().len(), run.cycles);
            assert!(
                scale > 1e-3,
                "{tag}: a degenerate output (all near zero) tests nothing"
            );
            assert!(
                err <= 1e-3 * scale,
                "{tag} at {sram}: max error {err} vs output scale {scale}"
            );
        }
    }
}

/// The full 224 x 224 networks (seconds on the model); NPU_MODEL_CHECK_HW=64
/// checks a smaller image.
fn check_hw() -> usize {
    std::env::var("NPU_MODEL_CHECK_HW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(224)
}

#[test]
fn resnet18_matches_numpy() {
    check_against_numpy(
        &nets::resnet18(check_hw(), nets::Weights::Constants),
        "resnet18",
    );
}

#[test]
fn mobilenet_v2_matches_numpy() {
    check_against_numpy(
        &nets::mobilenet_v2(check_hw(), nets::Weights::Constants),
        "mobilenetv2",
    );
}

#[test]
fn constants_are_uploaded_once_per_kernel_and_stay_resident() {
    let g = conv_graph(
        (
            [1, 8, 10, 10],
            16,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
            true,
            true,
        ),
        12,
    );
    let mut s = Session::model(32 << 10);
    let k = s.compile(g.clone()).unwrap();
    let consts = k.program.constants().len() as u64;
    let input = (8 * 10 * 10 * 4) as u64;
    assert!(consts >= (16 * 8 * 9 * 4) as u64);
    let first = s
        .run_checked(&k, &npu::runtime::random_inputs(&g, 1), 1e-4)
        .unwrap();
    assert_eq!(first.uploaded, input + consts);
    // Another image: only the image goes to the device; the weights the
    // conv reads are the ones still there from the first run.
    let second = s
        .run_checked(&k, &npu::runtime::random_inputs(&g, 2), 1e-4)
        .unwrap();
    assert_eq!(second.uploaded, input);
    // Another kernel of the same shape has other constants: uploaded.
    let g2 = conv_graph(
        (
            [1, 8, 10, 10],
            16,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
            true,
            true,
        ),
        13,
    );
    let k2 = s.compile(g2.clone()).unwrap();
    let third = s
        .run_checked(&k2, &npu::runtime::random_inputs(&g2, 3), 1e-4)
        .unwrap();
    assert_eq!(third.uploaded, input + consts);
}

#[test]
fn direct_conv_matches_the_reference_on_random_shapes() {
    let mut next = {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        move |n: usize| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    };
    let mut ran = 0;
    while ran < 60 {
        let groups = [1, 1, 2, 3][next(4)];
        let depthwise = next(4) == 0;
        let cg = 1 + next(5);
        let c = if depthwise { groups * 4 } else { groups * cg };
        let k = if depthwise { c } else { groups * (1 + next(6)) };
        let groups = if depthwise { c } else { groups };
        let kernel = [1 + next(4), 1 + next(4)];
        let stride = [1 + next(3), 1 + next(3)];
        let dilation = [1 + next(2), 1 + next(2)];
        let padding = [next(kernel[0]), next(kernel[1])];
        let x = [1 + next(2), c, 1 + next(12), 1 + next(12)];
        let case: ConvCase = (
            x,
            k,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            next(2) == 0,
            next(2) == 0,
        );
        // Windows larger than the padded input are graph errors, not cases.
        let fits = (0..2).all(|d| x[2 + d] + 2 * padding[d] > (kernel[d] - 1) * dilation[d]);
        if !fits {
            continue;
        }
        ran += 1;
        let g = conv_graph(case, ran as u64);
        let sram = [4u32 << 10, 8 << 10, 24 << 10, 256 << 10][next(4)];
        let mut s = Session::model(sram);
        let kern = match s.compile(g.clone()) {
            Ok(k) => k,
            // Too small an SRAM for this shape is an error, never a panic.
            Err(npu::runtime::Error::Compile(npu::LowerError::SramTooSmall { .. })) => continue,
            Err(e) => panic!("{case:?} at {sram}: {e}"),
        };
        s.run_checked(&kern, &npu::runtime::random_inputs(&g, ran as u64), 1e-4)
            .unwrap_or_else(|e| panic!("{case:?} at {sram} bytes: {e}"));
    }
}

#[test]
fn residual_add_and_activation_fuse_into_the_conv() {
    for (depthwise, skip_first) in [(false, true), (false, false), (true, true)] {
        let mut r = rng(20);
        let mut g = Graph::new();
        let x = g
            .input("x", TensorType::new(DType::F32, &[1, 8, 9, 9]))
            .unwrap();
        let window = Window {
            padding: [1, 1],
            ..Window::default()
        };
        let groups = if depthwise { 8 } else { 1 };
        let conv = |g: &mut Graph, r: &mut dyn FnMut() -> f32, name: &str, input| {
            let w = g
                .constant(
                    &format!("{name}.w"),
                    TensorType::new(DType::F32, &[8, 8 / groups, 3, 3]),
                    TensorData::F32((0..8 * 8 / groups * 9).map(|_| r()).collect()),
                )
                .unwrap();
            let b = g
                .constant(
                    &format!("{name}.b"),
                    TensorType::new(DType::F32, &[8]),
                    TensorData::F32((0..8).map(|_| r()).collect()),
                )
                .unwrap();
            g.add(
                name,
                Op::Conv2d {
                    input,
                    weight: w,
                    bias: Some(b),
                    window,
                    groups,
                },
                None,
            )
            .unwrap()
        };
        // The skip operand is an earlier value, or a conv defined after the
        // main one (then the add fuses into that later conv).
        let (main, skip) = if skip_first {
            let y = conv(&mut g, &mut r, "main", x);
            (y, x)
        } else {
            let y = conv(&mut g, &mut r, "main", x);
            let s = conv(&mut g, &mut r, "skip", x);
            (y, s)
        };
        let sum = g
            .add(
                "sum",
                Op::Binary {
                    op: BinaryOp::Add,
                    a: main,
                    b: skip,
                },
                None,
            )
            .unwrap();
        let out = g
            .add(
                "out",
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: sum,
                },
                None,
            )
            .unwrap();
        g.output(out).unwrap();
        let mut s = Session::model(16 << 10);
        let k = s.compile(g.clone()).unwrap();
        let full_adds = k
            .program
            .insns()
            .iter()
            .filter(|i| {
                matches!(
                    i,
                    npu::isa::Insn::Binary {
                        op: npu::isa::BinaryOp::Add,
                        bcast: npu::isa::Broadcast::None,
                        ..
                    }
                )
            })
            .count();
        if !depthwise {
            assert_eq!(
                full_adds, 0,
                "the residual starts the accumulator; no separate add"
            );
        }
        let relus = k
            .program
            .insns()
            .iter()
            .filter(|i| matches!(i, npu::isa::Insn::Unary { .. }))
            .count();
        assert!(relus > 0);
        s.run_checked(&k, &npu::runtime::random_inputs(&g, 21), 1e-4)
            .unwrap_or_else(|e| panic!("depthwise {depthwise}, skip first {skip_first}: {e}"));
    }
}

#[test]
fn a_program_never_needs_more_buffers_than_a_job_may_list() {
    // 300 inputs summed: the driver takes 256 buffers per job.
    let mut g = Graph::new();
    let mut acc = g.input("x0", TensorType::new(DType::F32, &[4])).unwrap();
    for i in 1..300 {
        let x = g
            .input(&format!("x{i}"), TensorType::new(DType::F32, &[4]))
            .unwrap();
        acc = g
            .add(
                &format!("s{i}"),
                Op::Binary {
                    op: BinaryOp::Add,
                    a: acc,
                    b: x,
                },
                None,
            )
            .unwrap();
    }
    g.output(acc).unwrap();
    let e = compile(
        &g,
        DeviceParams { sram_size: 1 << 20 },
        CompileOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("a job may use at most 256"), "{e}");
}

#[test]
fn int8_ops_read_constants_from_the_constant_buffer() {
    use npu::ir::Quant;
    let q = |scale: f32| Quant::PerTensor {
        scale,
        zero_point: 0,
    };
    let mut g = Graph::new();
    let x = g
        .input("x", TensorType::quantized(&[1, 4, 6, 6], q(0.05)))
        .unwrap();
    let wv: Vec<i8> = (0..8 * 4 * 9).map(|i| ((i * 37) % 255) as i8).collect();
    let w = g
        .constant(
            "w",
            TensorType::quantized(
                &[8, 4, 3, 3],
                Quant::PerChannel {
                    scales: (0..8).map(|k| 0.01 + 0.002 * k as f32).collect(),
                    axis: 0,
                    zero_points: vec![],
                },
            ),
            TensorData::I8(wv),
        )
        .unwrap();
    let b = g
        .constant(
            "b",
            TensorType::new(DType::I32, &[8]),
            TensorData::I32((0..8).map(|k| k * 100 - 400).collect()),
        )
        .unwrap();
    let window = Window {
        padding: [1, 1],
        ..Window::default()
    };
    let y = g
        .add(
            "y",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: Some(b),
                window,
                groups: 1,
            },
            Some(q(0.1)),
        )
        .unwrap();
    let r = g
        .add(
            "r",
            Op::Unary {
                op: UnaryOp::Relu,
                x: y,
            },
            None,
        )
        .unwrap();
    g.output(r).unwrap();
    let mut s = Session::model(16 << 10);
    let k = s.compile(g.clone()).unwrap();
    assert!(k
        .program
        .buffers()
        .iter()
        .any(|b| b.kind == BufferKind::Constant));
    s.run_checked(&k, &npu::runtime::random_inputs(&g, 30), 0.0)
        .unwrap();
}

/// The encoder block's output from tests/models/encoder_ref.py (the block
/// written the textbook way in numpy), or None when python3 or numpy is
/// missing (an error with NPU_REQUIRE_NUMPY=1). `broken`: a deliberately
/// wrong reference (NPU_REFERENCE_BREAK).
fn encoder_numpy(enc: &nets::Encoder, broken: Option<&str>) -> Option<Vec<f32>> {
    use std::fmt::Write as _;
    let dir = std::env::temp_dir().join(format!(
        "npu-encoder-{}-{}",
        broken.unwrap_or("ok"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut data: Vec<u8> = Vec::new();
    let mut list = String::new();
    for (name, shape, v) in &enc.weights {
        let _ = write!(
            list,
            "{}{{\"name\":\"{name}\",\"shape\":{shape:?},\"offset\":{}}}",
            if list.is_empty() { "" } else { "," },
            data.len() / 4
        );
        data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    let c = enc.cfg;
    let json = format!(
        "{{\"cfg\":{{\"seq\":{},\"d_model\":{},\"heads\":{},\"d_ff\":{},\"vocab\":{},\"epsilon\":{:e}}},\"ids\":{:?},\"weights\":[{list}]}}",
        c.seq, c.d_model, c.heads, c.d_ff, c.vocab, c.epsilon, enc.ids
    );
    std::fs::write(dir.join("case.json"), json).unwrap();
    std::fs::write(dir.join("data.bin"), data).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/models/encoder_ref.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(&dir);
    match broken {
        Some(b) => cmd.env("NPU_REFERENCE_BREAK", b),
        None => cmd.env_remove("NPU_REFERENCE_BREAK"),
    };
    run_reference(cmd, &dir, "encoder_ref.py")?;
    let b = std::fs::read(dir.join("y.bin")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// max |got - want| and max |want|.
fn max_error(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (err, scale)
}

/// The encoder block's tolerance, relative to max |output| (about 5).
/// Every f32 result is rounded to 2^-24 relative; a dot product of n
/// terms with rounding errors of random sign drifts by about sqrt(n) of
/// them (sqrt(512) * 2^-24 = 1.3e-6 of its terms' size for the MLP's
/// second layer), and the two layer norms, the softmax's exp and the
/// gelu's erf add a few ulps each: a few 1e-6 in all. Measured: 4e-7. 2e-5 leaves a
/// margin of 5-50x, and is still tight enough that a gelu with tanh in
/// place of erf (9e-5 of the output here) fails, as do a softmax over
/// the wrong axis and a missing 1/sqrt(dh) (checked below).
const ENCODER_TOL: f32 = 2e-5;

#[test]
fn encoder_block_matches_numpy() {
    let enc = nets::encoder(nets::ENCODER, nets::Weights::Constants);
    let Some(want) = encoder_numpy(&enc, None) else {
        return;
    };
    let net = &enc.net;
    let out_name = net.g.node(net.g.outputs()[0]).name.clone();
    let mut got_any = None;
    for sram in [256u32 << 10, 1 << 20] {
        let mut s = Session::model(sram);
        let k = s
            .compile(net.g.clone())
            .unwrap_or_else(|e| panic!("encoder at {sram}: {e}"));
        // The embedding lookup is one GATHER per chunk of ids.
        assert!(k
            .program
            .insns()
            .iter()
            .any(|i| matches!(i, npu_isa::Insn::Gather { .. })));
        let run = s
            .run(&k, &net.feeds)
            .unwrap_or_else(|e| panic!("encoder at {sram}: {e}"));
        let TensorData::F32(got) = &run.outputs[&out_name] else {
            panic!("f32 output")
        };
        let (err, scale) = max_error(got, &want);
        eprintln!(
            "encoder at {} KiB: max |npu - numpy| = {err:.3e}, max |numpy| = {scale:.3e}, {} instructions, {} jobs, {} cycles",
            sram >> 10,
            k.program.insns().len(),
            k.program.jobs().len(),
            run.cycles
        );
        assert!(scale > 0.5, "a degenerate output tests nothing");
        assert!(
            err <= ENCODER_TOL * scale,
            "encoder at {sram}: max error {err} vs output scale {scale}"
        );
        got_any = Some(got.clone());
    }
    // A reference that is wrong in one place must fail the comparison.
    let got = got_any.expect("ran");
    for broken in ["softmax_axis", "gelu_tanh", "no_scale"] {
        let Some(bad) = encoder_numpy(&enc, Some(broken)) else {
            return;
        };
        let (err, scale) = max_error(&got, &bad);
        eprintln!("against the reference broken by {broken}: max error {err:.3e}");
        assert!(
            err > ENCODER_TOL * scale,
            "the comparison passes against a reference broken by {broken}: {err} <= {} * {scale}",
            ENCODER_TOL
        );
    }
}

#[test]
fn any_f32_unary_op_fuses_into_a_conv_or_gemm() {
    // The pre-activation tensor never reaches memory: the program stores
    // as often as with a relu (which fused before), and computes the same
    // values as the reference.
    let ops = [
        UnaryOp::Relu,
        UnaryOp::HardSwish {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        UnaryOp::LeakyRelu { alpha: 0.1 },
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
    ];
    let mut stores = Vec::new();
    for (i, &op) in ops.iter().enumerate() {
        let mut r = rng(30);
        let mut g = Graph::new();
        let x = g
            .input("x", TensorType::new(DType::F32, &[1, 4, 12, 12]))
            .unwrap();
        let w = constant(&mut g, "w", &[6, 4, 3, 3], &mut r);
        let b = constant(&mut g, "b", &[6], &mut r);
        let conv = g
            .add(
                "conv",
                Op::Conv2d {
                    input: x,
                    weight: w,
                    bias: Some(b),
                    window: Window {
                        padding: [1, 1],
                        stride: [2, 2],
                        ..Window::default()
                    },
                    groups: 1,
                },
                None,
            )
            .unwrap();
        let act = g.add("act", Op::Unary { op, x: conv }, None).unwrap();
        let flat = g
            .add(
                "flat",
                Op::Reshape {
                    x: act,
                    shape: vec![1, 6 * 36],
                },
                None,
            )
            .unwrap();
        let fw = constant(&mut g, "fw", &[6 * 36, 10], &mut r);
        let fc = g
            .add(
                "fc",
                Op::Gemm {
                    a: flat,
                    b: fw,
                    bias: None,
                    trans_a: false,
                    trans_b: false,
                },
                None,
            )
            .unwrap();
        let out = g.add("out", Op::Unary { op, x: fc }, None).unwrap();
        g.output(out).unwrap();
        let mut s = Session::model(64 << 10);
        let k = s.compile(g.clone()).unwrap();
        let insns = k.program.insns();
        stores.push(
            insns
                .iter()
                .filter(|i| matches!(i, npu::isa::Insn::DmaStore { .. }))
                .count(),
        );
        assert!(insns
            .iter()
            .any(|i| matches!(i, npu::isa::Insn::Unary { .. })));
        s.run_checked(&k, &npu::runtime::random_inputs(&g, 31 + i as u64), 1e-5)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    assert!(
        stores.iter().all(|&n| n == stores[0]),
        "DMA stores per op (relu first): {stores:?}"
    );
}

/// Bytes a program stores to memory (DMA_STORE rows x planes x bytes).
fn stored_bytes(p: &npu::Program) -> usize {
    p.insns()
        .iter()
        .map(|i| match i {
            npu::isa::Insn::DmaStore { mem, .. } => {
                mem.shape.iter().map(|&d| d as usize).product::<usize>()
            }
            _ => 0,
        })
        .sum()
}

#[test]
fn a_pool_fuses_into_the_conv_producing_its_input() {
    // conv [-> relu or a chain] -> pool, the pool's windows inside bands
    // of rows: only the pooled result is stored, whatever the bands (SRAM
    // sizes from several bands per conv to one), and the values are the
    // reference's. Odd sizes leave conv rows and columns no window reads.
    type PoolCase = (
        [usize; 4],
        usize,
        usize,
        PoolKindCase,
        [usize; 2],
        [usize; 2],
    );
    #[derive(Clone, Copy, Debug)]
    enum PoolKindCase {
        MaxRelu,
        AvgSilu,
        MaxDepthwise,
    }
    let cases: [PoolCase; 4] = [
        ([1, 4, 23, 21], 6, 1, PoolKindCase::MaxRelu, [2, 2], [2, 2]),
        ([1, 3, 17, 16], 8, 2, PoolKindCase::AvgSilu, [1, 2], [1, 2]),
        (
            [2, 5, 15, 14],
            5,
            1,
            PoolKindCase::MaxDepthwise,
            [3, 3],
            [3, 3],
        ),
        ([1, 4, 20, 20], 6, 1, PoolKindCase::MaxRelu, [1, 1], [2, 2]),
    ];
    for (ci, &(x, k, stride, kind, kernel, pstride)) in cases.iter().enumerate() {
        let mut r = rng(40 + ci as u64);
        let mut g = Graph::new();
        let xi = g.input("x", TensorType::new(DType::F32, &x)).unwrap();
        let groups = if matches!(kind, PoolKindCase::MaxDepthwise) {
            x[1]
        } else {
            1
        };
        let w = constant(&mut g, "w", &[k, x[1] / groups, 3, 3], &mut r);
        let b = constant(&mut g, "b", &[k], &mut r);
        let conv = g
            .add(
                "conv",
                Op::Conv2d {
                    input: xi,
                    weight: w,
                    bias: Some(b),
                    window: Window {
                        padding: [1, 1],
                        stride: [stride, stride],
                        ..Window::default()
                    },
                    groups,
                },
                None,
            )
            .unwrap();
        let act = match kind {
            PoolKindCase::AvgSilu => {
                let s = g
                    .add(
                        "sig",
                        Op::Unary {
                            op: UnaryOp::Sigmoid,
                            x: conv,
                        },
                        None,
                    )
                    .unwrap();
                g.add(
                    "silu",
                    Op::Binary {
                        op: BinaryOp::Mul,
                        a: conv,
                        b: s,
                    },
                    None,
                )
                .unwrap()
            }
            _ => g
                .add(
                    "relu",
                    Op::Unary {
                        op: UnaryOp::Relu,
                        x: conv,
                    },
                    None,
                )
                .unwrap(),
        };
        let pool = g
            .add(
                "pool",
                Op::Pool {
                    kind: if matches!(kind, PoolKindCase::AvgSilu) {
                        npu::ir::PoolKind::Avg
                    } else {
                        npu::ir::PoolKind::Max
                    },
                    x: act,
                    kernel,
                    window: Window {
                        stride: pstride,
                        ..Window::default()
                    },
                },
                None,
            )
            .unwrap();
        g.output(pool).unwrap();
        let pooled_bytes = g.ty(pool).bytes();
        for sram in [8 << 10, 32 << 10, 1 << 20] {
            let params = DeviceParams { sram_size: sram };
            let p = compile(&g, params, CompileOptions::default()).unwrap();
            let unfused = compile(
                &g,
                params,
                CompileOptions {
                    fuse: false,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(
                stored_bytes(&p),
                pooled_bytes,
                "case {ci} at {sram}: the conv's output reached memory"
            );
            assert!(stored_bytes(&unfused) > pooled_bytes);
            let mut s = Session::model(sram);
            let kern = s.compile(g.clone()).unwrap();
            s.run_checked(
                &kern,
                &npu::runtime::random_inputs(&g, 50 + ci as u64),
                1e-5,
            )
            .unwrap_or_else(|e| panic!("case {ci} ({kind:?}) at {sram}: {e}"));
        }
    }
}

#[test]
fn overlapping_and_padded_pools_fuse_into_the_conv_producing_their_input() {
    // conv -> relu -> pool whose windows straddle bands (kernel > stride)
    // and, for max pools, pad: ResNet-18's stem (7x7/2 pad 3, then 3x3/2
    // pad 1 max pool) on a smaller image, odd sizes whose last windows
    // read the bottom and right padding, a stride-1 conv whose computed
    // columns past the right edge a 3x3/1 pad 1 window reads, a
    // depthwise conv with a silu chain, and an average pool with
    // overlapping windows. Only
    // the pooled result is stored, at SRAM sizes from many bands to one,
    // and the values are the reference's (padding never wins a max).
    // (input, out channels, conv kernel, conv stride, conv pad, depthwise,
    // max, pool kernel, pool stride, pool pad)
    type Case = (
        [usize; 4],
        usize,
        usize,
        usize,
        usize,
        bool,
        bool,
        [usize; 2],
        [usize; 2],
        [usize; 2],
    );
    let cases: [Case; 7] = [
        (
            [1, 3, 36, 34],
            8,
            7,
            2,
            3,
            false,
            true,
            [3, 3],
            [2, 2],
            [1, 1],
        ),
        (
            [1, 4, 15, 13],
            6,
            3,
            1,
            1,
            false,
            true,
            [3, 3],
            [2, 2],
            [1, 1],
        ),
        (
            [1, 3, 12, 11],
            5,
            3,
            1,
            1,
            false,
            true,
            [3, 3],
            [1, 1],
            [1, 1],
        ),
        (
            [2, 5, 14, 15],
            5,
            3,
            2,
            1,
            true,
            true,
            [3, 2],
            [2, 1],
            [1, 1],
        ),
        (
            [1, 4, 17, 16],
            6,
            3,
            1,
            0,
            false,
            true,
            [2, 3],
            [1, 2],
            [0, 1],
        ),
        (
            [1, 3, 19, 18],
            6,
            3,
            1,
            1,
            false,
            false,
            [3, 3],
            [2, 2],
            [0, 0],
        ),
        (
            [1, 6, 13, 12],
            6,
            3,
            1,
            1,
            true,
            true,
            [3, 3],
            [1, 1],
            [1, 1],
        ),
    ];
    for (ci, &(x, k, kk, stride, pad, dw, max, kernel, pstride, ppad)) in cases.iter().enumerate() {
        let mut r = rng(70 + ci as u64);
        let mut g = Graph::new();
        let xi = g.input("x", TensorType::new(DType::F32, &x)).unwrap();
        let groups = if dw { x[1] } else { 1 };
        let w = constant(&mut g, "w", &[k, x[1] / groups, kk, kk], &mut r);
        let b = constant(&mut g, "b", &[k], &mut r);
        let conv = g
            .add(
                "conv",
                Op::Conv2d {
                    input: xi,
                    weight: w,
                    bias: Some(b),
                    window: Window {
                        padding: [pad, pad],
                        stride: [stride, stride],
                        ..Window::default()
                    },
                    groups,
                },
                None,
            )
            .unwrap();
        // Without an activation for max pools: negative maxima, so that a
        // padding of 0 (rather than -inf) would show; the depthwise one
        // with a silu chain (negative too; on a register of the chain).
        let act = if max && dw {
            let sig = g
                .add(
                    "sig",
                    Op::Unary {
                        op: UnaryOp::Sigmoid,
                        x: conv,
                    },
                    None,
                )
                .unwrap();
            g.add(
                "silu",
                Op::Binary {
                    op: BinaryOp::Mul,
                    a: conv,
                    b: sig,
                },
                None,
            )
            .unwrap()
        } else if max {
            conv
        } else {
            g.add(
                "relu",
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: conv,
                },
                None,
            )
            .unwrap()
        };
        let pool = g
            .add(
                "pool",
                Op::Pool {
                    kind: if max {
                        npu::ir::PoolKind::Max
                    } else {
                        npu::ir::PoolKind::Avg
                    },
                    x: act,
                    kernel,
                    window: Window {
                        stride: pstride,
                        padding: ppad,
                        ..Window::default()
                    },
                },
                None,
            )
            .unwrap();
        g.output(pool).unwrap();
        let pooled_bytes = g.ty(pool).bytes();
        for sram in [16 << 10, 64 << 10, 1 << 20] {
            let params = DeviceParams { sram_size: sram };
            let p = compile(&g, params, CompileOptions::default()).unwrap();
            assert_eq!(
                stored_bytes(&p),
                pooled_bytes,
                "case {ci} at {sram}: the conv's output reached memory"
            );
            let mut s = Session::model(sram);
            let kern = s.compile(g.clone()).unwrap();
            s.run_checked(
                &kern,
                &npu::runtime::random_inputs(&g, 80 + ci as u64),
                1e-5,
            )
            .unwrap_or_else(|e| panic!("case {ci} at {sram}: {e}"));
        }
    }
}

#[test]
fn a_zero_pad_folds_into_the_conv_reading_it() {
    // pad (H, W; begin != end) -> conv without padding: the conv pads
    // natively, asymmetrically (the padded tensor is never stored), at
    // SRAM sizes from many bands to one, strides 1 and 2, dilation,
    // depthwise; values against the reference.
    // (input, out channels, kernel, stride, dilation, groups, pad begin, pad end)
    type PadCase = (
        [usize; 4],
        usize,
        [usize; 2],
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
    );
    let cases: [PadCase; 5] = [
        ([1, 3, 17, 16], 6, [3, 3], 2, 1, 1, [0, 0], [1, 1]),
        ([1, 4, 12, 11], 5, [4, 4], 1, 1, 1, [2, 2], [1, 1]),
        ([2, 4, 13, 9], 4, [3, 3], 1, 2, 4, [2, 0], [1, 3]),
        ([1, 3, 10, 15], 4, [2, 3], 1, 1, 1, [0, 1], [1, 2]),
        ([1, 2, 9, 14], 3, [3, 5], 2, 1, 1, [1, 3], [0, 1]),
    ];
    for (ci, &(x, k, kernel, stride, dil, groups, begin, end)) in cases.iter().enumerate() {
        let mut r = rng(60 + ci as u64);
        let mut g = Graph::new();
        let xi = g.input("x", TensorType::new(DType::F32, &x)).unwrap();
        let padded = g
            .add(
                "pad",
                Op::Pad {
                    x: xi,
                    begin: vec![0, 0, begin[0], begin[1]],
                    end: vec![0, 0, end[0], end[1]],
                    value: 0.0,
                    mode: npu::ir::PadMode::Constant,
                },
                None,
            )
            .unwrap();
        let w = constant(
            &mut g,
            "w",
            &[k, x[1] / groups, kernel[0], kernel[1]],
            &mut r,
        );
        let conv = g
            .add(
                "conv",
                Op::Conv2d {
                    input: padded,
                    weight: w,
                    bias: None,
                    window: Window {
                        stride: [stride, stride],
                        dilation: [dil, dil],
                        ..Window::default()
                    },
                    groups,
                },
                None,
            )
            .unwrap();
        g.output(conv).unwrap();
        for sram in [8 << 10, 32 << 10, 1 << 20] {
            let p = compile(
                &g,
                DeviceParams { sram_size: sram },
                CompileOptions::default(),
            )
            .unwrap();
            assert_eq!(
                stored_bytes(&p),
                g.ty(conv).bytes(),
                "case {ci} at {sram}: the padded input reached memory"
            );
            let mut s = Session::model(sram);
            let kern = s.compile(g.clone()).unwrap();
            s.run_checked(
                &kern,
                &npu::runtime::random_inputs(&g, 70 + ci as u64),
                1e-5,
            )
            .unwrap_or_else(|e| panic!("case {ci} at {sram}: {e}"));
        }
    }
}

/// The transfer cycles (npu-hw.rst, "Cost model": a DMA_LOAD, DMA_STORE
/// or COPY moves `max(bytes / DMA_BYTES_PER_CYCLE, rows)`, its rows
/// counted over all planes) of a program's DMA_LOADs from buffer
/// `buffer`, and of all its transfers beyond their bytes (what the row
/// rule adds).
fn transfer_cycles(p: &npu::Program, buffer: usize) -> (u64, u64) {
    const DMA_BYTES_PER_CYCLE: u64 = 64;
    let parts = p.to_parts();
    let from: std::collections::HashSet<usize> = parts
        .relocs
        .iter()
        .filter(|r| r.1 == buffer)
        .map(|r| r.0)
        .collect();
    let (mut loads, mut excess) = (0, 0);
    for (i, insn) in p.insns().iter().enumerate() {
        let (l, load) = match insn {
            npu::isa::Insn::DmaLoad { mem, .. } => (mem, true),
            npu::isa::Insn::DmaStore { mem, .. } => (mem, false),
            npu::isa::Insn::Copy { src_layout, .. } => (src_layout, false),
            _ => continue,
        };
        let [row, rows, planes] = l.shape.map(u64::from);
        let (bytes, rows) = (row * rows * planes, rows * planes);
        let cycles = bytes.div_ceil(DMA_BYTES_PER_CYCLE).max(rows);
        excess += cycles - bytes.div_ceil(DMA_BYTES_PER_CYCLE);
        if load && from.contains(&i) {
            loads += cycles;
        }
    }
    (loads, excess)
}

#[test]
fn strided_convs_load_whole_rows() {
    // A stride-2 conv reads every other column. Loaded one element per
    // DMA row, its input costs a cycle per element (the engine moves at
    // most a row a cycle): 16 times its bytes / 64 in f32, 64 in int8.
    // Loaded as whole rows and split in SRAM, it costs about its bytes /
    // 64 plus the rows that bands share; the results stay the
    // reference's. f32 (dense, depthwise, 1x1, a column stride alone) and
    // int8 (dense and depthwise, the widened band), at two SRAM sizes.
    let f32_cases: &[ConvCase] = &[
        (
            [1, 32, 56, 56],
            32,
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            1,
            true,
            true,
        ),
        (
            [1, 32, 56, 56],
            32,
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            32,
            true,
            true,
        ),
        (
            [1, 64, 28, 28],
            64,
            [1, 1],
            [2, 2],
            [0, 0],
            [1, 1],
            1,
            false,
            false,
        ),
        (
            [1, 8, 20, 30],
            8,
            [3, 3],
            [1, 2],
            [1, 1],
            [1, 1],
            1,
            true,
            false,
        ),
    ];
    // (what, graph, inputs, the input's name and bytes)
    type Case = (
        String,
        Graph,
        HashMap<String, TensorData>,
        &'static str,
        usize,
    );
    let mut graphs: Vec<Case> = f32_cases
        .iter()
        .enumerate()
        .map(|(i, &case)| {
            let g = conv_graph(case, 50 + i as u64);
            let inputs = npu::runtime::random_inputs(&g, 60 + i as u64);
            let bytes = case.0.iter().product::<usize>() * 4;
            (format!("{case:?}"), g, inputs, "x", bytes)
        })
        .collect();
    for (c, groups) in [(32, 1), (32, 32)] {
        let mut net = nets::Net::new(nets::Weights::Constants, 7);
        let x = net.qimage(c, 56, -3);
        let y = net.qconv(x, c, 3, 2, groups, Some(UnaryOp::Relu), 1.0, 4);
        net.g.output(y).unwrap();
        graphs.push((
            format!("int8 {c} channels, groups {groups}"),
            net.g,
            net.feeds,
            "image",
            c * 56 * 56,
        ));
    }
    for (what, g, inputs, name, bytes) in &graphs {
        for sram in [256u32 << 10, 1 << 20] {
            let mut s = Session::model(sram);
            let k = s
                .compile(g.clone())
                .unwrap_or_else(|e| panic!("{what} at {sram}: {e}"));
            let x = k.program.buffer_of(name).expect("the input's buffer");
            let (loads, _) = transfer_cycles(&k.program, x);
            let ideal = (*bytes as u64).div_ceil(64);
            assert!(
                loads <= 2 * ideal,
                "{what} at {sram}: loading the input costs {loads} transfer cycles, \
                 more than twice its bytes / 64 ({ideal})"
            );
            s.run_checked(&k, inputs, 1e-4)
                .unwrap_or_else(|e| panic!("{what} at {sram} bytes of SRAM: {e}"));
        }
    }
    // Over a whole network: MobileNetV2's stride-2 layers were the row
    // rule's 2.12 M extra cycles at 1 MiB (its DMA bound is 1.09 M).
    let net = nets::mobilenet_v2(224, nets::Weights::Constants);
    let p = compile(
        &net.g,
        DeviceParams { sram_size: 1 << 20 },
        CompileOptions::default(),
    )
    .unwrap();
    let (_, excess) = transfer_cycles(&p, usize::MAX);
    assert!(
        excess < 200_000,
        "MobileNetV2: rows cost {excess} cycles beyond their bytes"
    );
}
