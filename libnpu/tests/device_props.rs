//! Property tests: random shapes and SRAM sizes, device == reference.

mod common;
use common::check;
use npu::ir::{BinaryOp, Graph, Op, Quant, TensorType, UnaryOp, Window};
use npu::DType;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any numpy broadcast of one operand over the other
    /// (libnpu.rst, "binary") compiles and matches the reference: the second
    /// operand's directly, a broadcast first operand swapped in; only div
    /// with a broadcast first operand is refused, with `Unsupported`.
    #[test]
    fn binary_any_broadcast(dims in proptest::collection::vec(1usize..40, 1..4), mask in proptest::collection::vec(any::<bool>(), 4),
                            drop in 0usize..3, op in 0usize..6, int8 in any::<bool>(), swap in any::<bool>(), seed in any::<u64>()) {
        let out = dims.clone();
        let mut bshape: Vec<usize> = out.iter().zip(&mask).map(|(d, m)| if *m { *d } else { 1 }).collect();
        bshape.drain(..drop.min(bshape.len() - 1));
        let op = BinaryOp::ALL[op];
        let mut g = Graph::new();
        let ty = |s: &[usize]| if int8 {
            TensorType::quantized(s, Quant::PerTensor { scale: 0.05, zero_point: 1 })
        } else {
            TensorType::new(DType::F32, s)
        };
        let a = g.input("a", ty(&out)).unwrap();
        let b = g.input("b", ty(&bshape)).unwrap();
        let (x, y) = if swap { (b, a) } else { (a, b) };
        let c = g.add("c", Op::Binary { op, a: x, b: y }, None).unwrap();
        g.output(c).unwrap();
        let broadcast_first = swap && bshape.iter().product::<usize>() < out.iter().product::<usize>();
        let compiled = npu::compile(&g, npu::DeviceParams { sram_size: 4096 }, npu::CompileOptions::default());
        if broadcast_first && op == BinaryOp::Div {
            prop_assert!(matches!(compiled, Err(npu::LowerError::Unsupported { .. })), "{bshape:?} / {out:?}: {:?}", compiled.err());
        } else {
            compiled.unwrap_or_else(|e| panic!("{:?} {op:?} {:?}: {e}", if swap { &bshape } else { &out }, if swap { &out } else { &bshape }));
            check(&g, seed, 4 * 1024, 1e-5);
        }
    }

    #[test]
    fn gemm_any_shape(m in 1usize..90, n in 1usize..90, k in 1usize..200, int8 in any::<bool>(), tb in any::<bool>(),
                      sram_kib in 4u32..16, seed in any::<u64>()) {
        let mut g = Graph::new();
        let wshape = if tb { [n, k] } else { [k, n] };
        let (a, b, bias, oq) = if int8 {
            let a = g.input("a", TensorType::quantized(&[m, k], Quant::PerTensor { scale: 0.05, zero_point: 0 })).unwrap();
            let b = g.input("b", TensorType::quantized(&wshape, Quant::PerTensor { scale: 0.01, zero_point: 0 })).unwrap();
            let bias = g.input("bias", TensorType::new(DType::I32, &[n])).unwrap();
            (a, b, bias, Some(Quant::PerTensor { scale: 0.3, zero_point: 5 }))
        } else {
            let a = g.input("a", TensorType::new(DType::F32, &[m, k])).unwrap();
            let b = g.input("b", TensorType::new(DType::F32, &wshape)).unwrap();
            let bias = g.input("bias", TensorType::new(DType::F32, &[n])).unwrap();
            (a, b, bias, None)
        };
        let c = g.add("c", Op::Gemm { a, b, bias: Some(bias), trans_a: false, trans_b: tb }, oq).unwrap();
        let r = g.add("r", Op::Unary { op: UnaryOp::Relu, x: c }, None).unwrap();
        g.output(r).unwrap();
        check(&g, seed, sram_kib * 1024, 1e-4);
    }

    #[test]
    fn conv2d_any_shape(c in 1usize..6, h in 3usize..14, w in 3usize..14, kpg in 1usize..5, groups in 1usize..3,
                        r in 1usize..4, stride in 1usize..3, pad in 0usize..2, int8 in any::<bool>(), seed in any::<u64>()) {
        let c = c * groups;
        let k = kpg * groups;
        let mut g = Graph::new();
        let (x, wt, oq) = if int8 {
            (TensorType::quantized(&[1, c, h, w], Quant::PerTensor { scale: 0.05, zero_point: 0 }),
             TensorType::quantized(&[k, c / groups, r, r], Quant::PerTensor { scale: 0.02, zero_point: 0 }),
             Some(Quant::PerTensor { scale: 0.2, zero_point: -1 }))
        } else {
            (TensorType::new(DType::F32, &[1, c, h, w]), TensorType::new(DType::F32, &[k, c / groups, r, r]), None)
        };
        let x = g.input("x", x).unwrap();
        let wv = g.input("w", wt).unwrap();
        let win = Window { stride: [stride, stride], padding: [pad, pad], dilation: [1, 1] };
        let y = g.add("y", Op::Conv2d { input: x, weight: wv, bias: None, window: win, groups }, oq).unwrap();
        g.output(y).unwrap();
        check(&g, seed, 8 * 1024, 1e-4);
    }

    /// int8 conv2d with constant weights (the direct convolution) and
    /// random zero points on input, weights and result, per-channel or
    /// per-tensor weights, groups and depthwise, a fused relu, at 4 to
    /// 64 KiB of SRAM: equal to the reference and within the independent
    /// int8 reference's bounds.
    #[test]
    fn int8_direct_conv_any_zero_points(c in 1usize..6, h in 3usize..14, w in 3usize..14, kpg in 1usize..5,
                                        groups in 1usize..4, depthwise in any::<bool>(), r in 1usize..4,
                                        stride in 1usize..3, pad in 0usize..3, dil in 1usize..3,
                                        zx in any::<i8>(), zw in any::<i8>(), zy in any::<i8>(),
                                        per_channel in any::<bool>(), relu in any::<bool>(),
                                        sram_kib in 4u32..64, seed in any::<u64>()) {
        let (c, k) = if depthwise { (c * 4, c * 4) } else { (c * groups, kpg * groups) };
        let groups = if depthwise { c } else { groups };
        let cg = c / groups;
        prop_assume!(pad < r && (r - 1) * dil < h + 2 * pad && (r - 1) * dil < w + 2 * pad);
        let mut g = Graph::new();
        let x = g.input("x", TensorType::quantized(&[1, c, h, w], Quant::PerTensor { scale: 0.05, zero_point: zx })).unwrap();
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let n = k * cg * r * r;
        let wv: Vec<i8> = (0..n).map(|_| (next() >> 56) as u8 as i8).collect();
        let scales: Vec<f32> = (0..k).map(|i| 0.01 + 0.002 * i as f32).collect();
        let wq = if per_channel {
            Quant::per_channel(scales, 0)
        } else {
            Quant::PerTensor { scale: 0.015, zero_point: zw }
        };
        let wt = g.constant("w", TensorType::quantized(&[k, cg, r, r], wq), npu::reference::TensorData::I8(wv)).unwrap();
        let bias: Vec<i32> = (0..k).map(|_| (next() % 4001) as i32 - 2000).collect();
        let b = g.constant("b", TensorType::new(DType::I32, &[k]), npu::reference::TensorData::I32(bias)).unwrap();
        let win = Window { stride: [stride, stride], padding: [pad, pad], dilation: [dil, dil] };
        let scale_y = 0.05 * (cg * r * r) as f32 / 8.0;
        let oq = Some(Quant::PerTensor { scale: scale_y, zero_point: zy });
        let mut y = g.add("y", Op::Conv2d { input: x, weight: wt, bias: Some(b), window: win, groups }, oq).unwrap();
        if relu {
            y = g.add("act", Op::Unary { op: UnaryOp::Relu, x: y }, None).unwrap();
        }
        g.output(y).unwrap();
        check(&g, seed, sram_kib * 1024, 1e-4);
    }
}
