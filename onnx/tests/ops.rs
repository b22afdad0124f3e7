//! Hand-built ONNX models, one mapping each, run on the device model and
//! compared with onnxruntime running the same file; and the models the
//! importer must refuse, with the node and the reason.

mod common;

use common::{run_against_ort, run_against_ort_with, Case};
use npu_onnx::{import, ImportError, Options};
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::path::PathBuf;

fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = 1;
    t.raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    t
}

fn int8_scalar(name: &str, v: i8) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 3;
    t.raw_data = vec![v as u8];
    t
}

/// Deterministic weights in [-0.5, 0.5).
fn weights(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

enum A {
    I(i64),
    F(f32),
    Is(&'static [i64]),
    S(&'static str),
}

fn node(op: &str, name: &str, ins: &[&str], outs: &[&str], attrs: &[(&str, A)]) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = outs.iter().map(|s| s.to_string()).collect();
    for (k, v) in attrs {
        let mut a = AttributeProto::new();
        a.name = k.to_string();
        use onnx_protobuf::attribute_proto::AttributeType as T;
        match v {
            A::I(i) => {
                a.i = *i;
                a.type_ = T::INT.into();
            }
            A::F(f) => {
                a.f = *f;
                a.type_ = T::FLOAT.into();
            }
            A::Is(v) => {
                a.ints = v.to_vec();
                a.type_ = T::INTS.into();
            }
            A::S(s) => {
                a.s = s.as_bytes().to_vec();
                a.type_ = T::STRING.into();
            }
        }
        n.attribute.push(a);
    }
    n
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(dimension::Value::DimValue(d));
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = 1;
    tt.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(ty).into();
    v
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: &[(&str, &[i64])],
    outputs: &[(&str, &[i64])],
    opset: i64,
) -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "test".into();
    g.node = nodes;
    g.initializer = inits;
    g.input = inputs.iter().map(|(n, d)| value(n, d)).collect();
    g.output = outputs.iter().map(|(n, d)| value(n, d)).collect();
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = opset;
    m.opset_import.push(o);
    m.graph = Some(g).into();
    m
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("npu-onnx-ops-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write `m` to a file and compare the NPU with onnxruntime on it.
fn matches_ort(tag: &'static str, m: &ModelProto, atol: f32) {
    let d = tmpdir(tag);
    let path = d.join("model.onnx");
    let bytes = m.write_to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: tag,
        shapes: &[],
        atol,
        rtol: 1e-4,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "ops");
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(
        code, 0,
        "{tag}: the NPU disagrees with onnxruntime:\n{report}"
    );
}

/// Conv + batch norm (folded) + hard-swish + SE-style channel scale with
/// hard-sigmoid + leaky relu + residual add + average pool with padding +
/// global max pool + flatten + Gemm (alpha, beta, transB) + opset-11
/// softmax; the shape arithmetic of a PyTorch-style flatten (Shape, Gather,
/// Unsqueeze, Concat, Reshape) is folded on the host.
#[test]
fn op_zoo_matches_onnxruntime() {
    let (c, k) = (3i64, 8i64);
    let inits = vec![
        tensor("w1", &[k, c, 3, 3], &weights(72 * 3, 1)),
        tensor("b1", &[k], &weights(8, 2)),
        tensor(
            "bn_s",
            &[k],
            &weights(8, 3).iter().map(|x| x + 1.0).collect::<Vec<_>>(),
        ),
        tensor("bn_b", &[k], &weights(8, 4)),
        tensor("bn_m", &[k], &weights(8, 5)),
        tensor(
            "bn_v",
            &[k],
            &weights(8, 6).iter().map(|x| x + 0.6).collect::<Vec<_>>(),
        ),
        tensor("wd", &[k, 1, 3, 3], &weights(72, 7)),
        tensor("wg", &[5, k], &weights(40, 8)),
        tensor("bg", &[5], &weights(5, 9)),
        tensor("six", &[], &[6.0]),
        tensor("zero", &[], &[0.0]),
    ];
    let mut idx0 = TensorProto::new();
    idx0.name = "idx0".into();
    idx0.data_type = 7;
    idx0.int64_data = vec![0];
    let mut minus1 = TensorProto::new();
    minus1.name = "minus1".into();
    minus1.data_type = 7;
    minus1.dims = vec![1];
    minus1.int64_data = vec![-1];
    let mut axes0 = minus1.clone();
    axes0.name = "axes0".into();
    axes0.int64_data = vec![0];
    let mut inits = inits;
    inits.push(idx0);
    inits.push(minus1);
    inits.push(axes0);
    let nodes = vec![
        node(
            "Conv",
            "conv1",
            &["x", "w1", "b1"],
            &["c1"],
            &[("pads", A::Is(&[1, 1, 1, 1])), ("strides", A::Is(&[2, 2]))],
        ),
        node(
            "BatchNormalization",
            "bn1",
            &["c1", "bn_s", "bn_b", "bn_m", "bn_v"],
            &["n1"],
            &[("epsilon", A::F(1e-3))],
        ),
        node("HardSwish", "hs1", &["n1"], &["h1"], &[]),
        node(
            "Conv",
            "dw",
            &["h1", "wd"],
            &["d1"],
            &[("group", A::I(k)), ("auto_pad", A::S("SAME_UPPER"))],
        ),
        node("GlobalAveragePool", "gap", &["d1"], &["g1"], &[]),
        node(
            "HardSigmoid",
            "hsig",
            &["g1"],
            &["s1"],
            &[("alpha", A::F(0.2)), ("beta", A::F(0.5))],
        ),
        node("Mul", "se", &["d1", "s1"], &["e1"], &[]),
        node(
            "LeakyRelu",
            "lrelu",
            &["e1"],
            &["l1"],
            &[("alpha", A::F(0.1))],
        ),
        node("Add", "res", &["l1", "h1"], &["r1"], &[]),
        node("Div", "div6", &["r1", "six"], &["q1"], &[]),
        node("Clip", "relu6", &["q1", "zero", "six"], &["k1"], &[]),
        node(
            "AveragePool",
            "avg",
            &["k1"],
            &["a1"],
            &[
                ("kernel_shape", A::Is(&[3, 3])),
                ("pads", A::Is(&[1, 1, 1, 1])),
                ("strides", A::Is(&[1, 1])),
            ],
        ),
        node("GlobalMaxPool", "gmp", &["a1"], &["m1"], &[]),
        node("Shape", "shape", &["m1"], &["sh"], &[]),
        node(
            "Gather",
            "batch",
            &["sh", "idx0"],
            &["n"],
            &[("axis", A::I(0))],
        ),
        node("Unsqueeze", "unsq", &["n", "axes0"], &["n1d"], &[]),
        node(
            "Concat",
            "cat",
            &["n1d", "minus1"],
            &["newshape"],
            &[("axis", A::I(0))],
        ),
        node("Reshape", "flat", &["m1", "newshape"], &["f1"], &[]),
        node(
            "Gemm",
            "fc",
            &["f1", "wg", "bg"],
            &["y0"],
            &[
                ("transB", A::I(1)),
                ("alpha", A::F(0.5)),
                ("beta", A::F(2.0)),
            ],
        ),
        node("Softmax", "sm", &["y0"], &["y"], &[("axis", A::I(1))]),
        node("Sigmoid", "sig", &["y0"], &["z"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 12, 10])],
        &[("y", &[1, 5]), ("z", &[1, 5])],
        14,
    );
    matches_ort("zoo", &m, 1e-5);
}

/// Older opsets: Clip bounds as attributes (opset 10), Softmax over the
/// input flattened at `axis` (before opset 13), Unsqueeze axes as an
/// attribute, a constant Slice (attributes before opset 10... here 10's
/// inputs) feeding a Reshape.
#[test]
fn opset_10_semantics_match_onnxruntime() {
    let mut shape = TensorProto::new();
    shape.name = "shape".into();
    shape.data_type = 7;
    shape.dims = vec![5];
    shape.int64_data = vec![9, 1, 2, 3, 4];
    let i64s = |name: &str, v: &[i64]| {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.data_type = 7;
        t.dims = vec![v.len() as i64];
        t.int64_data = v.to_vec();
        t
    };
    let inits = vec![shape, i64s("st", &[1]), i64s("en", &[5])];
    let nodes = vec![
        node(
            "Clip",
            "clip",
            &["x"],
            &["c"],
            &[("min", A::F(-0.25)), ("max", A::F(0.5))],
        ),
        node("Slice", "sl", &["shape", "st", "en"], &["s4"], &[]),
        node("Reshape", "rs", &["c", "s4"], &["r"], &[]),
        node("Softmax", "sm", &["r"], &["y"], &[("axis", A::I(1))]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[2, 12])],
        &[("y", &[1, 2, 3, 4])],
        10,
    );
    matches_ort("opset10", &m, 1e-6);
}

/// MatMul with a 3-D activation and Relu; Transpose of a size-1 axis (a
/// reshape); opset-13 Softmax on the last axis; Tanh, Exp, Sub, Max.
#[test]
fn matmul_and_elementwise_match_onnxruntime() {
    let inits = vec![
        tensor("w", &[6, 4], &weights(24, 11)),
        tensor("b", &[4], &weights(4, 12)),
        tensor("half", &[1], &[0.5]),
    ];
    let nodes = vec![
        node("MatMul", "mm", &["x", "w"], &["m"], &[]),
        node("Add", "bias", &["m", "b"], &["mb"], &[]),
        node("Tanh", "tanh", &["mb"], &["t"], &[]),
        node("Exp", "exp", &["t"], &["e"], &[]),
        node("Sub", "sub", &["e", "half"], &["s"], &[]),
        node("Max", "max", &["s", "t"], &["mx"], &[]),
        node(
            "Transpose",
            "tr",
            &["mx"],
            &["tt"],
            &[("perm", A::Is(&[1, 0, 2]))],
        ),
        node("Softmax", "sm", &["tt"], &["y"], &[]),
    ];
    let m = model(nodes, inits, &[("x", &[1, 3, 6])], &[("y", &[3, 1, 4])], 13);
    matches_ort("matmul", &m, 1e-5);
}

/// QuantizeLinear / DequantizeLinear with an int8 zero point: the round
/// trip through int8 on the NPU, and a QDQ conv whose constant int8 weight
/// is dequantized at import.
#[test]
fn quantize_dequantize_match_onnxruntime() {
    let qw: Vec<u8> = weights(4 * 2 * 9, 21)
        .iter()
        .map(|x| ((x * 200.0) as i8) as u8)
        .collect();
    let mut wq = TensorProto::new();
    wq.name = "wq".into();
    wq.dims = vec![4, 2, 3, 3];
    wq.data_type = 3;
    wq.raw_data = qw;
    let inits = vec![
        tensor("sx", &[], &[0.02]),
        int8_scalar("zx", -3),
        wq,
        tensor("sw", &[], &[0.004]),
        int8_scalar("zw", 0),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "sx", "zx"], &["xq"], &[]),
        node("DequantizeLinear", "dq", &["xq", "sx", "zx"], &["xd"], &[]),
        node("DequantizeLinear", "dqw", &["wq", "sw", "zw"], &["wd"], &[]),
        node(
            "Conv",
            "conv",
            &["xd", "wd"],
            &["y"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 2, 5, 5])],
        &[("y", &[1, 4, 5, 5])],
        13,
    );
    matches_ort("qdq", &m, 1e-5);
}

