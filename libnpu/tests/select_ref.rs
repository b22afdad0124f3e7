//! Comparisons, logic and `where` (BINARY F 7..15 and SELECT) compiled at
//! 16 KiB and 1 MiB of SRAM, run on the device model and compared with
//! onnxruntime running the ONNX operator (Equal, Less, ..., And, Not,
//! Where) as a single-node model (tests/math_ref.py): a reference nobody
//! here wrote. Bool tensors are the IR's masks (f32 1.0 / +0.0): inputs
//! travel to onnxruntime as bool, its bool results come back as 1.0 / 0.0.
//! The operands hold every pair of the special values (NaN, -0, +0,
//! infinities, subnormals, ties), then random values over every broadcast
//! the lowering takes. All results must match exactly.
//! Needs python3 with numpy, onnx and onnxruntime (scripts/host-deps.sh).

mod common;
use common::list;

use npu::ir::{BinaryOp, Graph, Op, TensorType};
use npu::isa::{Broadcast, Insn};
use npu::reference::TensorData;
use npu::{CompileOptions, DType, DeviceParams};
use std::collections::HashMap;

const SRAMS: [u32; 2] = [16 << 10, 1 << 20];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Values from a small set, so that ties are common.
    fn coarse(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() >> 40) % 9) as f32 * 0.5 - 2.0)
            .collect()
    }
    fn bools(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| ((self.next() >> 40) & 1) as f32).collect()
    }
}

/// One operand: its values, shape, whether it is a graph input (else a
/// constant), and whether onnxruntime gets it as bool (a mask).
#[derive(Clone)]
struct Arg {
    v: Vec<f32>,
    shape: Vec<usize>,
    feed: bool,
    mask: bool,
}

fn arg(v: Vec<f32>, shape: &[usize]) -> Arg {
    Arg {
        v,
        shape: shape.to_vec(),
        feed: true,
        mask: false,
    }
}

fn spec(a: &Arg) -> String {
    if a.mask {
        let bits: Vec<u8> = a.v.iter().map(|&x| u8::from(x != 0.0)).collect();
        return format!(
            "{{\"dtype\":\"bool\",\"shape\":{},\"data\":{},\"feed\":{}}}",
            list(&a.shape),
            list(&bits),
            a.feed
        );
    }
    let bits: Vec<u32> = a.v.iter().map(|x| x.to_bits()).collect();
    format!(
        "{{\"dtype\":\"f32\",\"shape\":{},\"data\":{},\"feed\":{}}}",
        list(&a.shape),
        list(&bits),
        a.feed
    )
}

/// The graph `op(args)`: inputs `in0`, `in1`, ... or constants.
fn graph(op: impl FnOnce(&[npu::ValueId]) -> Op, args: &[Arg]) -> Graph {
    let mut g = Graph::new();
    let ids: Vec<_> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let ty = TensorType::new(DType::F32, &a.shape);
            let name = format!("in{i}");
            if a.feed {
                g.input(&name, ty).unwrap()
            } else {
                g.constant(&name, ty, TensorData::F32(a.v.clone())).unwrap()
            }
        })
        .collect();
    let y = g.add("y", op(&ids), None).unwrap();
    g.output(y).unwrap();
    g
}

/// Compile, run at `sram` and return the output and the program.
fn run(g: &Graph, args: &[Arg], sram: u32) -> (Vec<f32>, Vec<Insn>) {
    let inputs: HashMap<String, TensorData> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| a.feed)
        .map(|(i, a)| (format!("in{i}"), TensorData::F32(a.v.clone())))
        .collect();
    let r = common::run_device(g, &inputs, sram, CompileOptions::default());
    let TensorData::F32(out) = r.outputs["y"].clone() else {
        panic!("an f32 result");
    };
    let prog = npu::compile(
        g,
        DeviceParams { sram_size: sram },
        CompileOptions::default(),
    )
    .unwrap()
    .insns()
    .to_vec();
    (out, prog)
}

/// A case for math_ref.py: onnxruntime's `op` on `args` against `got`,
/// exactly (`bool`: its result is bool).
fn case(op: &str, args: &[Arg], shape: &[usize], got: &[f32], bool_out: bool) -> String {
    let specs: Vec<String> = args.iter().map(spec).collect();
    let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
    format!(
        "{{\"op\":\"{op}\",\"inputs\":[{}],\"attrs\":{{}},\"out_shape\":{},\"got\":{},\"atol\":0,\"rtol\":0,\"xtol\":0,\"out_bool\":{bool_out}}}",
        specs.join(","),
        list(shape),
        list(&got)
    )
}

