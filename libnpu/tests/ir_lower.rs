//! IR validation, reference details and lowering errors (no device needed).

use npu::ir::{
    broadcast_shape, quant_multiplier, Graph, GraphError, Op, Quant, TensorType, UnaryOp, Window,
};
use npu::lower::LowerError;
use npu::{compile, CompileOptions, DType, DeviceParams};

fn f32t(s: &[usize]) -> TensorType {
    TensorType::new(DType::F32, s)
}

#[test]
fn broadcasting_follows_numpy() {
    assert_eq!(broadcast_shape(&[5, 1, 3], &[4, 1]), Some(vec![5, 4, 3]));
    assert_eq!(broadcast_shape(&[2, 3], &[3, 2]), None);
    assert_eq!(broadcast_shape(&[7], &[1]), Some(vec![7]));
}

#[test]
fn shape_errors_name_the_value_and_the_fix() {
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[1, 6, 8, 8])).unwrap();
    let w = g.input("w", f32t(&[4, 3, 3, 3])).unwrap();
    let e = g
        .add(
            "y",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: None,
                window: Window::default(),
                groups: 4,
            },
            None,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("groups=4 must divide the input channels (6)"),
        "{e}"
    );
    let e = g
        .add(
            "y",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: None,
                window: Window::default(),
                groups: 1,
            },
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("expected 6"), "{e}");
    let y = g
        .add(
            "y",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: None,
                window: Window::default(),
                groups: 2,
            },
            None,
        )
        .unwrap();
    assert_eq!(g.ty(y).shape, vec![1, 4, 6, 6]);
    assert_eq!(
        g.add(
            "y",
            Op::Unary {
                op: UnaryOp::Relu,
                x: y
            },
            None
        )
        .unwrap_err(),
        GraphError::DuplicateName("y".into())
    );
    let e = g
        .add(
            "z",
            Op::Unary {
                op: UnaryOp::Clamp { lo: 2.0, hi: 1.0 },
                x: y,
            },
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("lo <= hi"), "{e}");
}

#[test]
fn int8_needs_symmetric_activations_and_a_result_scale() {
    let mut g = Graph::new();
    let a = g
        .input(
            "a",
            TensorType::quantized(
                &[4, 8],
                Quant::PerTensor {
                    scale: 0.1,
                    zero_point: 3,
                },
            ),
        )
        .unwrap();
    let w = g
        .input(
            "w",
            TensorType::quantized(
                &[8, 2],
                Quant::PerTensor {
                    scale: 0.1,
                    zero_point: 0,
                },
            ),
        )
        .unwrap();
    let e = g
        .add(
            "c",
            Op::Gemm {
                a,
                b: w,
                bias: None,
                trans_a: false,
                trans_b: false,
            },
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("zp=0"), "{e}");
    let a0 = g
        .input(
            "a0",
            TensorType::quantized(
                &[4, 8],
                Quant::PerTensor {
                    scale: 0.1,
                    zero_point: 0,
                },
            ),
        )
        .unwrap();
    let e = g
        .add(
            "c",
            Op::Gemm {
                a: a0,
                b: w,
                bias: None,
                trans_a: false,
                trans_b: false,
            },
            None,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("needs its per-tensor quantization"),
        "{e}"
    );
}

#[test]
fn multipliers_use_the_full_i32_range() {
    let (m, s) = quant_multiplier(&[0.5, 0.25]).unwrap();
    assert_eq!((m[0] as i64) << 1 >> s, 1, "0.5 * 2 = 1");
    assert!(m[0] >= 1 << 30, "{m:?}");
    assert_eq!(m[1] * 2, m[0]);
    assert!(quant_multiplier(&[3e9]).is_err());
}

#[test]
fn too_small_sram_is_an_error_not_a_panic() {
    let mut g = Graph::new();
    let x = g.input("x", f32t(&[2, 10000])).unwrap();
    let y = g.add("y", Op::Softmax { x, axis: 1 }, None).unwrap();
    g.output(y).unwrap();
    match compile(
        &g,
        DeviceParams { sram_size: 4096 },
        CompileOptions::default(),
    ) {
        Err(LowerError::SramTooSmall { name, .. }) => assert_eq!(name, "y"),
        other => panic!("expected SramTooSmall, got {other:?}"),
    }
    assert!(compile(
        &g,
        DeviceParams { sram_size: 1 << 20 },
        CompileOptions::default()
    )
    .is_ok());
}