/// A conv whose weight lives in an external data file beside the model.
#[test]
fn external_data_loads() {
    let d = tmpdir("ext");
    let w = weights(3 * 2 * 9, 31);
    let mut bytes = vec![0xAAu8; 16]; // the tensor starts at an offset
    bytes.extend(w.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(d.join("weights.bin"), &bytes).unwrap();
    let mut wt = TensorProto::new();
    wt.name = "w".into();
    wt.dims = vec![3, 2, 3, 3];
    wt.data_type = 1;
    wt.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    for (k, v) in [
        ("location", "weights.bin"),
        ("offset", "16"),
        ("length", "216"),
    ] {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v.into();
        wt.external_data.push(e);
    }
    let nodes = vec![
        node("Conv", "conv", &["x", "w"], &["c"], &[]),
        node("Relu", "relu", &["c"], &["y"], &[]),
    ];
    let m = model(
        nodes,
        vec![wt.clone()],
        &[("x", &[1, 2, 6, 6])],
        &[("y", &[1, 3, 4, 4])],
        13,
    );
    let path = d.join("model.onnx");
    let mb = m.write_to_bytes().unwrap();
    std::fs::write(&path, &mb).unwrap();
    let case = Case {
        file: "external",
        shapes: &[],
        atol: 1e-5,
        rtol: 1e-4,
    };
    let (code, report) = run_against_ort(&case, &mb, &d, &path, "ext");
    assert_eq!(code, 0, "{report}");
    // Without a directory, or pointing outside it, it is refused.
    let e = import(&mb, None, &Options::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("external data needs the model's directory"),
        "{e}"
    );
    wt.external_data[0].value = "../weights.bin".into();
    let m = model(
        vec![node("Conv", "conv", &["x", "w"], &["y"], &[])],
        vec![wt],
        &[("x", &[1, 2, 6, 6])],
        &[("y", &[1, 3, 4, 4])],
        13,
    );
    let e = import(&m.write_to_bytes().unwrap(), Some(&d), &Options::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("must be a relative path inside the model's directory"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn refused(m: &ModelProto) -> (String, String, String) {
    match import(&m.write_to_bytes().unwrap(), None, &Options::default()) {
        Err(ImportError::Unsupported { node, op, why }) => (node, op, why),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn unsupported_nodes_are_named() {
    // Resize with cubic interpolation: no NPU form.
    let m = model(
        vec![node(
            "Resize",
            "upscale",
            &["x", "", "sc"],
            &["y"],
            &[("mode", A::S("cubic"))],
        )],
        vec![tensor("sc", &[4], &[1.0, 1.0, 2.0, 2.0])],
        &[("x", &[1, 2, 4, 4])],
        &[("y", &[1, 2, 8, 8])],
        13,
    );
    let (node_name, op, why) = refused(&m);
    assert_eq!((node_name.as_str(), op.as_str()), ("upscale", "Resize"));
    assert!(why.contains("only nearest and linear"), "{why}");
    // Average pooling over asymmetric padding, padding excluded.
    let m = model(
        vec![node(
            "AveragePool",
            "padded",
            &["x"],
            &["y"],
            &[
                ("kernel_shape", A::Is(&[2, 2])),
                ("pads", A::Is(&[0, 0, 1, 1])),
            ],
        )],
        vec![],
        &[("x", &[1, 2, 4, 4])],
        &[("y", &[1, 2, 4, 4])],
        13,
    );
    let (node_name, _, why) = refused(&m);
    assert_eq!(node_name, "padded");
    assert!(why.contains("asymmetric padding"), "{why}");
    // Wrap padding.
    let mut pads = TensorProto::new();
    pads.name = "pads".into();
    pads.data_type = 7;
    pads.dims = vec![8];
    pads.int64_data = vec![0, 0, 1, 1, 0, 0, 1, 1];
    let m = model(
        vec![node(
            "Pad",
            "mirror",
            &["x", "pads"],
            &["y"],
            &[("mode", A::S("wrap"))],
        )],
        vec![pads],
        &[("x", &[1, 2, 4, 4])],
        &[("y", &[1, 2, 6, 6])],
        13,
    );
    let (node_name, _, why) = refused(&m);
    assert_eq!(node_name, "mirror");
    assert!(why.contains("wrap does not"), "{why}");
    // uint8 quantization.
    let mut zp = TensorProto::new();
    zp.name = "zp".into();
    zp.data_type = 2;
    zp.raw_data = vec![128];
    let m = model(
        vec![node("QuantizeLinear", "q8", &["x", "s", "zp"], &["y"], &[])],
        vec![tensor("s", &[], &[0.1]), zp],
        &[("x", &[1, 4])],
        &[("y", &[1, 4])],
        13,
    );
    // A uint8 graph output: converted on the device, reported as u8.
    let imported = import(&m.write_to_bytes().unwrap(), None, &Options::default()).unwrap();
    assert_eq!(imported.outputs[0].ty.dtype, npu::DType::U8);
    // Integer arithmetic on int8 tensors (ONNX wraps; the IR's int8 ops
    // compute on real values): refused.
    let m = model(
        vec![
            node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], &[]),
            node("Add", "int_add", &["xq", "xq"], &["y"], &[]),
        ],
        vec![tensor("s", &[], &[0.1]), int8_scalar("z", 0)],
        &[("x", &[1, 4])],
        &[("y", &[1, 4])],
        13,
    );
    let (node_name, _, why) = refused(&m);
    assert_eq!(node_name, "int_add");
    assert!(why.contains("integer arithmetic"), "{why}");
    // A node of another domain.
    let mut n = node("Relu", "custom", &["x"], &["y"], &[]);
    n.domain = "com.microsoft".into();
    let m = model(vec![n], vec![], &[("x", &[1, 4])], &[("y", &[1, 4])], 13);
    assert!(refused(&m).2.contains("com.microsoft"));
}

#[test]
fn bad_files_are_errors() {
    assert!(matches!(
        import(b"not a model", None, &Options::default()),
        Err(ImportError::Decode(_))
    ));
    // An initializer whose dims claim more data than it holds.
    let mut t = tensor("w", &[1000, 1000], &[1.0]);
    t.name = "w".into();
    let m = model(
        vec![node("Add", "a", &["x", "w"], &["y"], &[])],
        vec![t],
        &[("x", &[1000, 1000])],
        &[("y", &[1000, 1000])],
        13,
    );
    let e = import(&m.write_to_bytes().unwrap(), None, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("tensor `w`"), "{e}");
    // Opset 6 is older than the importer reads.
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], &[])],
        vec![],
        &[("x", &[1, 4])],
        &[("y", &[1, 4])],
        6,
    );
    assert!(import(&m.write_to_bytes().unwrap(), None, &Options::default()).is_err());
}

fn int8_tensor(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = 3;
    t.raw_data = v.iter().map(|&x| x as u8).collect();
    t
}

/// QLinearConv (per-channel weight scales, int32 bias, padding, a second
/// depthwise one) and QLinearMatMul run as the IR's int8 conv2d and gemm.
/// onnxruntime requantizes in f32, the NPU in fixed point (REQUANT), so an
/// output may differ by one step of its scale: the tolerance is one step.
#[test]
fn qlinear_ops_match_onnxruntime() {
    let (c, k) = (3usize, 4usize);
    let wv: Vec<i8> = weights(k * c * 9, 41)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let wd: Vec<i8> = weights(k * 9, 42)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let mut bias = TensorProto::new();
    bias.name = "b".into();
    bias.dims = vec![k as i64];
    bias.data_type = 6;
    bias.raw_data = [-300i32, 120, 0, 999]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let inits = vec![
        tensor("sx", &[], &[0.02]),
        int8_scalar("zx", 0),
        int8_tensor("w", &[k as i64, c as i64, 3, 3], &wv),
        tensor("sw", &[k as i64], &[0.003, 0.004, 0.002, 0.005]),
        int8_tensor("zw", &[k as i64], &[0; 4]),
        bias,
        tensor("sy", &[], &[0.05]),
        int8_scalar("zy", 0),
        int8_tensor("wd", &[k as i64, 1, 3, 3], &wd),
        tensor("swd", &[], &[0.004]),
        int8_scalar("zwd", 0),
        tensor("sz", &[], &[0.03]),
        int8_scalar("zz", -7),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "sx", "zx"], &["xq"], &[]),
        node(
            "QLinearConv",
            "qconv",
            &["xq", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
            &["yq"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node(
            "QLinearConv",
            "qdw",
            &["yq", "sy", "zy", "wd", "swd", "zwd", "sz", "zz"],
            &["zq"],
            &[("group", A::I(k as i64)), ("strides", A::Is(&[2, 2]))],
        ),
        node("DequantizeLinear", "dq", &["zq", "sz", "zz"], &["y"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 9, 9])],
        &[("y", &[1, 4, 4, 4])],
        13,
    );
    let d = tmpdir("qlinear");
    let path = d.join("model.onnx");
    let bytes = m.write_to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let g = import(&bytes, None, &Options::default()).unwrap().graph;
    assert!(
        g.nodes()
            .iter()
            .any(|n| matches!(n.op, npu::ir::Op::Conv2d { .. }) && n.ty.dtype == npu::DType::I8),
        "the convs are int8 in the IR"
    );
    let case = Case {
        file: "qlinearconv",
        shapes: &[],
        atol: 0.03 * 1.01,
        rtol: 0.0,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "qlinear");
    assert_eq!(code, 0, "{report}");

    let wm: Vec<i8> = weights(6 * 5, 43)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let inits = vec![
        tensor("sx", &[], &[0.01]),
        int8_scalar("zx", 0),
        int8_tensor("w", &[6, 5], &wm),
        tensor("sw", &[], &[0.004]),
        int8_scalar("zw", 0),
        tensor("sy", &[], &[0.02]),
        int8_scalar("zy", 3),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "sx", "zx"], &["xq"], &[]),
        node(
            "QLinearMatMul",
            "qmm",
            &["xq", "sx", "zx", "w", "sw", "zw", "sy", "zy"],
            &["yq"],
            &[],
        ),
        node("DequantizeLinear", "dq", &["yq", "sy", "zy"], &["y"], &[]),
    ];
    let m = model(nodes, inits, &[("x", &[3, 6])], &[("y", &[3, 5])], 13);
    let bytes = m.write_to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: "qlinearmatmul",
        shapes: &[],
        atol: 0.02 * 1.01,
        rtol: 0.0,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "qlinear");
    assert_eq!(code, 0, "{report}");
    // Asymmetric activations and weights (per tensor): the IR's
    // zero-point corrections, against onnxruntime.
    let mut m = m;
    m.graph.as_mut().unwrap().initializer[1] = int8_scalar("zx", 5);
    m.graph.as_mut().unwrap().initializer[4] = int8_scalar("zw", -3);
    let bytes = m.write_to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "qlinear");
    assert_eq!(code, 0, "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Per-channel weight zero points other than 0, with asymmetric activation
/// zero points and padding: QLinearConv (axis 0), and the QDQ forms of Conv
/// (axis 0), MatMul (weights [K, N], axis 1) and Gemm with transB (weights
/// [N, K], axis 0), all mapped to the IR's int8 conv2d / gemm with the
/// zero-point corrections; against onnxruntime, every element equal. A QDQ
/// conv whose weights are per channel on axis 1 (input channels) runs in
/// f32 on the weight dequantized at import, within one output step.
#[test]
fn per_channel_weight_zero_points_match_onnxruntime() {
    let w: Vec<i8> = weights(4 * 3 * 9, 51)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let wm: Vec<i8> = weights(12 * 5, 52)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let zw = [0i8, 1, -128, 127];
    let zm = [3i8, -7, 0, 100, -50];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "sx", "zx"], &["xq"], &[]),
        node(
            "QLinearConv",
            "qconv",
            &["xq", "sx", "zx", "w", "sw", "zw", "sy", "zy"],
            &["yq"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node("DequantizeLinear", "dq", &["yq", "sy", "zy"], &["y"], &[]),
        // QDQ conv, per channel on axis 0.
        node("DequantizeLinear", "dqx", &["xq", "sx", "zx"], &["xd"], &[]),
        node(
            "DequantizeLinear",
            "dqw",
            &["w", "sw", "zw"],
            &["wd"],
            &[("axis", A::I(0))],
        ),
        node(
            "Conv",
            "conv",
            &["xd", "wd"],
            &["c"],
            &[("pads", A::Is(&[2, 1, 2, 1]))],
        ),
        node("QuantizeLinear", "qc", &["c", "sy", "zy"], &["cq"], &[]),
        node("DequantizeLinear", "dqc", &["cq", "sy", "zy"], &["cd"], &[]),
        // QDQ MatMul [4, 12] x [12, 5], per column (axis 1).
        node("Reshape", "rows", &["xq", "shape"], &["xr"], &[]),
        node(
            "DequantizeLinear",
            "dqr",
            &["xr", "sx", "zx"],
            &["xrd"],
            &[],
        ),
        node(
            "DequantizeLinear",
            "dqm",
            &["wm", "sm", "zm"],
            &["wmd"],
            &[("axis", A::I(1))],
        ),
        node("MatMul", "mm", &["xrd", "wmd"], &["mf"], &[]),
        node("QuantizeLinear", "qm", &["mf", "sy", "zy"], &["mq"], &[]),
        node("DequantizeLinear", "dqmo", &["mq", "sy", "zy"], &["m"], &[]),
        // QDQ Gemm with transB: weights [5, 12], per row (axis 0).
        node(
            "DequantizeLinear",
            "dqt",
            &["wt", "sm", "zm"],
            &["wtd"],
            &[("axis", A::I(0))],
        ),
        node(
            "Gemm",
            "gemm",
            &["xrd", "wtd"],
            &["gf"],
            &[("transB", A::I(1))],
        ),
        node("QuantizeLinear", "qg", &["gf", "sy", "zy"], &["gq"], &[]),
        node("DequantizeLinear", "dqg", &["gq", "sy", "zy"], &["g"], &[]),
    ];
    let wt: Vec<i8> = (0..5 * 12).map(|i| wm[(i % 12) * 5 + i / 12]).collect();
    let inits = vec![
        tensor("sx", &[], &[0.02]),
        int8_scalar("zx", -9),
        int8_tensor("w", &[4, 3, 3, 3], &w),
        tensor("sw", &[4], &[0.003, 0.004, 0.0025, 0.005]),
        int8_tensor("zw", &[4], &zw),
        tensor("sy", &[], &[0.05]),
        int8_scalar("zy", 6),
        int8_tensor("wm", &[12, 5], &wm),
        tensor("sm", &[5], &[0.004, 0.003, 0.005, 0.002, 0.0035]),
        int8_tensor("zm", &[5], &zm),
        int8_tensor("wt", &[5, 12], &wt),
        i64_init("shape", &[4, 12]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 4, 4])],
        &[
            ("y", &[1, 4, 4, 4]),
            ("cd", &[1, 4, 6, 4]),
            ("m", &[4, 5]),
            ("g", &[4, 5]),
        ],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    assert_eq!(int8_convs(&bytes), 2, "both convs run in int8");
    assert_eq!(int8_gemms(&bytes), 2, "the matmul and the gemm run in int8");
    matches_ort("per_channel_zp", &m, 1e-6);

    // Per channel on the input-channel axis: f32 on the dequantized weight.
    let wi: Vec<i8> = w[..2 * 3 * 9].to_vec();
    let m = model(
        vec![
            node("QuantizeLinear", "q", &["x", "sx", "zx"], &["xq"], &[]),
            node("DequantizeLinear", "dqx", &["xq", "sx", "zx"], &["xd"], &[]),
            node(
                "DequantizeLinear",
                "dqw",
                &["w", "sw", "zw"],
                &["wd"],
                &[("axis", A::I(1))],
            ),
            node(
                "Conv",
                "conv",
                &["xd", "wd"],
                &["c"],
                &[("pads", A::Is(&[1, 1, 1, 1]))],
            ),
            node("QuantizeLinear", "qc", &["c", "sy", "zy"], &["cq"], &[]),
            node("DequantizeLinear", "dqc", &["cq", "sy", "zy"], &["cd"], &[]),
        ],
        vec![
            tensor("sx", &[], &[0.02]),
            int8_scalar("zx", -9),
            int8_tensor("w", &[2, 3, 3, 3], &wi),
            tensor("sw", &[3], &[0.003, 0.004, 0.0025]),
            int8_tensor("zw", &[3], &[5, -3, 0]),
            tensor("sy", &[], &[0.05]),
            int8_scalar("zy", 6),
        ],
        &[("x", &[1, 3, 4, 4])],
        &[("cd", &[1, 2, 4, 4])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    assert_eq!(int8_convs(&bytes), 0);
    // onnxruntime fuses this QDQ conv into a QLinearConv and then refuses
    // the axis-1 scales, so its reference is the same model with the weight
    // dequantized here by ONNX's definition, (w - zw[c]) * sw[c] on axis 1.
    let (sw, zwi) = ([0.003f32, 0.004, 0.0025], [5i32, -3, 0]);
    let wf: Vec<f32> = wi
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let c = (i / 9) % 3;
            (q as i32 - zwi[c]) as f32 * sw[c]
        })
        .collect();
    let mut r = m.clone();
    let g = r.graph.as_mut().unwrap();
    g.node.retain(|n| n.name != "dqw");
    g.initializer
        .retain(|t| !matches!(t.name.as_str(), "w" | "sw" | "zw"));
    g.initializer.push(tensor("wd", &[2, 3, 3, 3], &wf));
    let d = tmpdir("per_channel_zp_axis1");
    let path = d.join("reference.onnx");
    std::fs::write(&path, r.write_to_bytes().unwrap()).unwrap();
    let case = Case {
        file: "per_channel_zp_axis1",
        shapes: &[],
        atol: 0.05 + 1e-6,
        rtol: 0.0,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "ops");
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(code, 0, "the NPU disagrees with onnxruntime:\n{report}");
}

