//! int8 pooling imported natively (one int8 IR pool, lowered to one
//! POOL_I8 per tile) and compared with onnxruntime, every element equal:
//! the QDQ forms (DequantizeLinear -> MaxPool / AveragePool /
//! GlobalAveragePool / GlobalMaxPool -> QuantizeLinear) and
//! com.microsoft's QLinearAveragePool and QLinearGlobalAveragePool, with
//! padding, count_include_pad, ceil_mode, uint8 and equal or different
//! input and output quantization; plus the instructions the QDQ form took
//! through f32 before.

mod common;

use common::{run_against_ort, Case};
use npu::ir::Op;
use npu_onnx::{import, Options};
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

const INT8: i32 = 3;
const UINT8: i32 = 2;

fn scale(name: &str, v: f32) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 1;
    t.raw_data = v.to_le_bytes().to_vec();
    t
}

/// A zero point of type `elem` (int8 or uint8).
fn zero_point(name: &str, elem: i32, v: i32) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = elem;
    t.raw_data = vec![v as u8];
    t
}

fn node(op: &str, ins: &[&str], out: &str, ints: &[(&str, &[i64])]) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{out}");
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = vec![out.to_string()];
    if op.starts_with("QLinear") {
        n.domain = "com.microsoft".into();
    }
    for (k, v) in ints {
        let mut a = AttributeProto::new();
        a.name = k.to_string();
        use onnx_protobuf::attribute_proto::AttributeType as T;
        if k.ends_with('s') || k.ends_with("shape") {
            a.ints = v.to_vec();
            a.type_ = T::INTS.into();
        } else {
            a.i = v[0];
            a.type_ = T::INT.into();
        }
        n.attribute.push(a);
    }
    n
}

fn value(name: &str, dims: &[i64], elem: i32) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(dimension::Value::DimValue(d));
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = elem;
    tt.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(ty).into();
    v
}

/// One pooling node on an `elem` (int8 or uint8) input `x` of shape `dims`
/// with input quantization (`sx`, `zx`) and output (`sy`, `zy`): in QDQ
/// form for an ONNX op (`op`), or the com.microsoft QLinear op itself.
#[allow(clippy::too_many_arguments)]
fn pool_model(
    op: &str,
    dims: &[i64],
    elem: i32,
    (sx, zx): (f32, i32),
    (sy, zy): (f32, i32),
    attrs: &[(&str, &[i64])],
    out_dims: &[i64],
) -> ModelProto {
    let inits = vec![
        scale("sx", sx),
        zero_point("zx", elem, zx),
        scale("sy", sy),
        zero_point("zy", elem, zy),
    ];
    let nodes = if op.starts_with("QLinear") {
        vec![node(op, &["x", "sx", "zx", "sy", "zy"], "y", attrs)]
    } else {
        vec![
            node("DequantizeLinear", &["x", "sx", "zx"], "xr", &[]),
            node(op, &["xr"], "yr", attrs),
            node("QuantizeLinear", &["yr", "sy", "zy"], "y", &[]),
        ]
    };
    let mut g = GraphProto::new();
    g.name = "pool".into();
    g.node = nodes;
    g.initializer = inits;
    g.input = vec![value("x", dims, elem)];
    g.output = vec![value("y", out_dims, elem)];
    let mut m = ModelProto::new();
    m.ir_version = 8;
    for (domain, version) in [("", 13), ("com.microsoft", 1)] {
        let mut o = OperatorSetIdProto::new();
        o.domain = domain.into();
        o.version = version;
        m.opset_import.push(o);
    }
    m.graph = Some(g).into();
    m
}

/// The imported graph's int8 pools and dequantizations (after dead-code
/// elimination: the QDQ form's DequantizeLinear is left unread).
fn int8_pools_and_dequantizes(bytes: &[u8]) -> (usize, usize) {
    let g = import(bytes, None, &Options::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .graph;
    let g = npu::ir::passes::optimize(&g).unwrap();
    let pools = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Pool { .. }) && n.ty.dtype == npu::DType::I8)
        .count();
    let deq = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Dequantize { .. }))
        .count();
    (pools, deq)
}