#[test]
fn tiles_follow_the_sram_size() {
    let mut g = Graph::new();
    let a = g.input("a", f32t(&[300, 300])).unwrap();
    let b = g.input("b", f32t(&[300, 300])).unwrap();
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
    let small = compile(
        &g,
        DeviceParams {
            sram_size: 16 << 10,
        },
        CompileOptions::default(),
    )
    .unwrap();
    let big = compile(
        &g,
        DeviceParams { sram_size: 4 << 20 },
        CompileOptions::default(),
    )
    .unwrap();
    assert!(
        small.insns().len() > 4 * big.insns().len(),
        "{} vs {}",
        small.insns().len(),
        big.insns().len()
    );
    // Every SRAM operand stays below the SRAM size.
    for i in small.insns() {
        if let npu_isa::Insn::DmaLoad {
            sram, sram_layout, ..
        }
        | npu_isa::Insn::DmaStore {
            sram, sram_layout, ..
        } = i
        {
            assert!(
                *sram as u64 + sram_layout.extent().unwrap() <= 16 << 10,
                "{i}"
            );
        }
    }
}

#[test]
fn bind_checks_its_addresses_and_disassembly_is_readable() {
    let g = npu::text::parse("input a: f32[4,4]\nb = relu(a)\noutput b").unwrap();
    let p = compile(
        &g,
        DeviceParams { sram_size: 1 << 16 },
        CompileOptions::default(),
    )
    .unwrap();
    assert_eq!(
        p.bind(&[0x1000]).unwrap_err(),
        LowerError::BindCount { want: 2, got: 1 }
    );
    assert!(matches!(
        p.bind(&[0x1000, 0x1001]),
        Err(LowerError::BindAddress { .. })
    ));
    let cmd = p.bind(&[0x10000, 0x20000]).unwrap();
    assert_eq!(cmd.len(), p.cmdbuf_size());
    let decoded: Vec<_> = npu_isa::disassemble(&cmd)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(matches!(
        decoded[0],
        npu_isa::Insn::DmaLoad { va: 0x10000, .. }
    ));
    let text = p.disassemble();
    assert!(text.contains("Relu.f32") && text.contains("end"), "{text}");
}

#[test]
fn scratch_is_reused_once_values_die() {
    let g = npu::text::parse(
        "input a: f32[1000]\nb = exp(a) |> tanh |> sigmoid |> relu |> exp\noutput b",
    )
    .unwrap();
    // Unfused: every op a pass through memory.
    let p = compile(
        &g,
        DeviceParams { sram_size: 1 << 16 },
        CompileOptions {
            fuse: false,
            ..Default::default()
        },
    )
    .unwrap();
    let scratch = p
        .buffers()
        .iter()
        .find(|b| b.kind == npu::lower::BufferKind::Scratch)
        .unwrap();
    // Four 4000-byte intermediates, at most two alive at once.
    assert_eq!(scratch.size, 2 * 4032);
    // Fused, the five ops are one elementwise chain on the SRAM tile: no
    // intermediate reaches memory.
    let p = compile(
        &g,
        DeviceParams { sram_size: 1 << 16 },
        CompileOptions::default(),
    )
    .unwrap();
    assert!(p
        .buffers()
        .iter()
        .all(|b| b.kind != npu::lower::BufferKind::Scratch));
}

#[test]
fn quantize_saturates_like_the_device() {
    use npu::ir::quantize_f32;
    assert_eq!(quantize_f32(f32::INFINITY, 0.1, 5), 127);
    assert_eq!(quantize_f32(f32::NEG_INFINITY, 0.1, 5), -128);
    assert_eq!(quantize_f32(f32::NAN, 0.1, 5), 5);
    assert_eq!(quantize_f32(0.25, 0.1, 0), 2, "2.5 rounds half to even");
    assert_eq!(quantize_f32(0.35, 0.1, 0), 4, "3.5 rounds half to even");
}