/// Damaged files are errors, never panics: every model the tests fetch,
/// with bytes flipped at random places, and truncated.
#[test]
fn damaged_models_never_panic() {
    let path = common::model_path("rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let good = std::fs::read(&path).unwrap();
    let opts = Options {
        input_shapes: [("x".to_string(), vec![1, 3, 48, 192])]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..300 {
        let mut b = good.clone();
        if i % 10 == 9 {
            b.truncate(next() as usize % good.len());
        } else {
            for _ in 0..1 + next() % 4 {
                let at = next() as usize % b.len();
                b[at] ^= 1 << (next() % 8);
            }
        }
        match import(&b, None, &opts) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    // Most flips land in weights (still a valid model); some break it.
    assert!(ok > 0 && err > 0, "{ok} imported, {err} refused");
}

/// Flatten with a negative axis; a float Cast of a computed tensor; Gemm
/// with a C of [1, N] (a bias) and one of [M, 1] with M = N (not a bias:
/// it broadcasts along rows).
#[test]
fn flatten_cast_and_gemm_c_match_onnxruntime() {
    let inits = vec![
        tensor("w", &[4, 4], &weights(16, 51)),
        tensor("c_row", &[1, 4], &[0.5, -1.0, 2.0, 0.25]),
        tensor("c_col", &[4, 1], &[10.0, -10.0, 3.0, 0.0]),
    ];
    let nodes = vec![
        node("Flatten", "fl", &["x"], &["f"], &[("axis", A::I(-1))]),
        node("Cast", "cast", &["f"], &["fc"], &[("to", A::I(1))]),
        node("Gemm", "g1", &["fc", "w", "c_row"], &["y1"], &[]),
        node(
            "Gemm",
            "g2",
            &["y1", "w", "c_col"],
            &["y"],
            &[("transB", A::I(1))],
        ),
    ];
    let m = model(nodes, inits, &[("x", &[2, 2, 4])], &[("y", &[4, 4])], 13);
    matches_ort("flatten", &m, 1e-5);
}

fn int8_convs(bytes: &[u8]) -> usize {
    let g = import(bytes, None, &Options::default()).unwrap().graph;
    g.nodes()
        .iter()
        .filter(|n| matches!(n.op, npu::ir::Op::Conv2d { .. }) && n.ty.dtype == npu::DType::I8)
        .count()
}

fn int8_gemms(bytes: &[u8]) -> usize {
    let g = import(bytes, None, &Options::default()).unwrap().graph;
    g.nodes()
        .iter()
        .filter(|n| matches!(n.op, npu::ir::Op::Gemm { .. }) && n.ty.dtype == npu::DType::I8)
        .count()
}

/// MatMul (per-output-channel weights on axis 1) and Gemm (transB, weights
/// per channel on axis 0, an int32 bias) in QDQ form run as int8 gemms.
#[test]
fn qdq_matmul_and_gemm_run_in_int8_and_match_onnxruntime() {
    let (kd, n) = (8usize, 5usize);
    let w1: Vec<i8> = weights(kd * n, 71)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let w2: Vec<i8> = weights(n * 4, 72)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let sx = 0.02f32;
    let sw1 = [0.004f32, 0.003, 0.005, 0.002, 0.0045];
    let sy = 0.04f32;
    let sw2 = [0.003f32, 0.006, 0.002, 0.004];
    let mut b = TensorProto::new();
    b.name = "b".into();
    b.dims = vec![4];
    b.data_type = 6;
    b.raw_data = [50i32, -70, 0, 900]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let inits = vec![
        tensor("sx", &[], &[sx]),
        int8_scalar("z0", 0),
        int8_tensor("w1", &[kd as i64, n as i64], &w1),
        tensor("sw1", &[n as i64], &sw1),
        int8_tensor("zw1", &[n as i64], &[0; 5]),
        tensor("sy", &[], &[sy]),
        int8_tensor("w2", &[4, n as i64], &w2),
        tensor("sw2", &[4], &sw2),
        int8_tensor("zw2", &[4], &[0; 4]),
        b,
        tensor("sb", &[4], &sw2.iter().map(|s| s * sy).collect::<Vec<_>>()),
        tensor("sz", &[], &[0.05]),
        int8_scalar("zz", -1),
    ];
    let nodes = vec![
        node("QuantizeLinear", "qx", &["x", "sx", "z0"], &["xq"], &[]),
        node("DequantizeLinear", "dqx", &["xq", "sx", "z0"], &["xd"], &[]),
        node(
            "DequantizeLinear",
            "dqw1",
            &["w1", "sw1", "zw1"],
            &["w1d"],
            &[("axis", A::I(1))],
        ),
        node("MatMul", "mm", &["xd", "w1d"], &["m"], &[]),
        node("QuantizeLinear", "qm", &["m", "sy", "z0"], &["mq"], &[]),
        node("DequantizeLinear", "dqm", &["mq", "sy", "z0"], &["md"], &[]),
        node(
            "DequantizeLinear",
            "dqw2",
            &["w2", "sw2", "zw2"],
            &["w2d"],
            &[("axis", A::I(0))],
        ),
        node(
            "DequantizeLinear",
            "dqb",
            &["b", "sb"],
            &["bd"],
            &[("axis", A::I(0))],
        ),
        node(
            "Gemm",
            "fc",
            &["md", "w2d", "bd"],
            &["g"],
            &[("transB", A::I(1))],
        ),
        node("QuantizeLinear", "qg", &["g", "sz", "zz"], &["gq"], &[]),
        node("DequantizeLinear", "dqg", &["gq", "sz", "zz"], &["y"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[3, kd as i64])],
        &[("y", &[3, 4])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    assert_eq!(int8_gemms(&bytes), 2, "both are int8 gemms on the NPU");
    let d = tmpdir("qdq-gemm");
    let path = d.join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: "qdq-gemm",
        shapes: &[],
        atol: 0.05 * 1.01,
        rtol: 0.0,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "qdq");
    assert_eq!(code, 0, "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The QDQ form onnxruntime's quantizer writes (QuantizeLinear ->
/// DequantizeLinear around every conv, int8 weights per channel behind a
/// DequantizeLinear, an int32 bias behind one too) runs as int8 convs on
/// the NPU. onnxruntime fuses the same pattern into its int8 kernels; the
/// tolerance is one step of the output scale, as for QLinearConv.
#[test]
fn qdq_convs_run_in_int8_and_match_onnxruntime() {
    let (c, k) = (3usize, 6usize);
    let wv: Vec<i8> = weights(k * c * 9, 61)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let w2: Vec<i8> = weights(k * 9, 62)
        .iter()
        .map(|x| (x * 250.0) as i8)
        .collect();
    let sw = [0.003f32, 0.004, 0.002, 0.005, 0.0035, 0.0025];
    let sx = 0.02f32;
    let mut bias = TensorProto::new();
    bias.name = "b".into();
    bias.dims = vec![k as i64];
    bias.data_type = 6;
    bias.raw_data = [-300i32, 120, 0, 999, -5, 42]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bscale: Vec<f32> = sw.iter().map(|s| s * sx).collect();
    let mut zb = TensorProto::new();
    zb.name = "zb".into();
    zb.dims = vec![k as i64];
    zb.data_type = 6;
    zb.raw_data = vec![0; 4 * k];
    let inits = vec![
        tensor("sx", &[], &[sx]),
        int8_scalar("zx", 0),
        int8_tensor("w", &[k as i64, c as i64, 3, 3], &wv),
        tensor("sw", &[k as i64], &sw),
        int8_tensor("zw", &[k as i64], &[0; 6]),
        bias,
        tensor("sb", &[k as i64], &bscale),
        zb,
        tensor("sy", &[], &[0.05]),
        int8_scalar("zy", 0),
        int8_tensor("w2", &[k as i64, 1, 3, 3], &w2),
        tensor("sw2", &[], &[0.004]),
        int8_scalar("zw2", 0),
        tensor("sz", &[], &[0.03]),
        int8_scalar("zz", -4),
    ];
    let nodes = vec![
        node("QuantizeLinear", "qx", &["x", "sx", "zx"], &["xq"], &[]),
        node("DequantizeLinear", "dqx", &["xq", "sx", "zx"], &["xd"], &[]),
        node(
            "DequantizeLinear",
            "dqw",
            &["w", "sw", "zw"],
            &["wd"],
            &[("axis", A::I(0))],
        ),
        node(
            "DequantizeLinear",
            "dqb",
            &["b", "sb", "zb"],
            &["bd"],
            &[("axis", A::I(0))],
        ),
        node(
            "Conv",
            "conv1",
            &["xd", "wd", "bd"],
            &["c1"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node("QuantizeLinear", "qc1", &["c1", "sy", "zy"], &["c1q"], &[]),
        node(
            "DequantizeLinear",
            "dqc1",
            &["c1q", "sy", "zy"],
            &["c1d"],
            &[],
        ),
        node(
            "DequantizeLinear",
            "dqw2",
            &["w2", "sw2", "zw2"],
            &["w2d"],
            &[],
        ),
        node(
            "Conv",
            "dw",
            &["c1d", "w2d"],
            &["c2"],
            &[("group", A::I(k as i64)), ("strides", A::Is(&[2, 2]))],
        ),
        node("QuantizeLinear", "qc2", &["c2", "sz", "zz"], &["c2q"], &[]),
        node(
            "DequantizeLinear",
            "dqc2",
            &["c2q", "sz", "zz"],
            &["y"],
            &[],
        ),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 9, 9])],
        &[("y", &[1, 6, 4, 4])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    assert_eq!(int8_convs(&bytes), 2, "both convs are int8 on the NPU");
    let d = tmpdir("qdq-int8");
    let path = d.join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: "qdq-int8",
        shapes: &[],
        atol: 0.03 * 1.01,
        rtol: 0.0,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "qdq");
    assert_eq!(code, 0, "{report}");
    // A conv whose f32 result is also a graph output stays f32.
    let mut m2 = m.clone();
    m2.graph
        .as_mut()
        .unwrap()
        .output
        .push(value("c2", &[1, 6, 4, 4]));
    assert_eq!(int8_convs(&m2.write_to_bytes().unwrap()), 1);
    let _ = std::fs::remove_dir_all(&d);
}

/// Reductions the IR expresses (over H and W: global pools; over the last
/// axis: a gemm with a constant column) and Pow 2 (x * x).
#[test]
fn reductions_and_square_match_onnxruntime() {
    let mut axes = TensorProto::new();
    axes.name = "last".into();
    axes.data_type = 7;
    axes.dims = vec![1];
    axes.int64_data = vec![-1];
    let inits = vec![tensor("two", &[], &[2.0]), axes];
    let nodes = vec![
        node(
            "ReduceMean",
            "se_mean",
            &["x"],
            &["m"],
            &[("axes", A::Is(&[2, 3]))],
        ),
        node("Mul", "scale", &["x", "m"], &["xm"], &[]),
        node(
            "ReduceMax",
            "gmax",
            &["xm"],
            &["mx"],
            &[("axes", A::Is(&[-1, -2])), ("keepdims", A::I(0))],
        ),
        node("Pow", "sq", &["x", "two"], &["x2"], &[]),
        node(
            "ReduceMean",
            "row_mean",
            &["x2"],
            &["rm"],
            &[("axes", A::Is(&[-1])), ("keepdims", A::I(0))],
        ),
        node(
            "ReduceSum",
            "row_sum",
            &["x"],
            &["rs"],
            &[("keepdims", A::I(1))],
        ),
    ];
    let mut n = nodes;
    // opset 13: ReduceSum takes its axes as an input.
    n[5].input.push("last".into());
    let m = model(
        n,
        inits,
        &[("x", &[1, 3, 5, 6])],
        &[("mx", &[1, 3]), ("rm", &[1, 3, 5]), ("rs", &[1, 3, 5, 1])],
        13,
    );
    matches_ort("reduce", &m, 1e-5);
    // Over the channels, and over separated axes (the importer refused
    // both before the IR had a reduce over any axes).
    let m = model(
        vec![
            node(
                "ReduceMean",
                "chan_mean",
                &["x"],
                &["y"],
                &[("axes", A::Is(&[1]))],
            ),
            node(
                "ReduceMin",
                "split_min",
                &["x"],
                &["z"],
                &[("axes", A::Is(&[0, 2])), ("keepdims", A::I(0))],
            ),
        ],
        vec![],
        &[("x", &[2, 3, 5, 6])],
        &[("y", &[2, 1, 5, 6]), ("z", &[3, 6])],
        13,
    );
    matches_ort("reduce_any", &m, 1e-5);
}

/// The math ops on the NPU (UNARY F 7..16, BINARY prelu, REDUCE over any
/// axes, softmax and log-softmax on any axis), opset 20: Sqrt then
/// Reciprocal (one rsqrt), Log, Erf, both Gelu forms, Elu, PRelu per
/// channel, LogSoftmax and Softmax on inner axes, ReduceMin over separated
/// axes with the axes as an input, Pow 0.5.
#[test]
fn math_ops_match_onnxruntime() {
    let mut axes = TensorProto::new();
    axes.name = "axes13".into();
    axes.data_type = 7;
    axes.dims = vec![2];
    axes.int64_data = vec![1, 3];
    let inits = vec![
        tensor("slope", &[3, 1, 1], &[0.25, -0.5, 2.0]),
        tensor("half", &[], &[0.5]),
        axes,
    ];
    let nodes = vec![
        node("Exp", "e", &["x"], &["ex"], &[]),
        node("Sqrt", "sq", &["ex"], &["sq"], &[]),
        node("Reciprocal", "rs", &["sq"], &["rsqrt"], &[]),
        node("Log", "log", &["ex"], &["log"], &[]),
        node("Erf", "erf", &["x"], &["erf"], &[]),
        node("Gelu", "gelu", &["x"], &["gelu"], &[]),
        node(
            "Gelu",
            "gelu_t",
            &["x"],
            &["gelu_tanh"],
            &[("approximate", A::S("tanh"))],
        ),
        node("Elu", "elu", &["x"], &["elu"], &[("alpha", A::F(0.5))]),
        node("PRelu", "prelu", &["x", "slope"], &["prelu"], &[]),
        node("LogSoftmax", "lsm", &["x"], &["lsm"], &[("axis", A::I(1))]),
        node("Softmax", "sm", &["x"], &["sm"], &[("axis", A::I(2))]),
        node(
            "ReduceMin",
            "rmin",
            &["x", "axes13"],
            &["rmin"],
            &[("keepdims", A::I(0))],
        ),
        node("Pow", "pow", &["ex", "half"], &["pow"], &[]),
    ];
    let s: &[i64] = &[2, 3, 5, 6];
    let mut m = model(
        nodes,
        inits,
        &[("x", s)],
        &[
            ("rsqrt", s),
            ("log", s),
            ("erf", s),
            ("gelu", s),
            ("gelu_tanh", s),
            ("elu", s),
            ("prelu", s),
            ("lsm", s),
            ("sm", s),
            ("rmin", &[2, 5]),
            ("pow", s),
        ],
        20,
    );
    m.ir_version = 9;
    matches_ort("math", &m, 1e-5);
    // Nothing of it on the CPU, even with the fallback on.
    let bytes = m.write_to_bytes().unwrap();
    let opts = Options {
        cpu_fallback: true,
        ..Default::default()
    };
    let imported = import(&bytes, None, &opts).unwrap();
    assert!(imported.segments.is_empty());
}

/// The CPU fallback between two NPU graphs: a Sin (no ISA function) on
/// the CPU, beside a Concat on the channel axis (one part a constant) and a
/// Transpose to NHWC that run on the NPU, compared with onnxruntime.
#[test]
fn cpu_fallback_runs_sin_between_npu_graphs_and_matches_onnxruntime() {
    let inits = vec![
        tensor("w", &[3, 5, 1, 1], &weights(15, 81)),
        tensor("two", &[1], &[2.0]),
        tensor("extra", &[1, 1, 3, 4], &weights(12, 82)),
    ];
    let nodes = vec![
        node("Relu", "r", &["x"], &["a"], &[]),
        node("Sigmoid", "s", &["x"], &["b"], &[]),
        node(
            "Concat",
            "cat",
            &["a", "b", "extra"],
            &["c"],
            &[("axis", A::I(1))],
        ),
        node("Conv", "conv", &["c", "w"], &["d"], &[]),
        node("Add", "plus2", &["d", "two"], &["e"], &[]),
        node("Sin", "inv", &["e"], &["f"], &[]),
        node("Mul", "scale", &["f", "d"], &["y"], &[]),
        node(
            "Transpose",
            "nhwc",
            &["d"],
            &["t"],
            &[("perm", A::Is(&[0, 2, 3, 1]))],
        ),
        node("Relu", "tr", &["t"], &["z"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 2, 3, 4])],
        &[("y", &[1, 3, 3, 4]), ("z", &[1, 3, 4, 3])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    // Refused by default, naming the node (Concat and Transpose run on
    // the NPU; Sin has no ISA function).
    assert_eq!(refused(&m).0, "inv");
    let d = tmpdir("fallback");
    let path = d.join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: "fallback",
        shapes: &[],
        atol: 1e-5,
        rtol: 1e-4,
    };
    let (code, report) = run_against_ort_with(&case, &bytes, &d, &path, "fallback", true);
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("on the CPU: inv (Sin)") && !report.contains("(Concat)"),
        "{report}"
    );
}

/// The attention ops of a transformer block: LayerNormalization (opset 17,
/// last axis, epsilon) and MatMul of two run-time batched operands (the
/// IR's batch_matmul) and of a batched activation by a weight shared by
/// every batch, then a softmax over the last axis.
#[test]
fn layer_norm_and_batched_matmul_match_onnxruntime() {
    let inits = vec![
        tensor(
            "g",
            &[16],
            &weights(16, 21).iter().map(|x| 1.0 + x).collect::<Vec<_>>(),
        ),
        tensor("b", &[16], &weights(16, 22)),
        tensor("w", &[3, 16, 8], &weights(3 * 16 * 8, 23)),
    ];
    let nodes = vec![
        node(
            "LayerNormalization",
            "ln",
            &["x", "g", "b"],
            &["n"],
            &[("axis", A::I(-1)), ("epsilon", A::F(1e-3))],
        ),
        node("MatMul", "proj", &["n", "w"], &["p"], &[]),
        node("MatMul", "scores", &["p", "k"], &["s"], &[]),
        node("Softmax", "sm", &["s"], &["y"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[5, 16]), ("k", &[3, 8, 5])],
        &[("y", &[3, 5, 5])],
        17,
    );
    matches_ort("attention", &m, 1e-5);
}

fn i64_init(name: &str, v: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 7;
    t.dims = vec![v.len() as i64];
    t.int64_data = v.to_vec();
    t
}

/// Gather with int64 constant indices (negative ones count from the end,
/// as ONNX says) on axis 0, 1 and -1 of a computed f32 tensor, and with
/// computed int32 indices (a graph input, with negative values: the
/// device wraps them) into an embedding table; against onnxruntime, exact.
/// An index outside `[-dim, dim)` is refused at import.
#[test]
fn gather_with_int64_and_negative_indices_matches_onnxruntime() {
    let mut idx2 = i64_init("i2", &[2, -1, 0, -3, 3, 1]);
    idx2.dims = vec![2, 3];
    let nodes = vec![
        node("Relu", "r", &["x"], &["xr"], &[]),
        node("Gather", "g0", &["xr", "i0"], &["y0"], &[]),
        node("Gather", "g1", &["xr", "i2"], &["y1"], &[("axis", A::I(1))]),
        node("Gather", "g2", &["xr", "s"], &["y2"], &[("axis", A::I(-1))]),
        node("Gather", "emb", &["table", "ids"], &["e"], &[]),
    ];
    let inits = vec![
        i64_init("i0", &[-1, 0, 1, -2]),
        idx2,
        {
            let mut t = i64_init("s", &[-2]);
            t.dims = vec![];
            t
        },
        tensor("table", &[10, 6], &weights(60, 91)),
    ];
    let mut m = model(nodes, inits, &[("x", &[3, 4, 5])], &[], 13);
    let g = m.graph.as_mut().unwrap();
    g.input.push(typed_value("ids", &[2, 5], 6));
    g.output = vec![
        value("y0", &[4, 4, 5]),
        value("y1", &[3, 2, 3, 5]),
        value("y2", &[3, 4]),
        value("e", &[2, 5, 6]),
    ];
    let bytes = m.write_to_bytes().unwrap();
    let d = tmpdir("gather_i64");
    let path = d.join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: "gather_i64",
        shapes: &[],
        atol: 0.0,
        rtol: 0.0,
    };
    let fed = std::collections::HashMap::from([
        ("x".to_string(), npu::TensorData::F32(weights(60, 92))),
        (
            "ids".to_string(),
            npu::TensorData::I32(vec![0, 9, -1, -10, 3, 4, 5, -4, 2, 7]),
        ),
    ]);
    let (code, report) =
        common::run_against_ort_fed(&case, &bytes, &d, &path, "ops", false, Some(fed));
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(code, 0, "the NPU disagrees with onnxruntime:\n{report}");
    // Out of range: refused with the ONNX range.
    let m = model(
        vec![node("Gather", "bad", &["x", "i"], &["y"], &[])],
        vec![i64_init("i", &[0, -4])],
        &[("x", &[3, 2])],
        &[("y", &[2, 2])],
        13,
    );
    let (name, _, why) = refused(&m);
    assert_eq!(name, "bad");
    assert!(why.contains("[-3, 3)"), "{why}");
}

/// Data movement on the NPU without --cpu-fallback: Concat with a
/// constant, Transpose, Slice with a negative step, Split, Pad, Resize
/// (nearest and linear), DepthToSpace, a conv with SAME_UPPER (asymmetric)
/// padding, a ceil-mode max pool, an average pool counting its padding, and
/// outputs that are a reshape and a graph input; against onnxruntime.
#[test]
fn movement_ops_run_on_the_npu_and_match_onnxruntime() {
    let inits = vec![
        tensor("extra", &[1, 1, 6, 7], &weights(42, 91)),
        tensor("w", &[4, 4, 3, 3], &weights(144, 92)),
        i64_init("pads", &[0, 0, 1, 2, 0, 0, 2, 0]),
        tensor("padv", &[], &[0.5]),
        tensor("up", &[4], &[1.0, 1.0, 2.0, 2.0]),
        tensor("half", &[4], &[1.0, 1.0, 0.5, 0.5]),
        i64_init("st", &[5, -1]),
        i64_init("en", &[0, -100]),
        i64_init("ax", &[3, 1]),
        i64_init("sp", &[-2, -1]),
        i64_init("parts", &[1, 4]),
        i64_init("flat", &[1, -1]),
    ];
    let nodes = vec![
        node("Relu", "r", &["x"], &["a"], &[]),
        node(
            "Concat",
            "cat",
            &["a", "x", "extra"],
            &["c"],
            &[("axis", A::I(1))],
        ),
        node(
            "Transpose",
            "nhwc",
            &["c"],
            &["t"],
            &[("perm", A::Is(&[0, 2, 3, 1]))],
        ),
        node("Slice", "rev", &["t", "st", "en", "ax", "sp"], &["s"], &[]),
        node(
            "Split",
            "halves",
            &["c", "parts"],
            &["c1", "c3"],
            &[("axis", A::I(1))],
        ),
        node("Pad", "pad", &["c3", "pads", "padv"], &["p"], &[]),
        node(
            "Resize",
            "up_nearest",
            &["p", "", "up"],
            &["u"],
            &[
                ("mode", A::S("nearest")),
                ("coordinate_transformation_mode", A::S("asymmetric")),
                ("nearest_mode", A::S("floor")),
            ],
        ),
        node(
            "Resize",
            "down_linear",
            &["u", "", "half"],
            &["dl"],
            &[
                ("mode", A::S("linear")),
                ("coordinate_transformation_mode", A::S("align_corners")),
            ],
        ),
        node(
            "DepthToSpace",
            "d2s",
            &["p"],
            &["d"],
            &[("blocksize", A::I(2)), ("mode", A::S("CRD"))],
        ),
        node("Relu", "r1", &["c1"], &["c1r"], &[]),
        node(
            "Conv",
            "same",
            &["p", "w"],
            &["cv"],
            &[
                ("auto_pad", A::S("SAME_UPPER")),
                ("strides", A::Is(&[2, 2])),
            ],
        ),
        node(
            "MaxPool",
            "mp",
            &["cv"],
            &["mp"],
            &[
                ("kernel_shape", A::Is(&[2, 2])),
                ("strides", A::Is(&[2, 2])),
                ("ceil_mode", A::I(1)),
            ],
        ),
        node(
            "AveragePool",
            "ap",
            &["dl"],
            &["ap"],
            &[
                ("kernel_shape", A::Is(&[3, 3])),
                ("pads", A::Is(&[1, 0, 1, 2])),
                ("count_include_pad", A::I(1)),
            ],
        ),
        node("Reshape", "flatten", &["s", "flat"], &["sflat"], &[]),
        node("Identity", "same_x", &["x"], &["x_out"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 2, 6, 7])],
        &[
            ("sflat", &[1, 84]),
            ("d", &[1, 1, 18, 18]),
            ("mp", &[1, 4, 3, 3]),
            ("ap", &[1, 4, 9, 9]),
            ("x_out", &[1, 2, 6, 7]),
            ("c1r", &[1, 1, 6, 7]),
        ],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    // No CPU fallback needed: every node maps.
    let model = import(&bytes, None, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(model.segments.is_empty());
    let ops: Vec<&str> = model.graph.nodes().iter().map(|n| n.op.name()).collect();
    for op in [
        "concat",
        "transpose",
        "slice",
        "pad",
        "resize",
        "depth_to_space",
        "conv2d",
        "maxpool",
        "avgpool",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    matches_ort("movement", &m, 1e-5);
}

/// The same ops on int8 tensors (QuantizeLinear -> movement ->
/// DequantizeLinear): the values move as they are and keep their
/// quantization; the pad value is the int8 constant. Against onnxruntime.
#[test]
fn int8_movement_matches_onnxruntime() {
    let inits = vec![
        tensor("s", &[], &[0.05]),
        int8_scalar("z", -4),
        int8_scalar("padv", 9),
        i64_init("pads", &[0, 1, 0, 2, 0, 0, 1, 0]),
        tensor("up", &[4], &[1.0, 1.0, 2.0, 1.5]),
        i64_init("st", &[1]),
        i64_init("en", &[100]),
        i64_init("ax", &[2]),
        i64_init("sp", &[2]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], &[]),
        node(
            "Transpose",
            "nhwc",
            &["xq"],
            &["t"],
            &[("perm", A::Is(&[0, 2, 3, 1]))],
        ),
        node("Pad", "pad", &["t", "pads", "padv"], &["p"], &[]),
        node(
            "Resize",
            "up",
            &["p", "", "up"],
            &["u"],
            &[("mode", A::S("nearest"))],
        ),
        node("Concat", "cat", &["u", "p"], &["c"], &[("axis", A::I(2))]),
        node(
            "Slice",
            "every2",
            &["c", "st", "en", "ax", "sp"],
            &["sl"],
            &[],
        ),
        node("DequantizeLinear", "dq", &["sl", "s", "z"], &["y"], &[]),
    ];
    // x [1,3,5,6] -> t [1,5,6,3] -> p [1,6,6,5] -> u [1,6,12,7]: first
    // with W scaled by 1.5, which Concat with p refuses.
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 5, 6])],
        &[("y", &[1, 6, 0, 0])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    let err = import(&bytes, None, &Options::default()).err();
    // u is [1, 6, 12, 7] and p [1, 6, 6, 5]: they do not concatenate.
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("does not match")),
        "{err:?}"
    );
    // With W unchanged: u [1,6,12,5], c [1,6,18,5], every other row of it
    // [1,6,9,5].
    let mut m = m;
    let g = m.graph.as_mut().unwrap();
    g.initializer[4] = tensor("up", &[4], &[1.0, 1.0, 2.0, 1.0]);
    g.output[0] = value("y", &[1, 6, 9, 5]);
    let model = import(&m.write_to_bytes().unwrap(), None, &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let int8_moves = model
        .graph
        .nodes()
        .iter()
        .filter(|n| n.ty.dtype == npu::DType::I8 && !matches!(n.op, npu::ir::Op::Quantize { .. }))
        .count();
    assert_eq!(
        int8_moves, 5,
        "transpose, pad, resize, concat and slice in int8"
    );
    matches_ort("int8_movement", &m, 0.0);
}

/// Upsample (opset 9) and Resize before opset 11 (asymmetric; nearest
/// rounds up when shrinking), against onnxruntime.
#[test]
fn legacy_upsample_and_resize_match_onnxruntime() {
    let m = model(
        vec![
            node(
                "Upsample",
                "up",
                &["x", "sc"],
                &["u"],
                &[("mode", A::S("nearest"))],
            ),
            node(
                "Upsample",
                "upl",
                &["x", "sc"],
                &["y2"],
                &[("mode", A::S("linear"))],
            ),
            node("Relu", "r", &["u"], &["y"], &[]),
        ],
        vec![tensor("sc", &[4], &[1.0, 1.0, 2.0, 3.0])],
        &[("x", &[1, 2, 3, 5])],
        &[("y", &[1, 2, 6, 15]), ("y2", &[1, 2, 6, 15])],
        9,
    );
    matches_ort("upsample9", &m, 1e-5);
    let m = model(
        vec![
            node(
                "Resize",
                "down",
                &["x", "half"],
                &["d"],
                &[("mode", A::S("nearest"))],
            ),
            node(
                "Resize",
                "upl",
                &["x", "up"],
                &["l"],
                &[("mode", A::S("linear"))],
            ),
        ],
        vec![
            tensor("half", &[4], &[1.0, 1.0, 0.5, 0.5]),
            tensor("up", &[4], &[1.0, 1.0, 1.5, 2.0]),
        ],
        &[("x", &[1, 2, 7, 9])],
        &[("d", &[1, 2, 3, 4]), ("l", &[1, 2, 10, 18])],
        10,
    );
    matches_ort("resize10", &m, 1e-5);
}

fn bool_init(name: &str, dims: &[i64], v: &[bool]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 9;
    t.dims = dims.to_vec();
    t.raw_data = v.iter().map(|&b| b as u8).collect();
    t
}

/// A value of ONNX element type `elem` (9: bool).
fn typed_value(name: &str, dims: &[i64], elem: i32) -> ValueInfoProto {
    let mut v = value(name, dims);
    if let Some(type_proto::Value::TensorType(tt)) = v.type_.mut_or_insert_default().value.as_mut()
    {
        tt.elem_type = elem;
    }
    v
}

/// Comparisons, logic and Where on the NPU, as ONNX defines them, against
/// onnxruntime on the same file: `Where(Less(x, y), x, y)` (the minimum),
/// a per-column constant and a -inf scalar, a broadcast first operand
/// (LessOrEqual of a [4, 5] by [2, 3, 4, 5]), Equal of a Relu and its
/// input, Not, And, Or and Xor with a bool constant, Cast both ways, a bool
/// output (the mask, compared as 1.0 / 0.0), a Where with three operands
/// broadcast differently, and the shape arithmetic of an exporter folded on
/// the host (Greater and Where on Shape, then a Reshape).
#[test]
fn comparisons_and_where_match_onnxruntime() {
    let mask_c: Vec<bool> = (0..15).map(|i| i % 3 != 1).collect();
    let inits = vec![
        tensor("row", &[5], &[-0.5, -0.1, 0.0, 0.2, 0.6]),
        tensor("ninf", &[], &[f32::NEG_INFINITY]),
        tensor("zero", &[], &[0.0]),
        bool_init("mask_c", &[1, 3, 1, 5], &mask_c),
        i64_init("three", &[3]),
        i64_init("sixes", &[6, 1, 1, 1]),
    ];
    let nodes = vec![
        node("Less", "lt", &["x", "y"], &["lt"], &[]),
        node("Where", "w_min", &["lt", "x", "y"], &["w_min"], &[]),
        node("Greater", "gt", &["x", "row"], &["gt"], &[]),
        node("Where", "w_gt", &["gt", "x", "ninf"], &["w_gt"], &[]),
        node("LessOrEqual", "le", &["z", "x"], &["le"], &[]),
        node("GreaterOrEqual", "ge", &["x", "y"], &["ge"], &[]),
        node("Relu", "relu", &["x"], &["rx"], &[]),
        node("Equal", "eq", &["rx", "x"], &["eq"], &[]),
        node("Not", "not", &["eq"], &["neq"], &[]),
        node("And", "and", &["le", "ge"], &["a1"], &[]),
        node("Or", "or", &["a1", "neq"], &["o1"], &[]),
        node("Xor", "xor", &["o1", "mask_c"], &["x1"], &[]),
        node("Cast", "to_f", &["x1"], &["logic"], &[("to", A::I(1))]),
        node("Where", "w3", &["mask_c", "z", "x"], &["w3"], &[]),
        node("Cast", "to_b", &["w3"], &["w3b"], &[("to", A::I(9))]),
        node("Where", "w4", &["w3b", "y", "zero"], &["w4"], &[]),
        node("Shape", "shape", &["x"], &["s"], &[]),
        node("Greater", "big", &["s", "three"], &["sbig"], &[]),
        node("Where", "target", &["sbig", "s", "sixes"], &["t"], &[]),
        node("Reshape", "rs", &["x", "t"], &["xr"], &[]),
        node("Less", "neg", &["xr", "zero"], &["xneg"], &[]),
        node("Where", "relu2", &["xneg", "zero", "xr"], &["relu2"], &[]),
    ];
    let s: &[i64] = &[2, 3, 4, 5];
    let mut m = model(
        nodes,
        inits,
        &[("x", s), ("y", s), ("z", &[4, 5])],
        &[
            ("w_min", s),
            ("w_gt", s),
            ("logic", s),
            ("w3", s),
            ("w4", s),
            ("relu2", &[6, 1, 4, 5]),
        ],
        13,
    );
    let g = m.graph.as_mut().unwrap();
    g.output.push(typed_value("eq", s, 9));
    matches_ort("compare", &m, 0.0);
    // All of it on the NPU (the Shape arithmetic folded): comparisons and
    // SELECTs, no CPU fallback needed.
    let bytes = m.write_to_bytes().unwrap();
    let opts = Options {
        cpu_fallback: true,
        ..Default::default()
    };
    let imported = import(&bytes, None, &opts).unwrap();
    assert!(imported.segments.is_empty());
    let wheres = imported
        .graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, npu::ir::Op::Where { .. }))
        .count();
    assert_eq!(wheres, 5, "the folded Where is not an IR op");
}

