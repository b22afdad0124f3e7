//! ResNet-18 and MobileNetV2 (f32, batch 1, NCHW) built in libnpu's IR,
//! with He-initialised weights, for the model tests and the figures
//! example. Batch norm is written as it is exported for inference: a
//! per-channel multiply and add after a bias-less convolution.
#![allow(dead_code)]

use npu::ir::{BinaryOp, Graph, Op, PoolKind, Quant, UnaryOp, ValueId, Window};
use npu::{DType, TensorData, TensorType};
use std::collections::HashMap;

/// How a builder turns weights into graph values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Weights {
    /// Graph inputs, bound at run time (the old way; "before" figures).
    Inputs,
    /// Graph constants, packed at compile time.
    Constants,
}

pub struct Net {
    pub g: Graph,
    /// Values of the weights when they are inputs, and of the image.
    pub feeds: HashMap<String, TensorData>,
    /// Multiply-accumulates of the convolutions and gemms.
    pub macs: u64,
    mode: Weights,
    seed: u64,
    n: usize,
}

impl Net {
    pub fn new(mode: Weights, seed: u64) -> Net {
        Net {
            g: Graph::new(),
            feeds: HashMap::new(),
            macs: 0,
            mode,
            seed: seed | 1,
            n: 0,
        }
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.seed;
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn name(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}", self.n)
    }

    /// A tensor of `values` as a weight of the graph.
    pub fn tensor(&mut self, what: &str, shape: &[usize], values: Vec<f32>) -> ValueId {
        let name = self.name(what);
        let ty = TensorType::new(DType::F32, shape);
        match self.mode {
            Weights::Inputs => {
                self.feeds.insert(name.clone(), TensorData::F32(values));
                self.g.input(&name, ty).expect("weight input")
            }
            Weights::Constants => self
                .g
                .constant(&name, ty, TensorData::F32(values))
                .expect("weight constant"),
        }
    }

    /// He (Kaiming) uniform: variance 2 / fan_in.
    pub fn he(&mut self, what: &str, shape: &[usize], fan_in: usize) -> ValueId {
        let a = (6.0 / fan_in as f32).sqrt();
        let n: usize = shape.iter().product();
        let v = (0..n).map(|_| self.uniform() * a).collect();
        self.tensor(what, shape, v)
    }

    pub fn image(&mut self, c: usize, hw: usize) -> ValueId {
        let n = c * hw * hw;
        let v = (0..n).map(|_| self.uniform()).collect();
        self.feeds.insert("image".into(), TensorData::F32(v));
        self.g
            .input("image", TensorType::new(DType::F32, &[1, c, hw, hw]))
            .expect("image")
    }