/// Every element is 1.0 or +0.0 (not -0.0, not another true value).
fn assert_mask(label: &str, v: &[f32]) {
    for (i, x) in v.iter().enumerate() {
        assert!(
            x.to_bits() == 1.0f32.to_bits() || x.to_bits() == 0,
            "{label}: element {i} is {x:?} ({:#x}), not a mask",
            x.to_bits()
        );
    }
}

const SPECIAL: [f32; 12] = [
    f32::NAN,
    -0.0,
    0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    1.0,
    -1.0,
    2.5,
    f32::MIN_POSITIVE,
    1e-45, // the smallest subnormal
    f32::MAX,
    -f32::MAX,
];

const COMPARISONS: [(BinaryOp, &str); 5] = [
    (BinaryOp::Equal, "Equal"),
    (BinaryOp::Less, "Less"),
    (BinaryOp::Greater, "Greater"),
    (BinaryOp::LessOrEqual, "LessOrEqual"),
    (BinaryOp::GreaterOrEqual, "GreaterOrEqual"),
];

/// Every ordered pair of the special values ([12, 12]: x down, y across),
/// then broadcasts: y per column, x per column (the first operand
/// broadcast: the mirrored comparison), y per row, and a constant y (the
/// immediate). Exact against onnxruntime, masks 1.0 / +0.0.
#[test]
fn comparisons_match_onnxruntime_on_special_values_and_broadcasts() {
    let n = SPECIAL.len();
    let xs: Vec<f32> = (0..n * n).map(|i| SPECIAL[i / n]).collect();
    let ys: Vec<f32> = (0..n * n).map(|i| SPECIAL[i % n]).collect();
    let mut rng = Rng(3);
    let full = [6usize, 7, 8];
    let x3 = rng.coarse(336);
    let konst = |v: Vec<f32>, s: &[usize]| Arg {
        feed: false,
        ..arg(v, s)
    };
    let shapes: Vec<(&str, Arg, Arg)> = vec![
        ("pairs", arg(xs.clone(), &[n, n]), arg(ys.clone(), &[n, n])),
        (
            "y per column",
            arg(xs, &[n, n]),
            arg(SPECIAL.to_vec(), &[n]),
        ),
        (
            "x per column",
            arg(SPECIAL.to_vec(), &[n]),
            arg(ys, &[n, n]),
        ),
        (
            "y per row",
            arg(x3.clone(), &full),
            arg(rng.coarse(42), &[6, 7, 1]),
        ),
        (
            "x broadcast",
            arg(rng.coarse(8), &[1, 1, 8]),
            arg(x3.clone(), &full),
        ),
        ("y scalar", arg(x3.clone(), &full), konst(vec![0.5], &[1])),
        ("x scalar", konst(vec![-0.0], &[1]), arg(x3, &full)),
    ];
    let mut cases = Vec::new();
    for (op, onnx) in COMPARISONS {
        for (what, x, y) in &shapes {
            let args = [x.clone(), y.clone()];
            let g = graph(
                |v| Op::Binary {
                    op,
                    a: v[0],
                    b: v[1],
                },
                &args,
            );
            let shape = g.ty(g.outputs()[0]).shape.clone();
            for sram in SRAMS {
                let (got, prog) = run(&g, &args, sram);
                let label = format!("{onnx} {what} at {sram} B");
                assert_mask(&label, &got);
                if !x.feed || !y.feed {
                    // The constant is BINARY's immediate.
                    assert!(
                        prog.iter().any(|i| matches!(
                            i,
                            Insn::Binary {
                                bcast: Broadcast::Scalar,
                                ..
                            }
                        )),
                        "{label}"
                    );
                }
                cases.push((label, case(onnx, &args, &shape, &got, true)));
            }
        }
    }
    let n = common::math_ref_all_pass(&cases);
    assert_eq!(n, 5 * 2 * (144 * 3 + 336 * 4));
}