/// A bool graph input is refused with the reason (inputs are float32);
/// a comparison of int8 values names the node.
#[test]
fn bool_inputs_and_int8_comparisons_are_refused() {
    let mut m = model(
        vec![node("Not", "not", &["b"], &["y"], &[])],
        vec![],
        &[],
        &[("y", &[4])],
        13,
    );
    m.graph
        .as_mut()
        .unwrap()
        .input
        .push(typed_value("b", &[4], 9));
    match import(&m.write_to_bytes().unwrap(), None, &Options::default()) {
        Err(ImportError::Input { name, why }) => {
            assert_eq!(name, "b");
            assert!(why.contains("float32"), "{why}");
        }
        other => panic!("expected the input refused, got {other:?}"),
    }
    let mut ys = TensorProto::new();
    ys.name = "ys".into();
    ys.data_type = 1;
    ys.float_data = vec![0.1];
    let m = model(
        vec![
            node("QuantizeLinear", "q", &["x", "ys", "yz"], &["xq"], &[]),
            node("Less", "cmp", &["xq", "xq"], &["y"], &[]),
        ],
        vec![ys, int8_scalar("yz", 0)],
        &[("x", &[4])],
        &[("y", &[4])],
        13,
    );
    // int8 comparisons (ONNX compares the integers): on the IR's real
    // values, the same order for one quantization.
    let imported = import(&m.write_to_bytes().unwrap(), None, &Options::default()).unwrap();
    assert_eq!(imported.outputs[0].ty.dtype, npu::DType::F32);
    // Two different quantizations compare differently as integers: refused.
    let mut ys2 = TensorProto::new();
    ys2.name = "ys2".into();
    ys2.data_type = 1;
    ys2.float_data = vec![0.2];
    let m = model(
        vec![
            node("QuantizeLinear", "q", &["x", "ys2", "yz"], &["xq"], &[]),
            node("QuantizeLinear", "q2", &["x", "ys2", "yz2"], &["xq2"], &[]),
            node("Less", "cmp", &["xq", "xq2"], &["y"], &[]),
        ],
        vec![ys2, int8_scalar("yz", 0), int8_scalar("yz2", 1)],
        &[("x", &[4])],
        &[("y", &[4])],
        13,
    );
    let (node_name, op, why) = refused(&m);
    assert_eq!((node_name.as_str(), op.as_str()), ("cmp", "Less"));
    assert!(why.contains("one quantization"), "{why}");
}