    fn op(&mut self, what: &str, op: Op) -> ValueId {
        let name = self.name(what);
        self.g
            .add(&name, op, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// conv (no bias) -> batch norm as mul/add -> activation.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn(
        &mut self,
        x: ValueId,
        k: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        act: Option<UnaryOp>,
        gamma: f32,
    ) -> ValueId {
        let c = self.g.ty(x).shape[1];
        let cg = c / groups;
        let w = self.he("w", &[k, cg, kernel, kernel], cg * kernel * kernel);
        let pad = kernel / 2;
        let window = Window {
            stride: [stride, stride],
            padding: [pad, pad],
            dilation: [1, 1],
        };
        let y = self.op(
            "conv",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: None,
                window,
                groups,
            },
        );
        let s = self.g.ty(y).shape.clone();
        self.macs += (s[1] * s[2] * s[3] * cg * kernel * kernel) as u64;
        let scale: Vec<f32> = (0..k)
            .map(|_| gamma * (1.0 + 0.25 * self.uniform()))
            .collect();
        let shift: Vec<f32> = (0..k).map(|_| 0.1 * self.uniform()).collect();
        let sv = self.tensor("bn_scale", &[1, k, 1, 1], scale);
        let bv = self.tensor("bn_shift", &[1, k, 1, 1], shift);
        let y = self.op(
            "bn_mul",
            Op::Binary {
                op: BinaryOp::Mul,
                a: y,
                b: sv,
            },
        );
        let y = self.op(
            "bn_add",
            Op::Binary {
                op: BinaryOp::Add,
                a: y,
                b: bv,
            },
        );
        match act {
            Some(op) => self.op("act", Op::Unary { op, x: y }),
            None => y,
        }
    }

    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.op(
            "add",
            Op::Binary {
                op: BinaryOp::Add,
                a,
                b,
            },
        )
    }

    pub fn relu(&mut self, x: ValueId) -> ValueId {
        self.op(
            "relu",
            Op::Unary {
                op: UnaryOp::Relu,
                x,
            },
        )
    }

    /// Global average pool, flatten, fully connected layer.
    pub fn head(&mut self, x: ValueId, classes: usize) -> ValueId {
        let s = self.g.ty(x).shape.clone();
        let p = self.op(
            "gap",
            Op::Pool {
                kind: PoolKind::Avg,
                x,
                kernel: [s[2], s[3]],
                window: Window::default(),
            },
        );
        let f = self.op(
            "flatten",
            Op::Reshape {
                x: p,
                shape: vec![1, s[1]],
            },
        );
        let w = self.he("fc_w", &[s[1], classes], s[1]);
        let b: Vec<f32> = (0..classes).map(|_| 0.01 * self.uniform()).collect();
        let b = self.tensor("fc_b", &[classes], b);
        self.macs += (s[1] * classes) as u64;
        let y = self.op(
            "fc",
            Op::Gemm {
                a: f,
                b: w,
                bias: Some(b),
                trans_a: false,
                trans_b: false,
            },
        );
        self.g.output(y).expect("output");
        y
    }
}

pub const RELU6: UnaryOp = UnaryOp::Clamp { lo: 0.0, hi: 6.0 };

/// ResNet-18 on a `hw` x `hw` RGB image.
pub fn resnet18(hw: usize, mode: Weights) -> Net {
    let mut n = Net::new(mode, 18);
    let relu = Some(UnaryOp::Relu);
    let x = n.image(3, hw);
    let x = n.conv_bn(x, 64, 7, 2, 1, relu, 1.0);
    let window = Window {
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let mut x = n.op(
        "maxpool",
        Op::Pool {
            kind: PoolKind::Max,
            x,
            kernel: [3, 3],
            window,
        },
    );
    let mut c = 64;
    for (stage, k) in [64, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let y = n.conv_bn(x, k, 3, stride, 1, relu, 1.0);
            // The second norm of a residual branch starts small, so the sum
            // stays in range over eight blocks.
            let y = n.conv_bn(y, k, 3, 1, 1, None, 0.5);
            let skip = if stride != 1 || c != k {
                n.conv_bn(x, k, 1, stride, 1, None, 0.5)
            } else {
                x
            };
            let s = n.add(y, skip);
            x = n.relu(s);
            c = k;
        }
    }
    n.head(x, 1000);
    n
}

/// MobileNetV2 (width 1.0) on a `hw` x `hw` RGB image.
pub fn mobilenet_v2(hw: usize, mode: Weights) -> Net {
    let mut n = Net::new(mode, 2);
    let act = Some(RELU6);
    let x = n.image(3, hw);
    let mut x = n.conv_bn(x, 32, 3, 2, 1, act, 1.0);
    let mut c = 32;
    for (t, k, reps, s) in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        for i in 0..reps {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            let mut y = x;
            if t != 1 {
                y = n.conv_bn(y, hidden, 1, 1, 1, act, 1.0);
            }
            y = n.conv_bn(y, hidden, 3, stride, hidden, act, 1.0);
            y = n.conv_bn(y, k, 1, 1, 1, None, 0.5);
            x = if stride == 1 && c == k {
                n.add(x, y)
            } else {
                y
            };
            c = k;
        }
    }
    let x = n.conv_bn(x, 1280, 1, 1, 1, act, 1.0);
    n.head(x, 1000);
    n
}

/// Scale of every int8 activation of the int8 networks (He-initialised
/// layers keep the activations' spread, so one scale fits them all).
pub const Q_SCALE: f32 = 0.05;

