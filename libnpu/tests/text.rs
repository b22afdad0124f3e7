//! The kernel text form: round trips and error messages.

use npu::text::{parse, print};

const KERNEL: &str = "\
input a: f32[64,128]
input w: i8[128,32] q(axis=1, scales=[0.5, 0.25, 0.125, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
input x: i8[64,128] q(scale=0.02, zp=0)
input b: i32[32]
input v: f32[128]
y: i8 q(scale=0.1, zp=-4) = gemm(x, w, bias=b) |> relu |> clamp(lo=-1.5, hi=6)
s = add(a, v) |> sigmoid
t = softmax(s, axis=1)
output y, t
";

#[test]
fn round_trip() {
    let g = parse(KERNEL).unwrap();
    let printed = print(&g);
    let g2 = parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(g, g2);
    assert_eq!(print(&g2), printed);
    assert!(
        printed.contains("y.1: i8 q(scale=0.1, zp=-4) = gemm(x, w, bias=b)"),
        "{printed}"
    );
}

#[test]
fn small_cnn_example_round_trips() {
    let g = parse(include_str!("../examples/small_cnn.npu")).unwrap();
    assert_eq!(parse(&print(&g)).unwrap(), g);
}

fn err(src: &str) -> String {
    parse(src).unwrap_err().to_string()
}

#[test]
fn errors_point_at_line_and_column() {
    assert_eq!(
        err("input a: f32[2,3]\nb = relu(c)\noutput b"),
        "2:10: `c` is not defined"
    );
    assert_eq!(
        err("input a: f33[2]"),
        "1:10: unknown dtype `f33`; use f32, i8, i32, u8, f16 or bf16"
    );
    assert!(
        err("input a: f32[2,3]\ninput b: f32[4,5]\nc = gemm(a, b)\noutput c")
            .starts_with("3:5: `c` (gemm): inner dimensions differ")
    );
    assert!(err("input a: f32[2]\nb = frob(a)\noutput b").starts_with("2:5: unknown op `frob`"));
    assert!(err("input a: f32[2]\nb = relu(a) $\noutput b")
        .starts_with("2:13: unexpected character `$`"));
    assert!(err("input a: i8[2]\noutput a").contains("needs quantization parameters"));
    assert!(err("input a: f32[2]\nb = relu(a)").contains("no outputs"));
    assert!(
        err("input a: f32[2]\nb = softmax(a, axis=3)\noutput b").contains("axis 3 is out of range")
    );
    assert!(err("input a: f32[2]\nb = relu(a, lo=3)\noutput b")
        .starts_with("2:5: `relu` has no parameter `lo`"));
    assert!(err("input a: f32[2]\ninput a: f32[3]\noutput a").contains("defined twice"));
}

/// Found by the `text` fuzz target: a scale too large for an f32 parsed as
/// infinity and printed as `inf`, which does not parse back.
#[test]
fn scales_are_finite_and_positive() {
    let big = "7".repeat(60);
    assert_eq!(
        err(&format!("input a: i8[2] q(scale={big}.5, zp=0)\noutput a")),
        "1:24: a scale must be a finite number above zero, not inf"
    );
    assert!(err("input a: i8[2] q(scale=0, zp=0)\noutput a").contains("above zero, not 0"));
    assert!(err("input a: i8[2] q(scale=-0.5)\noutput a").contains("above zero, not -0.5"));
    assert!(err("input w: i8[2,2] q(axis=1, scales=[0.5, 0])\noutput w")
        .starts_with("1:41: a scale must be a finite number above zero"));
}

#[test]
fn int8_annotations_round_trip() {
    let src = "\
input a: i8[4,30] q(scale=0.05, zp=3)
input b: i8[30] q(scale=0.02, zp=-7)
s: i8 q(scale=0.08, zp=1) = add(a, b) |> sigmoid |> relu
f = dequantize(s) |> softmax(axis=1)
r: i8 q(scale=0.03, zp=2) = quantize(f) |> reshape([120])
output r
";
    let g = parse(src).unwrap();
    let printed = print(&g);
    assert_eq!(parse(&printed).unwrap(), g, "{printed}");
    assert!(
        printed.contains("s.2: i8 q(scale=0.08, zp=1) = sigmoid(s.1)"),
        "{printed}"
    );
}

/// Found by the `text` fuzz target: window sizes that overflow are an
/// error on their line, not an arithmetic panic.
#[test]
fn absurd_window_sizes_are_errors() {
    let src = "input x: f32[1,4,19,17]\ninput w: f32[8,4,3,3]\nc = conv2d(x, w, stride=1, pad=1, dilation=[1,10248191115206086198])\noutput c\n";
    let e = err(src);
    assert!(e.starts_with("3:"), "{e}");
    assert!(e.contains("too large"), "{e}");
    let src = "input x: f32[1,4,19,17]\ninput w: f32[8,4,3,3]\nc = conv2d(x, w, pad=9223372036854775807)\noutput c\n";
    assert!(err(src).contains("too large"));
}

/// Shapes whose element count or byte size overflows are refused, not
/// multiplied.
#[test]
fn absurd_shapes_are_errors() {
    for src in [
        "input x: f32[4294967296,4294967296,4294967296]\noutput x\n",
        "input x: f32[4611686018427387904]\ny = relu(x)\noutput y\n",
    ] {
        let e = err(src);
        assert!(
            e.starts_with("1:") && e.contains("more elements than fit in memory"),
            "{e}"
        );
    }
}