/// int8 and uint8 comparisons (Less, Equal, GreaterOrEqual of quantized
/// tensors, against each other and against constants) compare the
/// integers, as ONNX defines them; against onnxruntime, exact.
#[test]
fn int8_comparisons_match_onnxruntime() {
    let mut c8 = TensorProto::new();
    c8.name = "c8".into();
    c8.data_type = 3;
    c8.dims = vec![6];
    c8.raw_data = [-3i8, 0, 5, 9, -128, 127]
        .iter()
        .map(|&x| x as u8)
        .collect();
    let inits = vec![
        tensor("s", &[], &[0.05]),
        int8_scalar("z", -2),
        u8_scalar("zu", 130),
        c8,
        u8_tensor("cu", &[6], &[120, 130, 131, 0, 255, 129]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "qa", &["a", "s", "z"], &["aq"], &[]),
        node("QuantizeLinear", "qb", &["b", "s", "z"], &["bq"], &[]),
        node("Less", "lt", &["aq", "bq"], &["lt"], &[]),
        node("Equal", "eq", &["aq", "bq"], &["eq"], &[]),
        node("GreaterOrEqual", "ge", &["aq", "c8"], &["ge"], &[]),
        node("QuantizeLinear", "qu", &["a", "s", "zu"], &["au"], &[]),
        node("Greater", "gtu", &["au", "cu"], &["gtu"], &[]),
    ];
    let mut m = model(nodes, inits, &[("a", &[4, 6]), ("b", &[4, 6])], &[], 13);
    m.graph.as_mut().unwrap().output = ["lt", "eq", "ge", "gtu"]
        .iter()
        .map(|n| typed_value(n, &[4, 6], 9))
        .collect();
    matches_ort("int8_compare", &m, 0.0);
}

