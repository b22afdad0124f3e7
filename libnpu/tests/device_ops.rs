//! Every op and dtype, compiled and run on the in-process device model,
//! against the CPU reference. Small SRAM sizes force real tiling.

mod common;
use common::check;
use libnpu::ir::{Graph, Op, Quant, TensorType, UnaryOp};
use libnpu::DType;

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape)
}

#[test]
fn gemm_f32_tiled_with_bias_relu() {
    for (seed, (m, n, k)) in [(1u64, (5, 7, 3)), (2, (67, 45, 130)), (3, (1, 200, 33))].into_iter() {
        let mut g = Graph::new();
        let a = g.input("a", f32t(&[m, k])).unwrap();
        let b = g.input("b", f32t(&[k, n])).unwrap();
        let bias = g.input("bias", f32t(&[n])).unwrap();
        let c = g.add("c", Op::Gemm { a, b, bias: Some(bias), trans_a: false, trans_b: false }, None).unwrap();
        let r = g.add("r", Op::Unary { op: UnaryOp::Relu, x: c }, None).unwrap();
        g.output(r).unwrap();
        check(&g, seed, 8 * 1024, 1e-4);
    }
}