impl Net {
    fn act_quant(&self, zp: i8) -> Quant {
        Quant::PerTensor {
            scale: Q_SCALE,
            zero_point: zp,
        }
    }

    fn qop(&mut self, what: &str, op: Op, q: Option<Quant>) -> ValueId {
        let name = self.name(what);
        self.g.add(&name, op, q).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An int8 image (values uniform over the whole range) with zero
    /// point `zp`.
    pub fn qimage(&mut self, c: usize, hw: usize, zp: i8) -> ValueId {
        let n = c * hw * hw;
        let v = (0..n).map(|_| (self.next() >> 56) as u8 as i8).collect();
        self.feeds.insert("image".into(), TensorData::I8(v));
        let q = self.act_quant(zp);
        self.g
            .input("image", TensorType::quantized(&[1, c, hw, hw], q))
            .expect("image")
    }

    /// int8 conv with per-channel weights (He-scaled), an i32 bias (the
    /// folded batch norm) and a fused activation; the result has zero
    /// point `zp`.
    #[allow(clippy::too_many_arguments)]
    pub fn qconv(
        &mut self,
        x: ValueId,
        k: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        act: Option<UnaryOp>,
        gamma: f32,
        zp: i8,
    ) -> ValueId {
        let c = self.g.ty(x).shape[1];
        let cg = c / groups;
        let fan_in = cg * kernel * kernel;
        let a = (6.0 / fan_in as f32).sqrt() * gamma;
        let sx = Q_SCALE;
        let scales: Vec<f32> = (0..k)
            .map(|_| a / 127.0 * (1.0 + 0.25 * self.uniform()))
            .collect();
        let wn = k * fan_in;
        let wv: Vec<i8> = (0..wn)
            .map(|_| (self.uniform() * 127.0).round() as i8)
            .collect();
        let name = self.name("w");
        let w = self
            .g
            .constant(
                &name,
                TensorType::quantized(
                    &[k, cg, kernel, kernel],
                    Quant::PerChannel {
                        scales: scales.clone(),
                        axis: 0,
                        zero_points: vec![],
                    },
                ),
                TensorData::I8(wv),
            )
            .expect("weight");
        let bias: Vec<i32> = scales
            .iter()
            .map(|s| (0.1 * self.uniform() / (sx * s)).round() as i32)
            .collect();
        let name = self.name("b");
        let b = self
            .g
            .constant(
                &name,
                TensorType::new(DType::I32, &[k]),
                TensorData::I32(bias),
            )
            .expect("bias");
        let pad = kernel / 2;
        let window = Window {
            stride: [stride, stride],
            padding: [pad, pad],
            dilation: [1, 1],
        };
        let q = self.act_quant(zp);
        let y = self.qop(
            "conv",
            Op::Conv2d {
                input: x,
                weight: w,
                bias: Some(b),
                window,
                groups,
            },
            Some(q),
        );
        let s = self.g.ty(y).shape.clone();
        self.macs += (s[1] * s[2] * s[3] * cg * kernel * kernel) as u64;
        match act {
            Some(op) => self.qop("act", Op::Unary { op, x: y }, None),
            None => y,
        }
    }

    pub fn qadd(&mut self, a: ValueId, b: ValueId, zp: i8) -> ValueId {
        let q = self.act_quant(zp);
        self.qop(
            "add",
            Op::Binary {
                op: BinaryOp::Add,
                a,
                b,
            },
            Some(q),
        )
    }

    /// Global average pool, flatten, int8 fully connected layer.
    pub fn qhead(&mut self, x: ValueId, classes: usize, zp: i8) -> ValueId {
        let s = self.g.ty(x).shape.clone();
        let p = self.qop(
            "gap",
            Op::Pool {
                kind: PoolKind::Avg,
                x,
                kernel: [s[2], s[3]],
                window: Window::default(),
            },
            None,
        );
        let f = self.qop(
            "flatten",
            Op::Reshape {
                x: p,
                shape: vec![1, s[1]],
            },
            None,
        );
        let a = (6.0 / s[1] as f32).sqrt();
        let scales: Vec<f32> = (0..classes).map(|_| a / 127.0).collect();
        let wv: Vec<i8> = (0..s[1] * classes)
            .map(|_| (self.uniform() * 127.0).round() as i8)
            .collect();
        let name = self.name("fc_w");
        let w = self
            .g
            .constant(
                &name,
                TensorType::quantized(&[s[1], classes], Quant::per_channel(scales, 1)),
                TensorData::I8(wv),
            )
            .expect("fc weight");
        self.macs += (s[1] * classes) as u64;
        let q = self.act_quant(zp);
        let y = self.qop(
            "fc",
            Op::Gemm {
                a: f,
                b: w,
                bias: None,
                trans_a: false,
                trans_b: false,
            },
            Some(q),
        );
        self.g.output(y).expect("output");
        y
    }
}

/// ResNet-18, int8 (per-channel weights, per-tensor activations with zero
/// point `zp`), on a `hw` x `hw` image.
pub fn resnet18_int8(hw: usize, zp: i8) -> Net {
    let mut n = Net::new(Weights::Constants, 18);
    let relu = Some(UnaryOp::Relu);
    let x = n.qimage(3, hw, zp);
    let x = n.qconv(x, 64, 7, 2, 1, relu, 1.0, zp);
    let window = Window {
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let mut x = n.qop(
        "maxpool",
        Op::Pool {
            kind: PoolKind::Max,
            x,
            kernel: [3, 3],
            window,
        },
        None,
    );
    let mut c = 64;
    for (stage, k) in [64, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let y = n.qconv(x, k, 3, stride, 1, relu, 1.0, zp);
            let y = n.qconv(y, k, 3, 1, 1, None, 0.5, zp);
            let skip = if stride != 1 || c != k {
                n.qconv(x, k, 1, stride, 1, None, 0.5, zp)
            } else {
                x
            };
            let s = n.qadd(y, skip, zp);
            x = n.qop(
                "relu",
                Op::Unary {
                    op: UnaryOp::Relu,
                    x: s,
                },
                None,
            );
            c = k;
        }
    }
    n.qhead(x, 1000, zp);
    n
}

/// MobileNetV2, int8 like [`resnet18_int8`].
pub fn mobilenet_v2_int8(hw: usize, zp: i8) -> Net {
    let mut n = Net::new(Weights::Constants, 2);
    let act = Some(RELU6);
    let x = n.qimage(3, hw, zp);
    let mut x = n.qconv(x, 32, 3, 2, 1, act, 1.0, zp);
    let mut c = 32;
    for (t, k, reps, s) in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        for i in 0..reps {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            let mut y = x;
            if t != 1 {
                y = n.qconv(y, hidden, 1, 1, 1, act, 1.0, zp);
            }
            y = n.qconv(y, hidden, 3, stride, hidden, act, 1.0, zp);
            y = n.qconv(y, k, 1, 1, 1, None, 0.5, zp);
            x = if stride == 1 && c == k {
                n.qadd(x, y, zp)
            } else {
                y
            };
            c = k;
        }
    }
    let x = n.qconv(x, 1280, 1, 1, 1, act, 1.0, zp);
    n.qhead(x, 1000, zp);
    n
}