fn u8_scalar(name: &str, v: u8) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 2;
    t.raw_data = vec![v];
    t
}

fn u8_tensor(name: &str, dims: &[i64], v: &[u8]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 2;
    t.dims = dims.to_vec();
    t.raw_data = v.to_vec();
    t
}

/// uint8 quantization runs as int8 (`q - 128`, zero point `zp - 128`):
/// QuantizeLinear with a uint8 zero point of 200 (inputs saturate at 0 and
/// 255), a Transpose and a Flatten of the uint8 values, DequantizeLinear;
/// QuantizeLinear without a zero point (ONNX: uint8, zero point 0) and
/// its DequantizeLinear without one; against onnxruntime.
#[test]
fn uint8_quantize_dequantize_match_onnxruntime() {
    let inits = vec![
        tensor("s", &[], &[0.004]),
        u8_scalar("z", 200),
        tensor("s0", &[], &[0.003]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], &[]),
        node(
            "Transpose",
            "swap",
            &["xq"],
            &["pq"],
            &[("perm", A::Is(&[0, 1, 3, 2]))],
        ),
        node("Flatten", "flat", &["pq"], &["fq"], &[]),
        node("DequantizeLinear", "dq", &["fq", "s", "z"], &["y"], &[]),
        node("QuantizeLinear", "q0", &["x", "s0"], &["xq0"], &[]),
        node("DequantizeLinear", "dq0", &["xq0", "s0"], &["y0"], &[]),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 2, 6, 6])],
        &[("y", &[1, 72]), ("y0", &[1, 2, 6, 6])],
        13,
    );
    matches_ort("uint8_qdq", &m, 0.0);
}

/// A uint8-in, uint8-out model: a uint8 graph input read by QLinearConv
/// (per-channel uint8 weights with per-channel zero points, padding) and
/// by a DequantizeLinear, a uint8 result returned as it is and a second
/// one from a QuantizeLinear. The caller's buffers hold uint8 bytes: the
/// program converts on the device. Exact against onnxruntime, and the
/// inputs and outputs report dtype u8 with their uint8 zero points.
#[test]
fn uint8_graph_inputs_and_outputs_match_onnxruntime() {
    let (k, c) = (6usize, 3usize);
    let wv: Vec<u8> = weights(k * c * 9, 71)
        .iter()
        .map(|x| (128.0 + x * 250.0) as u8)
        .collect();
    let zw: Vec<u8> = (0..k).map(|i| [0u8, 255, 128, 17, 201, 90][i]).collect();
    let inits = vec![
        tensor("sx", &[], &[0.02]),
        u8_scalar("zx", 140),
        u8_tensor("w", &[k as i64, c as i64, 3, 3], &wv),
        tensor(
            "sw",
            &[k as i64],
            &[0.004, 0.006, 0.003, 0.005, 0.004, 0.007],
        ),
        u8_tensor("zw", &[k as i64], &zw),
        tensor("sy", &[], &[0.05]),
        u8_scalar("zy", 100),
        tensor("sq", &[], &[0.03]),
        u8_scalar("zq", 60),
    ];
    let nodes = vec![
        node(
            "QLinearConv",
            "qconv",
            &["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"],
            &["y"],
            &[("pads", A::Is(&[1, 0, 2, 1]))],
        ),
        node("DequantizeLinear", "dq", &["x", "sx", "zx"], &["xd"], &[]),
        node("Sigmoid", "sig", &["xd"], &["s"], &[]),
        node("QuantizeLinear", "q", &["s", "sq", "zq"], &["z"], &[]),
    ];
    let mut m = model(nodes, inits, &[], &[], 13);
    let g = m.graph.as_mut().unwrap();
    g.input = vec![typed_value("x", &[1, c as i64, 7, 8], 2)];
    g.output = vec![
        typed_value("y", &[1, k as i64, 8, 7], 2),
        typed_value("z", &[1, c as i64, 7, 8], 2),
    ];
    matches_ort("uint8_io", &m, 0.0);
    let imported = import(&m.write_to_bytes().unwrap(), None, &Options::default()).unwrap();
    let io: Vec<(String, npu::DType, i32)> = imported
        .inputs
        .iter()
        .chain(&imported.outputs)
        .map(|io| (io.name.clone(), io.ty.dtype, io.ty.zero_point_value()))
        .collect();
    assert_eq!(
        io,
        [
            ("x".to_string(), npu::DType::U8, 140),
            ("y".to_string(), npu::DType::U8, 100),
            ("z".to_string(), npu::DType::U8, 60)
        ]
    );
}

/// QLinearConv with uint8 activations and weights (zero points 131 and
/// 120: the IR's int8 zero points 3 and -8) and a uint8 result zero point
/// of 77, and QLinearMatMul with uint8 activations and int8 weights; the
/// QDQ conv onnxruntime's quantizer writes, with those uint8 activations
/// and weights, runs as an int8 conv2d. Against onnxruntime.
#[test]
fn uint8_qlinear_and_qdq_convs_match_onnxruntime() {
    let wv: Vec<u8> = weights(4 * 2 * 9, 33)
        .iter()
        .map(|x| (128.0 + x * 220.0) as u8)
        .collect();
    let bias = {
        let mut t = TensorProto::new();
        t.name = "b".into();
        t.data_type = 6;
        t.dims = vec![4];
        t.int32_data = vec![-300, 0, 150, 999];
        t
    };
    let mut wm = TensorProto::new();
    wm.name = "wm".into();
    wm.data_type = 3;
    wm.dims = vec![6, 3];
    wm.raw_data = weights(18, 34)
        .iter()
        .map(|x| ((x * 250.0) as i8) as u8)
        .collect();
    let inits = vec![
        tensor("sx", &[], &[0.01]),
        u8_scalar("zx", 131),
        u8_tensor("w", &[4, 2, 3, 3], &wv),
        tensor("sw", &[], &[0.005]),
        u8_scalar("zw", 120),
        tensor("sy", &[], &[0.02]),
        u8_scalar("zy", 77),
        bias,
        wm,
        tensor("swm", &[], &[0.004]),
        int8_scalar("zwm", 0),
        tensor("sm", &[], &[0.01]),
        u8_scalar("zm", 120),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "sx", "zx"], &["xq"], &[]),
        node(
            "QLinearConv",
            "qconv",
            &["xq", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
            &["yq"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node("DequantizeLinear", "dq", &["yq", "sy", "zy"], &["y"], &[]),
        node("Reshape", "rows", &["xq", "shape"], &["xr"], &[]),
        node(
            "QLinearMatMul",
            "qmm",
            &["xr", "sx", "zx", "wm", "swm", "zwm", "sm", "zm"],
            &["mq"],
            &[],
        ),
        node("DequantizeLinear", "dqm", &["mq", "sm", "zm"], &["m"], &[]),
        // QDQ: DequantizeLinear of x and of the uint8 weight, Conv,
        // QuantizeLinear (uint8), DequantizeLinear.
        node("DequantizeLinear", "dqx", &["xq", "sx", "zx"], &["xd"], &[]),
        node("DequantizeLinear", "dqw", &["w", "sw", "zw"], &["wd"], &[]),
        node("Conv", "conv", &["xd", "wd"], &["c"], &[]),
        node("QuantizeLinear", "qc", &["c", "sy", "zy"], &["cq"], &[]),
        node("DequantizeLinear", "dqc", &["cq", "sy", "zy"], &["cd"], &[]),
    ];
    let mut inits = inits;
    inits.push(i64_init("shape", &[10, 6]));
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 2, 5, 6])],
        &[("y", &[1, 4, 5, 6]), ("m", &[10, 3]), ("cd", &[1, 4, 3, 4])],
        13,
    );
    matches_ort("uint8_qlinear", &m, 1e-6);
    let imported = import(&m.write_to_bytes().unwrap(), None, &Options::default()).unwrap();
    let int8_convs = imported
        .graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, npu::ir::Op::Conv2d { .. }) && n.ty.dtype == npu::DType::I8)
        .count();
    assert_eq!(
        int8_convs, 2,
        "the QLinearConv and the QDQ conv run in int8"
    );
}