/// And, Or and Xor on masks (ONNX bool), every combination and with a
/// per-row and a scalar operand; Not (the IR's `equal(x, 0)`); all exact.
#[test]
fn logic_on_masks_matches_onnxruntime() {
    let mask = |v: Vec<f32>, s: &[usize]| Arg {
        mask: true,
        ..arg(v, s)
    };
    let mut rng = Rng(9);
    let pairs: Vec<(&str, Arg, Arg)> = vec![
        (
            "all",
            mask(vec![0.0, 0.0, 1.0, 1.0], &[4]),
            mask(vec![0.0, 1.0, 0.0, 1.0], &[4]),
        ),
        (
            "per row",
            mask(rng.bools(60), &[3, 4, 5]),
            mask(rng.bools(12), &[3, 4, 1]),
        ),
        (
            "first broadcast",
            mask(rng.bools(5), &[5]),
            mask(rng.bools(60), &[3, 4, 5]),
        ),
    ];
    let mut cases = Vec::new();
    for (op, onnx) in [
        (BinaryOp::And, "And"),
        (BinaryOp::Or, "Or"),
        (BinaryOp::Xor, "Xor"),
    ] {
        for (what, a, b) in &pairs {
            let args = [a.clone(), b.clone()];
            let g = graph(
                |v| Op::Binary {
                    op,
                    a: v[0],
                    b: v[1],
                },
                &args,
            );
            let shape = g.ty(g.outputs()[0]).shape.clone();
            for sram in SRAMS {
                let (got, _) = run(&g, &args, sram);
                let label = format!("{onnx} {what} at {sram} B");
                assert_mask(&label, &got);
                cases.push((label, case(onnx, &args, &shape, &got, true)));
            }
        }
    }
    // Not: equal(x, 0) with the 0 an immediate.
    let x = mask(rng.bools(70), &[7, 10]);
    let zero = Arg {
        feed: false,
        ..arg(vec![0.0], &[1])
    };
    let g = graph(
        |v| Op::Binary {
            op: BinaryOp::Equal,
            a: v[0],
            b: v[1],
        },
        &[x.clone(), zero.clone()],
    );
    for sram in SRAMS {
        let (got, _) = run(&g, &[x.clone(), zero.clone()], sram);
        assert_mask("not", &got);
        cases.push((
            format!("Not at {sram} B"),
            case("Not", std::slice::from_ref(&x), &[7, 10], &got, true),
        ));
    }
    assert_eq!(
        common::math_ref_all_pass(&cases),
        3 * 2 * (4 + 60 + 60) + 2 * 70
    );
}

/// Where over the special values and over every kind of operand the
/// lowering takes: full tiles, per-row and per-column vectors, a shared
/// mask broadcast over outer dimensions, a one-element input, constants
/// as immediates (-inf), and three operands broadcasting differently. At
/// 16 KiB the larger cases are tiled. Exact against onnxruntime; only
/// SELECTs compute.
#[test]
fn where_matches_onnxruntime_with_every_broadcast() {
    let mut rng = Rng(17);
    let mask = |v: Vec<f32>, s: &[usize]| Arg {
        mask: true,
        ..arg(v, s)
    };
    let konst = |v: Vec<f32>, s: &[usize]| Arg {
        feed: false,
        ..arg(v, s)
    };
    let n = SPECIAL.len();
    let sp_a: Vec<f32> = (0..n * n).map(|i| SPECIAL[i / n]).collect();
    let sp_b: Vec<f32> = (0..n * n).map(|i| SPECIAL[i % n]).collect();
    let cases3: Vec<(&str, [Arg; 3])> = vec![
        (
            "special values",
            [
                mask(rng.bools(n * n), &[n, n]),
                arg(sp_a, &[n, n]),
                arg(sp_b, &[n, n]),
            ],
        ),
        (
            "shared mask, scalar input b",
            [
                mask(rng.bools(20), &[4, 5]),
                arg(rng.coarse(60), &[3, 4, 5]),
                arg(vec![7.5], &[1]),
            ],
        ),
        (
            "mask per row and column, a per column, b -inf",
            [
                mask(rng.bools(15), &[3, 1, 5]),
                arg(rng.coarse(5), &[5]),
                konst(vec![f32::NEG_INFINITY], &[1]),
            ],
        ),
        (
            "a constant 0.5, b per row",
            [
                mask(rng.bools(60), &[3, 4, 5]),
                konst(vec![0.5], &[1]),
                arg(rng.coarse(12), &[3, 4, 1]),
            ],
        ),
        (
            "three broadcasts",
            [
                mask(rng.bools(8), &[2, 1, 4, 1]),
                arg(rng.coarse(15), &[1, 3, 1, 5]),
                arg(rng.coarse(120), &[2, 3, 4, 5]),
            ],
        ),
        (
            "one-element mask",
            [
                mask(vec![1.0], &[1]),
                arg(rng.coarse(6), &[2, 3]),
                arg(rng.coarse(6), &[2, 3]),
            ],
        ),
        (
            "large, attention-style mask",
            [
                mask(rng.bools(64 * 64), &[1, 1, 64, 64]),
                arg(rng.coarse(4 * 3 * 64 * 64), &[4, 3, 64, 64]),
                konst(vec![-1e9], &[1]),
            ],
        ),
    ];
    let mut cases = Vec::new();
    let mut total = 0;
    for (what, args) in &cases3 {
        let g = graph(
            |v| Op::Where {
                cond: v[0],
                a: v[1],
                b: v[2],
            },
            args,
        );
        let shape = g.ty(g.outputs()[0]).shape.clone();
        for sram in SRAMS {
            let (got, prog) = run(&g, args, sram);
            let label = format!("Where {what} at {sram} B");
            let computes = prog.iter().filter(|i| {
                !matches!(
                    i,
                    Insn::DmaLoad { .. } | Insn::DmaStore { .. } | Insn::End | Insn::Barrier
                )
            });
            assert!(
                computes.clone().all(|i| matches!(i, Insn::Select { .. })),
                "{label}: {:?}",
                computes.collect::<Vec<_>>()
            );
            total += got.len();
            cases.push((label, case("Where", args, &shape, &got, false)));
        }
    }
    assert_eq!(common::math_ref_all_pass(&cases), total);
}