fn matches_ort(tag: &'static str, m: &ModelProto) -> String {
    let d = std::env::temp_dir().join(format!("npu-onnx-i8pool-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("model.onnx");
    let bytes = m.write_to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: tag,
        shapes: &[],
        atol: 0.0,
        rtol: 0.0,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "i8pool");
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(
        code, 0,
        "{tag}: the NPU disagrees with onnxruntime:\n{report}"
    );
    report
}

type PoolCase = (
    &'static str,
    &'static str,
    &'static [i64],
    i32,
    (f32, i32),
    (f32, i32),
    &'static [(&'static str, &'static [i64])],
    &'static [i64],
);

/// Every case imports as one int8 pool (no dequantization left) and its
/// outputs equal onnxruntime's. The same scale in and out with 2x2 and
/// 3x3 windows makes many exact ties (sums of 2 mod 4), where only
/// onnxruntime's own f32 arithmetic gives its answer.
#[test]
fn int8_pools_match_onnxruntime_bit_for_bit() {
    let same = (0.05f32, -4);
    let cases: &[PoolCase] = &[
        // Max: the same quantization (no requantization), 3x3/2 pad 1.
        (
            "max_same",
            "MaxPool",
            &[1, 8, 15, 17],
            INT8,
            same,
            same,
            &[
                ("kernel_shape", &[3, 3]),
                ("strides", &[2, 2]),
                ("pads", &[1, 1, 1, 1]),
            ],
            &[1, 8, 8, 9],
        ),
        // Max requantized, ceil_mode on odd sizes (an int8 pad of -128).
        (
            "max_requant_ceil",
            "MaxPool",
            &[1, 6, 7, 9],
            INT8,
            same,
            (0.037, 6),
            &[
                ("kernel_shape", &[2, 2]),
                ("strides", &[2, 2]),
                ("ceil_mode", &[1]),
            ],
            &[1, 6, 4, 5],
        ),
        // Average, f32 sums: ties everywhere.
        (
            "avg_2x2_same",
            "AveragePool",
            &[1, 8, 14, 14],
            INT8,
            same,
            same,
            &[("kernel_shape", &[2, 2]), ("strides", &[2, 2])],
            &[1, 8, 7, 7],
        ),
        (
            "avg_pad_excluded",
            "AveragePool",
            &[1, 5, 9, 11],
            INT8,
            (0.0237, -5),
            (0.031, 7),
            &[
                ("kernel_shape", &[3, 3]),
                ("strides", &[1, 1]),
                ("pads", &[1, 1, 1, 1]),
            ],
            &[1, 5, 9, 11],
        ),
        (
            "avg_pad_included",
            "AveragePool",
            &[1, 4, 10, 10],
            INT8,
            same,
            same,
            &[
                ("kernel_shape", &[3, 3]),
                ("strides", &[2, 2]),
                ("pads", &[1, 1, 1, 1]),
                ("count_include_pad", &[1]),
            ],
            &[1, 4, 5, 5],
        ),
        // Global: integer sums.
        (
            "gap",
            "GlobalAveragePool",
            &[1, 64, 7, 7],
            INT8,
            same,
            (0.02, -3),
            &[],
            &[1, 64, 1, 1],
        ),
        (
            "gmp",
            "GlobalMaxPool",
            &[1, 16, 5, 6],
            INT8,
            same,
            (0.1, 1),
            &[],
            &[1, 16, 1, 1],
        ),
        // Scales where f32(s_x / f32(s_y * n)) differs from
        // f32(f32(s_x / s_y) / n): onnxruntime's order decides.
        (
            "gap_scale_order",
            "GlobalAveragePool",
            &[1, 256, 6, 6],
            INT8,
            (0.03, 0),
            (0.03, 0),
            &[],
            &[1, 256, 1, 1],
        ),
        (
            "qlinear_gap_scale_order",
            "QLinearGlobalAveragePool",
            &[1, 256, 6, 6],
            INT8,
            (0.25, 2),
            (0.05, -1),
            &[],
            &[1, 256, 1, 1],
        ),
        // The com.microsoft ops; a whole-plane window runs as global.
        (
            "qlinear_avg",
            "QLinearAveragePool",
            &[1, 8, 12, 10],
            INT8,
            (0.05, 3),
            (0.05, 3),
            &[("kernel_shape", &[2, 2]), ("strides", &[1, 1])],
            &[1, 8, 11, 9],
        ),
        (
            "qlinear_avg_plane",
            "QLinearAveragePool",
            &[1, 32, 4, 4],
            INT8,
            same,
            same,
            &[("kernel_shape", &[4, 4])],
            &[1, 32, 1, 1],
        ),
        (
            "qlinear_gap",
            "QLinearGlobalAveragePool",
            &[1, 128, 2, 2],
            INT8,
            same,
            (0.01, 0),
            &[],
            &[1, 128, 1, 1],
        ),
        // uint8: max and the integer average are exact under the shift.
        (
            "u8_max",
            "MaxPool",
            &[1, 4, 8, 8],
            UINT8,
            (0.05, 128),
            (0.06, 100),
            &[("kernel_shape", &[2, 2]), ("strides", &[2, 2])],
            &[1, 4, 4, 4],
        ),
        (
            "u8_gap",
            "QLinearGlobalAveragePool",
            &[1, 64, 4, 4],
            UINT8,
            (0.05, 131),
            (0.05, 131),
            &[],
            &[1, 64, 1, 1],
        ),
    ];
    for &(tag, op, dims, elem, qx, qy, attrs, out) in cases {
        let m = pool_model(op, dims, elem, qx, qy, attrs, out);
        let bytes = m.write_to_bytes().unwrap();
        assert_eq!(int8_pools_and_dequantizes(&bytes), (1, 0), "{tag}");
        matches_ort(tag, &m);
    }
}

/// A uint8 average over windows smaller than the plane: onnxruntime adds
/// the uint8 zero point in f32 before rounding, which the int8 pool (zero
/// point - 128) cannot reproduce. QLinearAveragePool is refused with the
/// reason; the QDQ form stays Dequantize -> f32 pool -> Quantize.
#[test]
fn uint8_windowed_averages_are_not_int8_pools() {
    let attrs: &[(&str, &[i64])] = &[("kernel_shape", &[2, 2]), ("strides", &[2, 2])];
    let m = pool_model(
        "QLinearAveragePool",
        &[1, 2, 4, 4],
        UINT8,
        (0.05, 131),
        (0.05, 131),
        attrs,
        &[1, 2, 2, 2],
    );
    let err = import(&m.write_to_bytes().unwrap(), None, &Options::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("uint8 average"), "{err}");
    let m = pool_model(
        "AveragePool",
        &[1, 2, 4, 4],
        UINT8,
        (0.05, 131),
        (0.05, 131),
        attrs,
        &[1, 2, 2, 2],
    );
    assert_eq!(
        int8_pools_and_dequantizes(&m.write_to_bytes().unwrap()),
        (0, 1)
    );
}

/// The QDQ pools before this importer mapped them natively (Dequantize ->
/// f32 pool -> Quantize, three ops, f32 tensors in memory) against now,
/// in instructions of the compiled program.
#[test]
fn native_int8_pools_take_fewer_instructions() {
    let same = (0.05f32, -4);
    let cases: &[PoolCase] = &[
        (
            "max",
            "MaxPool",
            &[1, 64, 56, 56],
            INT8,
            same,
            same,
            &[
                ("kernel_shape", &[3, 3]),
                ("strides", &[2, 2]),
                ("pads", &[1, 1, 1, 1]),
            ],
            &[1, 64, 28, 28],
        ),
        (
            "gap",
            "GlobalAveragePool",
            &[1, 512, 7, 7],
            INT8,
            same,
            (0.02, -3),
            &[],
            &[1, 512, 1, 1],
        ),
    ];
    for &(tag, op, dims, elem, qx, qy, attrs, out) in cases {
        let m = pool_model(op, dims, elem, qx, qy, attrs, out);
        let g = import(&m.write_to_bytes().unwrap(), None, &Options::default())
            .unwrap()
            .graph;
        // The same pool through f32, as the importer built it before.
        let mut old = npu::Graph::new();
        let mut x = None;
        let mut pool = None;
        for n in g.nodes() {
            match &n.op {
                Op::Input => x = Some(old.input(&n.name, n.ty.clone()).unwrap()),
                Op::Pool {
                    kind,
                    kernel,
                    window,
                    ..
                } => {
                    let r = old
                        .add("xr", Op::Dequantize { x: x.unwrap() }, None)
                        .unwrap();
                    let op = Op::Pool {
                        kind: *kind,
                        x: r,
                        kernel: *kernel,
                        window: *window,
                    };
                    let p = old.add("yr", op, None).unwrap();
                    pool = Some(
                        old.add("y", Op::Quantize { x: p }, n.ty.quant.clone())
                            .unwrap(),
                    );
                }
                _ => {}
            }
        }
        old.output(pool.unwrap()).unwrap();
        let count = |g: &npu::Graph| {
            let s = npu::runtime::Session::model(256 * 1024);
            let k = s
                .compile(g.clone())
                .unwrap_or_else(|e| panic!("{tag}: {e}"));
            let p = &k.program;
            let pools = p
                .insns()
                .iter()
                .filter(|i| i.to_string().starts_with("pool"))
                .count();
            (p.insns().len(), pools)
        };
        let (before, after) = (count(&old), count(&g));
        println!("{tag}: {before:?} -> {after:?} (instructions, pools)");
        assert!(after.0 < before.0, "{tag}: {before:?} -> {after:?}");
    }
}

/// Two QLinear pools reading one tensor as two different quantizations:
/// the IR keeps one per value, so the second is refused, saying what the
/// tensor is and what the node declared.
#[test]
fn qlinear_pools_must_read_their_input_as_it_is_quantized() {
    let mut m = pool_model(
        "QLinearGlobalAveragePool",
        &[1, 4, 4, 4],
        INT8,
        (0.05, 0),
        (0.05, 0),
        &[],
        &[1, 4, 1, 1],
    );
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(scale("sx2", 0.5));
    g.node.push(node(
        "QLinearGlobalAveragePool",
        &["x", "sx2", "zx", "sy", "zy"],
        "y2",
        &[],
    ));
    g.output.push(value("y2", &[1, 4, 1, 1], INT8));
    let err = import(&m.write_to_bytes().unwrap(), None, &Options::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("this node reads it as scale 0.5 zp 0"),
        "{err}"
    );
}