/// DMA stores and loads of `bytes` compiled for `sram` bytes of SRAM, with
/// fusion on or off.
/// Bytes the program compiled from `g` for `sram` bytes of SRAM stores
/// (its DMA_STOREs' regions, whose shapes count bytes): what reaches memory.
fn stored_bytes(g: &npu::ir::Graph, sram: u32) -> usize {
    let p = npu::compile(
        g,
        npu::DeviceParams { sram_size: sram },
        npu::CompileOptions::default(),
    )
    .unwrap();
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

/// Bytes of the results of the nodes of `g` whose op `is` picks.
fn result_bytes(g: &npu::ir::Graph, is: fn(&npu::ir::Op) -> bool) -> usize {
    g.nodes()
        .iter()
        .filter(|n| is(&n.op))
        .map(|n| n.ty.bytes())
        .sum()
}

fn dma_counts(bytes: &[u8], sram: u32, fuse: bool) -> (usize, usize) {
    let g = import(bytes, None, &Options::default()).unwrap().graph;
    let opts = npu::CompileOptions {
        fuse,
        ..Default::default()
    };
    let p = npu::compile(&g, npu::DeviceParams { sram_size: sram }, opts).unwrap();
    let count = |f: fn(&npu::isa::Insn) -> bool| p.insns().iter().filter(|i| f(i)).count();
    (
        count(|i| matches!(i, npu::isa::Insn::DmaStore { .. })),
        count(|i| matches!(i, npu::isa::Insn::DmaLoad { .. })),
    )
}

/// Elementwise chains run on the SRAM tile: HardSwish as exporters write
/// it (Add, Clip, Mul, Div) and SiLU (Sigmoid, Mul) after a conv, a
/// depthwise conv (with a residual add), a Gemm, and on a graph input,
/// plus a scalar first operand (`3 - x`, `6 > x`). Each chain stores only
/// its result: the program stores as often as the same model without the
/// chains (which fails without the fusion), and matches onnxruntime.
#[test]
fn elementwise_chains_fuse_and_match_onnxruntime() {
    let (c, k) = (3i64, 8i64);
    let inits = || {
        vec![
            tensor("w1", &[k, c, 3, 3], &weights(72 * 3, 11)),
            tensor("b1", &[k], &weights(8, 12)),
            tensor("wd", &[k, 1, 3, 3], &weights(72, 13)),
            tensor("wg", &[k * 36, 10], &weights(8 * 36 * 10, 14)),
            tensor("three", &[], &[3.0]),
            tensor("six", &[1], &[6.0]),
            tensor("zero", &[], &[0.0]),
        ]
    };
    // x -> conv (12x12 -> 6x6) -> hardswish -> depthwise conv + residual
    // -> silu -> (3 - y) * (6 > y) -> flatten -> gemm -> silu; and x ->
    // silu -> hardswish, a second output.
    let hardswish = |p: &str, x: &str, out: &str| {
        vec![
            node(
                "Add",
                &format!("{p}a"),
                &[x, "three"],
                &[&format!("{p}t1")],
                &[],
            ),
            node(
                "Clip",
                &format!("{p}c"),
                &[&format!("{p}t1"), "zero", "six"],
                &[&format!("{p}t2")],
                &[],
            ),
            node(
                "Mul",
                &format!("{p}m"),
                &[x, &format!("{p}t2")],
                &[&format!("{p}t3")],
                &[],
            ),
            node(
                "Div",
                &format!("{p}d"),
                &[&format!("{p}t3"), "six"],
                &[out],
                &[],
            ),
        ]
    };
    let silu = |p: &str, x: &str, out: &str| {
        vec![
            node("Sigmoid", &format!("{p}s"), &[x], &[&format!("{p}sg")], &[]),
            node(
                "Mul",
                &format!("{p}m"),
                &[x, &format!("{p}sg")],
                &[out],
                &[],
            ),
        ]
    };
    let build = |chains: bool| {
        let mut n = vec![node(
            "Conv",
            "conv1",
            &["x", "w1", "b1"],
            &["c1"],
            &[("pads", A::Is(&[1, 1, 1, 1])), ("strides", A::Is(&[2, 2]))],
        )];
        let link = |n: &mut Vec<NodeProto>, nodes: Vec<NodeProto>, x: &str, out: &str| {
            if chains {
                n.extend(nodes);
            } else {
                n.push(node("Identity", &format!("id_{out}"), &[x], &[out], &[]));
            }
        };
        link(&mut n, hardswish("h_", "c1", "h1"), "c1", "h1");
        n.push(node(
            "Conv",
            "dw",
            &["h1", "wd"],
            &["d1"],
            &[("group", A::I(k)), ("pads", A::Is(&[1, 1, 1, 1]))],
        ));
        n.push(node("Add", "res", &["d1", "h1"], &["r1"], &[]));
        link(&mut n, silu("s_", "r1", "s1"), "r1", "s1");
        let mut tail = vec![
            node("Sub", "rsub", &["three", "s1"], &["u1"], &[]),
            node("Greater", "gt", &["six", "s1"], &["u2b"], &[]),
            node("Cast", "gtf", &["u2b"], &["u2"], &[("to", A::I(1))]),
            node("Mul", "um", &["u1", "u2"], &["u3"], &[]),
        ];
        if !chains {
            tail = vec![node("Identity", "id_u3", &["s1"], &["u3"], &[])];
        }
        n.extend(tail);
        n.push(node("Reshape", "flat", &["u3", "fshape"], &["f1"], &[]));
        n.push(node("MatMul", "fc", &["f1", "wg"], &["g1"], &[]));
        link(&mut n, silu("g_", "g1", "y"), "g1", "y");
        // On the input: without the chain, one op (one load and store).
        if chains {
            n.extend(silu("x_", "x", "xs"));
            n.extend(hardswish("x_h_", "xs", "z"));
        } else {
            n.push(node("Sigmoid", "x_s", &["x"], &["z"], &[]));
        }
        let mut i = inits();
        let mut fshape = TensorProto::new();
        fshape.name = "fshape".into();
        fshape.data_type = 7;
        fshape.dims = vec![2];
        fshape.int64_data = vec![1, k * 36];
        i.push(fshape);
        model(
            n,
            i,
            &[("x", &[1, 3, 12, 12])],
            &[("y", &[1, 10]), ("z", &[1, 3, 12, 12])],
            13,
        )
    };
    let fused = build(true).write_to_bytes().unwrap();
    let plain = build(false).write_to_bytes().unwrap();
    for sram in [16 << 10, 1 << 20] {
        let (stores, loads) = dma_counts(&fused, sram, true);
        let (plain_stores, plain_loads) = dma_counts(&plain, sram, true);
        let (unfused_stores, _) = dma_counts(&fused, sram, false);
        assert_eq!(
            stores, plain_stores,
            "{sram}: the chains store more than their results"
        );
        assert_eq!(
            loads, plain_loads,
            "{sram}: the chains load more than their operands"
        );
        assert!(
            unfused_stores > stores,
            "{sram}: {unfused_stores} <= {stores}"
        );
    }
    matches_ort("chains", &build(true), 1e-5);
}

/// A squeeze-excitation block as MobileNetV3 and PP-OCR's classifier
/// write it (conv -> hard-swish -> global average pool -> 1x1 conv ->
/// relu -> 1x1 conv -> hard-sigmoid -> Mul of the [N,C,1,1] scale onto the
/// feature map -> 1x1 projection conv), on two images, then a per-channel
/// scale and shift after an activation (relu -> Mul [C,1,1] -> Sub from a
/// [1,C,1,1] constant, which no folding into the conv can take) and a
/// per-channel gate that is a graph input ([N,C,1,1]). The SE multiply runs
/// on the projection conv's loaded bands and the rest in its epilogue: the
/// program stores as often as the same model with those ops replaced by
/// identities (the scale kept alive as an output), which fails without
/// the per-channel fusion, and matches onnxruntime.
#[test]
fn per_channel_operands_fuse_and_match_onnxruntime() {
    let (n, c, k, r, p) = (2i64, 3i64, 8i64, 2i64, 6i64);
    let inits = || {
        vec![
            tensor("w1", &[k, c, 3, 3], &weights((k * c * 9) as usize, 31)),
            tensor("b1", &[k], &weights(k as usize, 32)),
            tensor("ws1", &[r, k, 1, 1], &weights((r * k) as usize, 33)),
            tensor("bs1", &[r], &weights(r as usize, 34)),
            tensor("ws2", &[k, r, 1, 1], &weights((k * r) as usize, 35)),
            tensor("bs2", &[k], &weights(k as usize, 36)),
            tensor("wp", &[p, k, 1, 1], &weights((p * k) as usize, 37)),
            tensor("bp", &[p], &weights(p as usize, 38)),
            tensor("gamma", &[p, 1, 1], &weights(p as usize, 39)),
            tensor("beta", &[1, p, 1, 1], &weights(p as usize, 40)),
        ]
    };
    let build = |fused: bool| {
        let mut nodes = vec![
            node(
                "Conv",
                "c1",
                &["x", "w1", "b1"],
                &["y1"],
                &[("pads", A::Is(&[1, 1, 1, 1]))],
            ),
            node("HardSwish", "hs", &["y1"], &["h1"], &[]),
            node("GlobalAveragePool", "gap", &["h1"], &["g1"], &[]),
            node("Conv", "se1", &["g1", "ws1", "bs1"], &["s1"], &[]),
            node("Relu", "se_relu", &["s1"], &["s2"], &[]),
            node("Conv", "se2", &["s2", "ws2", "bs2"], &["s3"], &[]),
            node(
                "HardSigmoid",
                "se_hsig",
                &["s3"],
                &["s"],
                &[("alpha", A::F(0.2)), ("beta", A::F(0.5))],
            ),
        ];
        let tail = if fused {
            vec![
                node("Mul", "se_mul", &["s", "h1"], &["e1"], &[]),
                node("Conv", "proj", &["e1", "wp", "bp"], &["z1"], &[]),
                node("Relu", "z_relu", &["z1"], &["z2"], &[]),
                node("Mul", "z_scale", &["z2", "gamma"], &["z3"], &[]),
                node("Sub", "z_shift", &["beta", "z3"], &["z4"], &[]),
                node("Mul", "z_gate", &["z4", "gate"], &["y"], &[]),
            ]
        } else {
            vec![
                node("Identity", "se_id", &["h1"], &["e1"], &[]),
                node("Conv", "proj", &["e1", "wp", "bp"], &["z1"], &[]),
                node("Relu", "z_relu", &["z1"], &["y"], &[]),
            ]
        };
        nodes.extend(tail);
        let outputs: &[(&str, &[i64])] = if fused {
            &[("y", &[n, p, 10, 12])]
        } else {
            &[("y", &[n, p, 10, 12]), ("s", &[n, k, 1, 1])]
        };
        model(
            nodes,
            inits(),
            &[("x", &[n, c, 10, 12]), ("gate", &[n, p, 1, 1])],
            outputs,
            14,
        )
    };
    let fused = build(true).write_to_bytes().unwrap();
    let plain = build(false).write_to_bytes().unwrap();
    for sram in [16 << 10, 1 << 20] {
        let (stores, loads) = dma_counts(&fused, sram, true);
        let (plain_stores, _) = dma_counts(&plain, sram, true);
        let (unfused_stores, unfused_loads) = dma_counts(&fused, sram, false);
        assert_eq!(
            stores, plain_stores,
            "{sram}: the per-channel ops store more than the convs' results"
        );
        assert!(
            unfused_stores > stores && unfused_loads > loads,
            "{sram}: unfused {unfused_stores} stores, {unfused_loads} loads; fused {stores}, {loads}"
        );
    }
    matches_ort("per_channel", &build(true), 1e-5);

    // A depthwise conv's tile (channels in blocks of the input's): relu,
    // then a per-channel scale and shift, stores only its result.
    let dw = |chain: bool| {
        let mut nodes = vec![
            node(
                "Conv",
                "dw",
                &["x", "wd"],
                &["d1"],
                &[("group", A::I(k)), ("pads", A::Is(&[1, 1, 1, 1]))],
            ),
            node(
                "Relu",
                "d_relu",
                &["d1"],
                &[if chain { "d2" } else { "y" }],
                &[],
            ),
        ];
        if chain {
            nodes.push(node("Mul", "d_scale", &["gamma", "d2"], &["d3"], &[]));
            nodes.push(node("Add", "d_shift", &["d3", "beta"], &["y"], &[]));
        }
        model(
            nodes,
            vec![
                tensor("wd", &[k, 1, 3, 3], &weights((k * 9) as usize, 44)),
                tensor("gamma", &[k, 1, 1], &weights(k as usize, 45)),
                tensor("beta", &[1, k, 1, 1], &weights(k as usize, 46)),
            ],
            &[("x", &[n, k, 9, 7])],
            &[("y", &[n, k, 9, 7])],
            14,
        )
    };
    let (fused, plain) = (
        dw(true).write_to_bytes().unwrap(),
        dw(false).write_to_bytes().unwrap(),
    );
    for sram in [16 << 10, 1 << 20] {
        assert_eq!(
            dma_counts(&fused, sram, true).0,
            dma_counts(&plain, sram, true).0,
            "{sram}: depthwise"
        );
    }
    matches_ort("per_channel_dw", &dw(true), 1e-5);
}

/// Where no conv can take it, a squeeze-excitation multiply streams with
/// the ops after it (SE-ResNet: Mul of the [1,C,1,1] scale, then an
/// activation and the residual add of the block's input): one pass over
/// the feature map, loading it and the scale once and storing the result
/// once, as often as the multiply alone does (which fails without
/// per-channel operands in chains: the multiply is then a pass of its
/// own), and matching onnxruntime.
#[test]
fn per_channel_multiply_streams_with_its_chain() {
    let (c, r) = (8i64, 2i64);
    let inits = || {
        vec![
            tensor("w1", &[c, 3, 3, 3], &weights((c * 27) as usize, 41)),
            tensor("ws1", &[r, c, 1, 1], &weights((r * c) as usize, 42)),
            tensor("ws2", &[c, r, 1, 1], &weights((c * r) as usize, 43)),
        ]
    };
    let build = |chain: bool| {
        let mut nodes = vec![
            node(
                "Conv",
                "c1",
                &["x", "w1"],
                &["y1"],
                &[("pads", A::Is(&[1, 1, 1, 1]))],
            ),
            node("Relu", "r1", &["y1"], &["h1"], &[]),
            node("GlobalAveragePool", "gap", &["h1"], &["g1"], &[]),
            node("Conv", "se1", &["g1", "ws1"], &["s1"], &[]),
            node("Relu", "se_relu", &["s1"], &["s2"], &[]),
            node("Conv", "se2", &["s2", "ws2"], &["s3"], &[]),
            node("Sigmoid", "se_sig", &["s3"], &["s"], &[]),
        ];
        if chain {
            nodes.extend([
                node("Mul", "se_mul", &["s", "h1"], &["e1"], &[]),
                node(
                    "LeakyRelu",
                    "act",
                    &["e1"],
                    &["e2"],
                    &[("alpha", A::F(0.1))],
                ),
                node("Add", "res", &["e2", "h1"], &["y"], &[]),
            ]);
        } else {
            nodes.push(node("Mul", "se_mul", &["s", "h1"], &["y"], &[]));
        }
        model(
            nodes,
            inits(),
            &[("x", &[1, 3, 6, 8])],
            &[("y", &[1, c, 6, 8])],
            14,
        )
    };
    let fused = build(true).write_to_bytes().unwrap();
    let plain = build(false).write_to_bytes().unwrap();
    for sram in [16 << 10, 1 << 20] {
        let (stores, _) = dma_counts(&fused, sram, true);
        let (plain_stores, _) = dma_counts(&plain, sram, true);
        assert_eq!(
            stores, plain_stores,
            "{sram}: the multiply's chain stores more than its result"
        );
    }
    matches_ort("se_stream", &build(true), 1e-5);
}

/// Conv -> Relu -> MaxPool 2x2/2 (OriNet's blocks) and Conv -> LeakyRelu
/// -> Max(0) -> MaxPool 1x2/(1,2) (openWakeWord's), and a depthwise Conv
/// -> HardSwish (Add, Clip, Mul, Div) -> AveragePool 3x3/3 on odd sizes:
/// each pool runs on the conv's output tiles, so only the pooled results
/// reach memory, and the results match onnxruntime.
#[test]
fn conv_pool_fuses_and_matches_onnxruntime() {
    let inits = vec![
        tensor("w1", &[12, 3, 3, 3], &weights(12 * 27, 21)),
        tensor("b1", &[12], &weights(12, 22)),
        tensor("w2", &[16, 12, 3, 3], &weights(16 * 12 * 9, 23)),
        tensor("wd", &[16, 1, 3, 3], &weights(16 * 9, 24)),
        tensor("three", &[], &[3.0]),
        tensor("six", &[], &[6.0]),
        tensor("zero", &[], &[0.0]),
    ];
    let nodes = vec![
        node(
            "Conv",
            "c1",
            &["x", "w1", "b1"],
            &["y1"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node("Relu", "r1", &["y1"], &["a1"], &[]),
        node(
            "MaxPool",
            "p1",
            &["a1"],
            &["q1"],
            &[
                ("kernel_shape", A::Is(&[2, 2])),
                ("strides", A::Is(&[2, 2])),
            ],
        ),
        node(
            "Conv",
            "c2",
            &["q1", "w2"],
            &["y2"],
            &[("pads", A::Is(&[0, 1, 0, 1]))],
        ),
        node("LeakyRelu", "l2", &["y2"], &["a2"], &[("alpha", A::F(0.2))]),
        node("Max", "m2", &["a2", "zero"], &["b2"], &[]),
        node(
            "MaxPool",
            "p2",
            &["b2"],
            &["q2"],
            &[
                ("kernel_shape", A::Is(&[1, 2])),
                ("strides", A::Is(&[1, 2])),
            ],
        ),
        node(
            "Conv",
            "dw",
            &["q2", "wd"],
            &["y3"],
            &[("group", A::I(16)), ("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node("Add", "h_a", &["y3", "three"], &["t1"], &[]),
        node("Clip", "h_c", &["t1", "zero", "six"], &["t2"], &[]),
        node("Mul", "h_m", &["y3", "t2"], &["t3"], &[]),
        node("Div", "h_d", &["t3", "six"], &["h3"], &[]),
        node(
            "AveragePool",
            "p3",
            &["h3"],
            &["y"],
            &[
                ("kernel_shape", A::Is(&[3, 3])),
                ("strides", A::Is(&[3, 3])),
            ],
        ),
    ];
    // 30x29 -> pool 15x14 -> conv 13x14 -> pool 13x7 -> pool 4x2.
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 30, 29])],
        &[("y", &[1, 16, 4, 2])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    let g = import(&bytes, None, &Options::default()).unwrap().graph;
    let pooled = result_bytes(&g, |op| matches!(op, npu::ir::Op::Pool { .. }));
    for sram in [16 << 10, 1 << 20] {
        assert_eq!(
            stored_bytes(&g, sram),
            pooled,
            "{sram}: a conv's output reached memory"
        );
    }
    matches_ort("convpool", &m, 1e-5);
}

/// ResNet's stem in small (Conv 7x7/2 pad 3 -> Relu -> MaxPool 3x3/2 pad
/// 1), then a Conv 3x3/1 pad 1 -> MaxPool 3x3/1 pad 1 on odd sizes whose
/// windows read the padding on every side: the pools' windows straddle
/// the convs' bands and pad, yet each pool runs on its conv's output
/// tiles (only the pooled results reach memory), and the results match
/// onnxruntime.
#[test]
fn padded_max_pools_fuse_and_match_onnxruntime() {
    let inits = vec![
        tensor("w1", &[8, 3, 7, 7], &weights(8 * 3 * 49, 41)),
        tensor("b1", &[8], &weights(8, 42)),
        tensor("w2", &[6, 8, 3, 3], &weights(6 * 8 * 9, 43)),
    ];
    let pool = |name: &str, i: &str, o: &str, s: &'static [i64]| {
        node(
            "MaxPool",
            name,
            &[i],
            &[o],
            &[
                ("kernel_shape", A::Is(&[3, 3])),
                ("strides", A::Is(s)),
                ("pads", A::Is(&[1, 1, 1, 1])),
            ],
        )
    };
    let nodes = vec![
        node(
            "Conv",
            "c1",
            &["x", "w1", "b1"],
            &["y1"],
            &[("pads", A::Is(&[3, 3, 3, 3])), ("strides", A::Is(&[2, 2]))],
        ),
        node("Relu", "r1", &["y1"], &["a1"], &[]),
        pool("p1", "a1", "q1", &[2, 2]),
        node(
            "Conv",
            "c2",
            &["q1", "w2"],
            &["y2"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        pool("p2", "y2", "y", &[1, 1]),
    ];
    // 46x42 -> conv 23x21 -> pool 12x11 -> conv 12x11 -> pool 12x11.
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 46, 42])],
        &[("y", &[1, 6, 12, 11])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    let g = import(&bytes, None, &Options::default()).unwrap().graph;
    let pooled = result_bytes(&g, |op| matches!(op, npu::ir::Op::Pool { .. }));
    for sram in [16 << 10, 1 << 20] {
        assert_eq!(
            stored_bytes(&g, sram),
            pooled,
            "{sram}: a conv's output reached memory"
        );
    }
    matches_ort("padpool", &m, 1e-5);
}

/// Convolutions with asymmetric padding (explicit unequal pads, SAME_UPPER
/// with even kernels or strides, SAME_LOWER, with dilation, depthwise):
/// the importer pads explicitly and the compiler folds each pad into the
/// conv reading it, so the padded tensors never reach memory (only the
/// convs' results are stored), and the results match onnxruntime.
#[test]
fn asymmetric_conv_padding_is_native_and_matches_onnxruntime() {
    let inits = vec![
        tensor("w1", &[6, 3, 3, 3], &weights(6 * 27, 31)),
        tensor("b1", &[6], &weights(6, 32)),
        tensor("w2", &[6, 6, 4, 4], &weights(6 * 6 * 16, 33)),
        tensor("wd", &[6, 1, 3, 3], &weights(6 * 9, 34)),
        tensor("w4", &[5, 6, 2, 3], &weights(5 * 6 * 6, 35)),
    ];
    let nodes = vec![
        // 17x16 -> 9x8: pads 0 top/left, 1 bottom/right.
        node(
            "Conv",
            "c1",
            &["x", "w1", "b1"],
            &["y1"],
            &[
                ("auto_pad", A::S("SAME_UPPER")),
                ("strides", A::Is(&[2, 2])),
            ],
        ),
        // Even kernel, stride 1: pads 1 and 2.
        node(
            "Conv",
            "c2",
            &["y1", "w2"],
            &["y2"],
            &[("auto_pad", A::S("SAME_LOWER"))],
        ),
        node("Relu", "r2", &["y2"], &["a2"], &[]),
        // Depthwise, dilation 2, explicit pads [top 2, left 0, bottom 1, right 3].
        node(
            "Conv",
            "dw",
            &["a2", "wd"],
            &["y3"],
            &[
                ("group", A::I(6)),
                ("dilations", A::Is(&[2, 2])),
                ("pads", A::Is(&[2, 0, 1, 3])),
            ],
        ),
        // Right padding larger than the left, stride 1: pads [0, 1, 1, 2].
        node(
            "Conv",
            "c4",
            &["y3", "w4"],
            &["y"],
            &[("pads", A::Is(&[0, 1, 1, 2]))],
        ),
    ];
    let m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 17, 16])],
        &[("y", &[1, 5, 8, 8])],
        13,
    );
    let bytes = m.write_to_bytes().unwrap();
    let g = import(&bytes, None, &Options::default()).unwrap().graph;
    let pads = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, npu::ir::Op::Pad { .. }))
        .count();
    assert_eq!(pads, 4, "the importer pads each conv explicitly");
    let convs = result_bytes(&g, |op| matches!(op, npu::ir::Op::Conv2d { .. }));
    for sram in [8 << 10, 1 << 20] {
        assert_eq!(
            stored_bytes(&g, sram),
            convs,
            "{sram}: a padded copy reached memory"
        );
    }
    matches_ort("asympad", &m, 1e-5);
}