/// `where(less(x, y), x, y)` in the text form: parses, prints back, runs
/// as one BINARY lt and one SELECT per tile, and equals onnxruntime's Min
/// where no NaN is involved (numpy's and ONNX's Min agree there).
#[test]
fn text_form_where_of_less_round_trips() {
    let src = "\
input x: f32[5,9]
input y: f32[5,9]
m = less(x, y)
n = not_equal(x, y) |> and(m)
o = or(m, n) |> xor(n)
p = greater_equal(x, y) |> less_equal(m)
q = equal(x, y)
r = greater(x, y)
y_min = where(m, x, y)
output y_min, o, p, q, r
";
    let g = npu::text::parse(src).unwrap_or_else(|e| panic!("{e}"));
    let printed = npu::text::print(&g);
    let g2 = npu::text::parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(g, g2);
    assert!(printed.contains("y_min = where(m, x, y)"), "{printed}");
    let mut rng = Rng(21);
    let (x, y) = (rng.coarse(45), rng.coarse(45));
    let inputs = HashMap::from([
        ("x".to_string(), TensorData::F32(x.clone())),
        ("y".to_string(), TensorData::F32(y.clone())),
    ]);
    let r = common::run_device(&g, &inputs, 16 << 10, CompileOptions::default());
    let TensorData::F32(got) = &r.outputs["y_min"] else {
        panic!("f32");
    };
    let args = [arg(x, &[5, 9]), arg(y, &[5, 9])];
    let c = case("Min", &args, &[5, 9], got, false);
    assert_eq!(common::math_ref_all_pass(&[("min".into(), c)]), 45);
}

#[test]
fn logic_and_where_refuse_int8_and_bad_shapes() {
    let err = |src: &str| npu::text::parse(src).unwrap_err().to_string();
    // int8 comparisons compare real values; int8 logic ops are refused.
    let src = "input a: i8[4] q(scale=0.1, zp=0)\ninput b: i8[4] q(scale=0.1, zp=0)\nc = less(a, b)\noutput c";
    assert!(npu::text::parse(src).is_ok());
    let e = err("input a: i8[4] q(scale=0.1, zp=0)\ninput b: i8[4] q(scale=0.1, zp=0)\nc = and(a, b)\noutput c");
    assert!(e.contains("and takes two f32 operands"), "{e}");
    let e = err("input c: f32[4]\ninput a: f32[3]\ninput b: f32[4]\nw = where(c, a, b)\noutput w");
    assert!(e.contains("do not broadcast"), "{e}");
    let e = err("input c: f32[4]\ninput a: f32[4]\nw = where(c, a)\noutput w");
    assert!(!e.is_empty());
}