/// Shape of a transformer encoder block.
#[derive(Clone, Copy, Debug)]
pub struct EncoderCfg {
    pub seq: usize,
    pub d_model: usize,
    pub heads: usize,
    pub d_ff: usize,
    pub vocab: usize,
    pub epsilon: f32,
}

pub const ENCODER: EncoderCfg = EncoderCfg {
    seq: 32,
    d_model: 128,
    heads: 4,
    d_ff: 512,
    vocab: 1000,
    epsilon: 1e-5,
};

/// A transformer encoder block and what an independent reference needs:
/// the token ids and every weight in the textbook layout (`wq` is
/// `[d_model, d_model]`, head h its columns `h * dh ..`), in order.
pub struct Encoder {
    pub net: Net,
    pub cfg: EncoderCfg,
    pub ids: Vec<i32>,
    pub weights: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
}

/// A pre-norm transformer encoder block on `cfg.seq` token ids:
/// embedding gather + positional add -> layer norm -> multi-head
/// self-attention -> residual -> layer norm -> MLP with gelu (erf form)
/// -> residual. He-initialised weights.
///
/// The heads never need a transpose: Q and K are `[heads, seq, dh]`
/// batched matmuls of the normed x (shared 2-D operand) by per-head weight
/// slices; V is built transposed, `V^T = Wv_h^T x^T` (`[heads, dh, seq]`,
/// B transposed), so the attention output comes out transposed too,
/// `O_h^T = V_h^T P_h^T` (batched, B transposed), and `[heads, dh, seq]`
/// reshaped to `[d_model, seq]` is the concatenation of the heads,
/// transposed: the output projection is a gemm with `trans_a`.
pub fn encoder(cfg: EncoderCfg, mode: Weights) -> Encoder {
    let EncoderCfg {
        seq: s,
        d_model: d,
        heads: h,
        d_ff: f,
        vocab,
        epsilon,
    } = cfg;
    let dh = d / h;
    assert_eq!(dh * h, d, "d_model must be a multiple of heads");
    let mut n = Net::new(mode, 0x7f4a_7c15);
    let mut weights = Vec::new();
    let uniform = |n: &mut Net, len: usize, a: f32| -> Vec<f32> {
        (0..len).map(|_| a * n.uniform()).collect()
    };
    // He uniform: variance 2 / fan_in.
    let he = |fan_in: usize| (6.0 / fan_in as f32).sqrt();
    let ids: Vec<i32> = (0..s).map(|_| (n.next() % vocab as u64) as i32).collect();
    let idv =
        n.g.input("ids", TensorType::new(DType::I32, &[s]))
            .expect("ids");
    n.feeds.insert("ids".into(), TensorData::I32(ids.clone()));
    // Unit-variance embeddings; sinusoidal positions (Vaswani et al.).
    let emb = uniform(&mut n, vocab * d, 3f32.sqrt());
    let pos: Vec<f32> = (0..s * d)
        .map(|i| {
            let (p, c) = ((i / d) as f32, i % d);
            let angle = p / 10000f32.powf((2 * (c / 2)) as f32 / d as f32);
            if c % 2 == 0 {
                angle.sin()
            } else {
                angle.cos()
            }
        })
        .collect();
    let norm = |n: &mut Net| {
        let g: Vec<f32> = (0..d).map(|_| 1.0 + 0.1 * n.uniform()).collect();
        let b: Vec<f32> = (0..d).map(|_| 0.1 * n.uniform()).collect();
        (g, b)
    };
    let (g1, b1) = norm(&mut n);
    let (g2, b2) = norm(&mut n);
    let wq = uniform(&mut n, d * d, he(d));
    let wk = uniform(&mut n, d * d, he(d));
    let wv = uniform(&mut n, d * d, he(d));
    // The attention output and the MLP's second layer add to the residual:
    // scaled down like the second norm of a ResNet branch.
    let wo = uniform(&mut n, d * d, 0.5 * he(d));
    let bo = uniform(&mut n, d, 0.05);
    let w1 = uniform(&mut n, d * f, he(d));
    let bf1 = uniform(&mut n, f, 0.05);
    let w2 = uniform(&mut n, f * d, 0.5 * he(f));
    let bf2 = uniform(&mut n, d, 0.05);
    for (name, shape, v) in [
        ("emb", vec![vocab, d], &emb),
        ("pos", vec![s, d], &pos),
        ("ln1_g", vec![d], &g1),
        ("ln1_b", vec![d], &b1),
        ("wq", vec![d, d], &wq),
        ("wk", vec![d, d], &wk),
        ("wv", vec![d, d], &wv),
        ("wo", vec![d, d], &wo),
        ("bo", vec![d], &bo),
        ("ln2_g", vec![d], &g2),
        ("ln2_b", vec![d], &b2),
        ("w1", vec![d, f], &w1),
        ("b1", vec![f], &bf1),
        ("w2", vec![f, d], &w2),
        ("b2", vec![d], &bf2),
    ] {
        weights.push((name, shape, v.clone()));
    }
    // Per-head layouts of the projections: [h][d][dh] (columns of head h),
    // and V's transposed, [h][dh][d].
    let heads_of = |w: &[f32]| -> Vec<f32> {
        let mut out = Vec::with_capacity(d * d);
        for hh in 0..h {
            for r in 0..d {
                out.extend_from_slice(&w[r * d + hh * dh..][..dh]);
            }
        }
        out
    };
    let mut wvt = Vec::with_capacity(d * d);
    for hh in 0..h {
        for j in 0..dh {
            for r in 0..d {
                wvt.push(wv[r * d + hh * dh + j]);
            }
        }
    }
    let table = n.tensor("emb", &[vocab, d], emb);
    let x = n.op(
        "embed",
        Op::Gather {
            table,
            indices: idv,
        },
    );
    let pos = n.tensor("pos", &[s, d], pos);
    let x0 = n.add(x, pos);
    let layer_norm = |n: &mut Net, x: ValueId, g: Vec<f32>, b: Vec<f32>| {
        let scale = n.tensor("ln_g", &[d], g);
        let bias = n.tensor("ln_b", &[d], b);
        n.op(
            "ln",
            Op::LayerNorm {
                x,
                scale,
                bias: Some(bias),
                epsilon,
            },
        )
    };
    let bmm = |n: &mut Net, a: ValueId, b: ValueId, trans_b: bool| {
        n.op("bmm", Op::BatchMatMul { a, b, trans_b })
    };
    let binary =
        |n: &mut Net, op: BinaryOp, a: ValueId, b: ValueId| n.op("ew", Op::Binary { op, a, b });
    let scalar = |n: &mut Net, v: f32| n.tensor("k", &[1], vec![v]);
    let gemm = |n: &mut Net, a: ValueId, b: ValueId, bias: ValueId, trans_a: bool| {
        n.op(
            "gemm",
            Op::Gemm {
                a,
                b,
                bias: Some(bias),
                trans_a,
                trans_b: false,
            },
        )
    };
    let x1 = layer_norm(&mut n, x0, g1, b1);
    let wq3 = n.tensor("wq", &[h, d, dh], heads_of(&wq));
    let wk3 = n.tensor("wk", &[h, d, dh], heads_of(&wk));
    let wvt3 = n.tensor("wvt", &[h, dh, d], wvt);
    let q = bmm(&mut n, x1, wq3, false);
    let k = bmm(&mut n, x1, wk3, false);
    let vt = bmm(&mut n, wvt3, x1, true);
    let scores = bmm(&mut n, q, k, true);
    let inv = scalar(&mut n, 1.0 / (dh as f32).sqrt());
    let scores = binary(&mut n, BinaryOp::Mul, scores, inv);
    let p = n.op("softmax", Op::Softmax { x: scores, axis: 2 });
    let ot = bmm(&mut n, vt, p, true);
    let ot = n.op(
        "concat_t",
        Op::Reshape {
            x: ot,
            shape: vec![d, s],
        },
    );
    let wo = n.tensor("wo", &[d, d], wo);
    let bo = n.tensor("bo", &[d], bo);
    let attn = gemm(&mut n, ot, wo, bo, true);
    let x2 = n.add(x0, attn);
    let x3 = layer_norm(&mut n, x2, g2, b2);
    let w1 = n.tensor("w1", &[d, f], w1);
    let bf1 = n.tensor("b1", &[f], bf1);
    let hid = gemm(&mut n, x3, w1, bf1, false);
    // ONNX Gelu (erf form): one UNARY gelu on the device.
    let gel = n.op(
        "gelu",
        Op::Unary {
            op: UnaryOp::Gelu,
            x: hid,
        },
    );
    let w2 = n.tensor("w2", &[f, d], w2);
    let bf2 = n.tensor("b2", &[d], bf2);
    let mlp = gemm(&mut n, gel, w2, bf2, false);
    let y = n.add(x2, mlp);
    n.g.output(y).expect("output");
    // Q, K, V, scores, P x V, output projection, MLP.
    n.macs = (4 * s * d * d + 2 * s * s * d + 2 * s * d * f) as u64;
    Encoder {
        net: n,
        cfg,
        ids,
        weights,
    }
}