/// A float16 initializer: the f32 values rounded to float16 (the `half`
/// crate), as raw little-endian bit patterns.
fn f16_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = 10;
    t.raw_data = data
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    t
}

/// Declare graph input or output `name` of `m` with ONNX element type `t`.
fn set_elem_type(m: &mut ModelProto, name: &str, t: i32) {
    let g = m.graph.as_mut().unwrap();
    let vi = g
        .input
        .iter_mut()
        .chain(g.output.iter_mut())
        .find(|v| v.name == name)
        .unwrap();
    match vi.type_.as_mut().and_then(|t| t.value.as_mut()) {
        Some(type_proto::Value::TensorType(tt)) => tt.elem_type = t,
        _ => unreachable!(),
    }
}

/// A float16 model as exporters write it (`model.half()`): a float16 graph
/// input, float16 conv weights and bias, float16 graph outputs, and Casts
/// to float and back around an f32 part (one mid-way, whose rounding error
/// `d` is an output: without the rounding it would be 0, off by up to 1e-3
/// from onnxruntime's). The IR computes in f32 (the
/// weights widened at import, the input and outputs converted on the
/// device), onnxruntime in float16 per op: they agree within float16's
/// rounding (here y and z are equal, d within 5e-7).
#[test]
fn float16_model_matches_onnxruntime() {
    let inits = vec![
        f16_tensor("w", &[4, 3, 3, 3], &weights(108, 61)),
        f16_tensor("b", &[4], &[0.25, -0.5, 0.125, 0.0]),
        tensor("s", &[1], &[1.5]),
    ];
    let nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["c"],
            &[("pads", A::Is(&[1, 1, 1, 1]))],
        ),
        node("Relu", "relu", &["c"], &["r"], &[]),
        node("Cast", "up", &["r"], &["rf"], &[("to", A::I(1))]),
        node("Mul", "mul", &["rf", "s"], &["m"], &[]),
        node("Cast", "down", &["m"], &["y"], &[("to", A::I(10))]),
        node("Sigmoid", "sig", &["r"], &["z"], &[]),
        // A Cast to float16 inside the f32 part rounds: d = m - f16(m),
        // the rounding error, exact in f32 on both sides.
        node("Cast", "mid", &["m"], &["mh"], &[("to", A::I(10))]),
        node("Cast", "back", &["mh"], &["mf"], &[("to", A::I(1))]),
        node("Sub", "err", &["m", "mf"], &["d"], &[]),
    ];
    let mut m = model(
        nodes,
        inits,
        &[("x", &[1, 3, 8, 8])],
        &[
            ("y", &[1, 4, 8, 8]),
            ("z", &[1, 4, 8, 8]),
            ("d", &[1, 4, 8, 8]),
        ],
        13,
    );
    for v in ["x", "y", "z"] {
        set_elem_type(&mut m, v, 10);
    }
    let bytes = m.write_to_bytes().unwrap();
    let imported = import(&bytes, None, &Options::default()).unwrap();
    let dtypes: Vec<npu::DType> = imported
        .inputs
        .iter()
        .chain(&imported.outputs)
        .map(|io| io.ty.dtype)
        .collect();
    use npu::DType::{F16, F32};
    assert_eq!(dtypes, [F16, F16, F16, F32]);
    // The weights are f32 constants: widened at import.
    assert!(imported
        .graph
        .nodes()
        .iter()
        .all(|n| !matches!(n.op, npu::ir::Op::Constant { .. }) || n.ty.dtype == npu::DType::F32));

    let d = tmpdir("float16");
    let path = d.join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let case = Case {
        file: "float16",
        shapes: &[],
        atol: 1e-5,
        rtol: 1e-3,
    };
    let (code, report) = run_against_ort(&case, &bytes, &d, &path, "ops");
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(
        code, 0,
        "float16: the NPU disagrees with onnxruntime:\n{report}"
    );
}

/// bfloat16 (which numpy, and so the onnxruntime comparison, lacks): a
/// bfloat16 input plus a bfloat16 initializer, to a bfloat16 output, with
/// values whose sums are exact in bfloat16, checked by hand.
#[test]
fn bfloat16_input_initializer_and_output() {
    let bf = |x: f32| half::bf16::from_f32(x).to_bits();
    let mut b = TensorProto::new();
    b.name = "b".into();
    b.dims = vec![4];
    b.data_type = 16;
    // Typed data: bit patterns in int32_data, as ONNX keeps them.
    b.int32_data = [1.0f32, -2.0, 0.5, 256.0]
        .iter()
        .map(|&x| bf(x) as i32)
        .collect();
    let nodes = vec![node("Add", "add", &["x", "b"], &["y"], &[])];
    let mut m = model(nodes, vec![b], &[("x", &[2, 4])], &[("y", &[2, 4])], 13);
    set_elem_type(&mut m, "x", 16);
    set_elem_type(&mut m, "y", 16);
    let imported = import(&m.write_to_bytes().unwrap(), None, &Options::default()).unwrap();
    assert_eq!(imported.inputs[0].ty.dtype, npu::DType::Bf16);
    assert_eq!(imported.outputs[0].ty.dtype, npu::DType::Bf16);
    let x = [3.0f32, 4.0, -0.25, 2.0, -1.0, 2.0, 0.5, -256.0];
    let inputs = std::collections::HashMap::from([(
        imported.inputs[0].ir_name.clone(),
        npu::TensorData::Bf16(x.iter().map(|&v| bf(v)).collect()),
    )]);
    let mut s = npu::Session::model(64 << 10);
    let k = s.compile(imported.graph.clone()).unwrap();
    let run = s.run(&k, &inputs).unwrap();
    let want = [4.0f32, 2.0, 0.25, 258.0, 0.0, 0.0, 1.0, 0.0];
    assert_eq!(
        run.outputs[&imported.outputs[0].ir_name],
        npu::TensorData::Bf16(want.iter().map(|&v| bf(v)).collect())
    );
}
