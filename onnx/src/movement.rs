//! The data-movement ops: Concat, Slice, Split, Pad, Transpose,
//! DepthToSpace, SpaceToDepth, Resize and Upsample onto the IR's ops of
//! the same names, in f32 and int8 (they move the values as they are, so
//! an int8 tensor keeps its quantization); and explicit padding for convs
//! and pools whose padding the IR's symmetric window cannot hold.

use super::{axis, to_usize, Ctx, Data, ImportError, Importer, Val};
use npu::ir::{slice_axis, CoordMode, NearestRound, Op, PadMode, ResizeMode};
use npu::{DType, Quant, ValueId};

/// Padding of the two spatial axes: elements before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pads {
    pub begin: [usize; 2],
    pub end: [usize; 2],
}

impl Importer<'_> {
    /// Input `i` as an IR value of any dtype (movement ops take int8 too).
    fn data_input(&mut self, ctx: &Ctx, i: usize) -> Result<ValueId, ImportError> {
        let v = self.input(ctx, i)?;
        let name = ctx.n.input[i].clone();
        self.ir(&v, &name, ctx)
    }

    /// An integer list from input `i` (a constant) or, for older opsets,
    /// attribute `attr`.
    fn ints_from(
        &self,
        ctx: &Ctx,
        i: Option<usize>,
        attr: &str,
    ) -> Result<Option<Vec<i64>>, ImportError> {
        match i {
            Some(i) => match self.opt_input(ctx, i)? {
                Some(Val::Host(t)) => t
                    .data
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ctx.err(format!("the {attr} must be integers"))),
                Some(Val::Ir(_)) => Err(ctx.err(format!(
                    "the {attr} must be a constant; it is computed at run time"
                ))),
                None => Ok(None),
            },
            None => Ok(ctx.ints(attr)),
        }
    }

    pub(crate) fn transpose(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(&x);
        let perm = match ctx.ints("perm") {
            Some(p) => to_usize(&p, "perm", ctx)?,
            None => (0..s.len()).rev().collect(),
        };
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        if sorted != (0..s.len()).collect::<Vec<_>>() {
            return Err(ctx.err(format!(
                "perm {perm:?} is not a permutation of the {} axes",
                s.len()
            )));
        }
        // Moving only size-1 axes leaves the bytes in place: a reshape.
        let moved: Vec<usize> = perm.iter().copied().filter(|&a| s[a] != 1).collect();
        if moved.windows(2).all(|w| w[0] < w[1]) {
            let shape = perm.iter().map(|&a| s[a]).collect();
            return self.reshape_node(ctx, x, shape);
        }
        let x = self.data_input(ctx, 0)?;
        self.emit(ctx, Op::Transpose { x, perm }, None)
    }

    pub(crate) fn concat(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let xs = (0..ctx.n.input.len())
            .filter(|&i| !ctx.n.input[i].is_empty())
            .map(|i| self.data_input(ctx, i))
            .collect::<Result<Vec<_>, _>>()?;
        let first = xs.first().ok_or_else(|| ctx.err("no inputs"))?;
        let a = axis(ctx.int("axis", 0), self.g.ty(*first).shape.len(), ctx)?;
        self.emit(ctx, Op::Concat { xs, axis: a }, None)
    }

    /// The IR slice of `x` along `axes` (ONNX starts/ends/steps).
    fn slice_of(
        &mut self,
        ctx: &Ctx,
        x: ValueId,
        starts: &[i64],
        ends: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> Result<Op, ImportError> {
        let shape = self.g.ty(x).shape.clone();
        let r = shape.len();
        if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(ctx.err(format!(
                "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
            )));
        }
        let (mut begin, mut step, mut out) = (vec![0; r], vec![1i64; r], shape.clone());
        let mut seen = vec![false; r];
        for k in 0..axes.len() {
            let a = axis(axes[k], r, ctx)?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(ctx.err(format!("axis {} is sliced twice", axes[k])));
            }
            let (b, s, n) = slice_axis(shape[a], starts[k], ends[k], steps[k])
                .map_err(|e| ctx.err(format!("axis {a}: {e}")))?;
            if n == 0 {
                return Err(ctx.err(format!(
                    "axis {a}: the slice is empty, which the IR has no tensors for"
                )));
            }
            (begin[a], step[a], out[a]) = (b, s, n);
        }
        Ok(Op::Slice {
            x,
            begin,
            step,
            shape: out,
        })
    }

    pub(crate) fn slice(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let x = self.data_input(ctx, 0)?;
        let r = self.g.ty(x).shape.len() as i64;
        let new = self.opset >= 10;
        let starts = self
            .ints_from(ctx, new.then_some(1), "starts")?
            .ok_or_else(|| ctx.err("starts are required"))?;
        let ends = self
            .ints_from(ctx, new.then_some(2), "ends")?
            .ok_or_else(|| ctx.err("ends are required"))?;
        let axes = self
            .ints_from(ctx, new.then_some(3), "axes")?
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = match new {
            true => self.ints_from(ctx, Some(4), "steps")?,
            false => None,
        }
        .unwrap_or_else(|| vec![1; starts.len()]);
        if axes.iter().any(|&a| a >= r || a < -r) {
            return Err(ctx.err(format!("axes {axes:?} are out of range for rank {r}")));
        }
        let op = self.slice_of(ctx, x, &starts, &ends, &axes, &steps)?;
        self.emit(ctx, op, None)
    }

    /// Split: one IR slice per output.
    pub(crate) fn split(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let x = self.data_input(ctx, 0)?;
        let shape = self.g.ty(x).shape.clone();
        let a = axis(ctx.int("axis", 0), shape.len(), ctx)?;
        let outs = ctx.n.output.len();
        let sizes = match self.opset >= 13 {
            true => self.ints_from(ctx, Some(1), "split")?,
            false => ctx.ints("split"),
        };
        let dim = shape[a];
        let sizes: Vec<usize> = match sizes {
            Some(s) => to_usize(&s, "split", ctx)?,
            None => {
                // Equal parts (opset 18's num_outputs: the last one smaller).
                let part = dim.div_ceil(outs.max(1));
                (0..outs)
                    .map(|i| part.min(dim.saturating_sub(i * part)))
                    .collect()
            }
        };
        let total = sizes.iter().try_fold(0usize, |t, &s| t.checked_add(s));
        if sizes.len() != outs || total != Some(dim) || sizes.contains(&0) {
            return Err(ctx.err(format!(
                "split {sizes:?} into {outs} outputs does not add up to axis {a} ({dim}) in non-empty parts"
            )));
        }
        let mut at = 0;
        for (out, n) in ctx.n.output.iter().zip(sizes) {
            let (s, e) = (at as i64, (at + n) as i64);
            at += n;
            if out.is_empty() {
                continue;
            }
            let op = self.slice_of(ctx, x, &[s], &[e], &[a as i64], &[1])?;
            let v = self.add(out, op, None, ctx)?;
            self.vals.insert(out.clone(), Val::Ir(v));
        }
        Ok(())
    }

    pub(crate) fn pad(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let mode = match ctx.string("mode").as_deref() {
            None | Some("constant") => PadMode::Constant,
            Some("edge") => PadMode::Edge,
            Some("reflect") => PadMode::Reflect,
            Some(m) => {
                return Err(ctx.err(format!(
                "mode `{m}`: constant, edge and reflect padding run on the NPU, wrap does not yet"
            )))
            }
        };
        let x = self.data_input(ctx, 0)?;
        let tx = self.g.ty(x).clone();
        let r = tx.shape.len();
        let new = self.opset >= 11;
        let pads = self
            .ints_from(ctx, new.then_some(1), "pads")?
            .ok_or_else(|| ctx.err("pads are required"))?;
        // opset 18: the axes the pads are for.
        let axes: Vec<usize> = match self.opset >= 18 {
            true => self.ints_from(ctx, Some(3), "axes")?,
            false => None,
        }
        .map(|a| a.iter().map(|&a| axis(a, r, ctx)).collect())
        .transpose()?
        .unwrap_or_else(|| (0..r).collect());
        if pads.len() != 2 * axes.len() {
            return Err(ctx.err(format!(
                "pads {pads:?} need two entries per padded axis ({})",
                axes.len()
            )));
        }
        if pads.iter().any(|&p| p < 0) {
            return Err(ctx.err(format!(
                "negative pads {pads:?} (cropping) are not supported; use Slice"
            )));
        }
        let (mut begin, mut end) = (vec![0; r], vec![0; r]);
        for (k, &a) in axes.iter().enumerate() {
            begin[a] = pads[k] as usize;
            end[a] = pads[k + axes.len()] as usize;
        }
        // The value, in real units: an int8 tensor's is a quantized value.
        let raw = if new {
            match self.opt_input(ctx, 2)? {
                Some(Val::Host(t)) if t.elems() == 1 => Some(t.data),
                Some(Val::Host(_)) => return Err(ctx.err("constant_value must be a scalar")),
                Some(Val::Ir(_)) => {
                    return Err(ctx.err("constant_value must be a constant"));
                }
                None => None,
            }
        } else {
            Some(Data::F32(vec![ctx.float("value", 0.0)]))
        };
        let value = match (raw, &tx.quant) {
            (None, _) => 0.0,
            (Some(Data::I8(q)), Some(Quant::PerTensor { scale, zero_point })) => {
                (q[0] as i32 - *zero_point as i32) as f32 * scale
            }
            (Some(d), None) if tx.dtype == DType::F32 => d.as_f32()[0],
            (Some(d), _) => {
                return Err(ctx.err(format!("a {} constant_value for a {} tensor", d.kind(), tx)))
            }
        };
        self.emit(
            ctx,
            Op::Pad {
                x,
                begin,
                end,
                value,
                mode,
            },
            None,
        )
    }

    pub(crate) fn depth_space(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let x = self.data_input(ctx, 0)?;
        let block = usize::try_from(ctx.int("blocksize", 0))
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| ctx.err("blocksize must be at least 1"))?;
        let op = if ctx.n.op_type == "DepthToSpace" {
            let crd = match ctx.string("mode").as_deref() {
                None | Some("DCR") => false,
                Some("CRD") => true,
                Some(m) => return Err(ctx.err(format!("mode `{m}` is not DCR or CRD"))),
            };
            Op::DepthToSpace { x, block, crd }
        } else {
            Op::SpaceToDepth { x, block }
        };
        self.emit(ctx, op, None)
    }

    /// Resize (opset 10 on) and Upsample (7-9).
    pub(crate) fn resize(&mut self, ctx: &Ctx) -> Result<(), ImportError> {
        let upsample = ctx.n.op_type == "Upsample";
        let x = self.data_input(ctx, 0)?;
        let shape = self.g.ty(x).shape.clone();
        if shape.len() != 4 {
            return Err(ctx.err(format!(
                "only NCHW (4-D) resizing is supported, got {shape:?}"
            )));
        }
        let f32_input = |imp: &Self, i: usize| -> Result<Option<Vec<f32>>, ImportError> {
            match imp.opt_input(ctx, i)? {
                Some(Val::Host(t)) if t.elems() > 0 => Ok(Some(t.data.as_f32())),
                Some(Val::Host(_)) | None => Ok(None),
                Some(Val::Ir(_)) => Err(ctx.err(format!("input {i} must be a constant"))),
            }
        };
        // Where scales and sizes come from, by opset.
        let (scales, sizes) = if upsample && self.opset < 9 {
            (ctx.attr("scales").map(|a| a.floats.clone()), None)
        } else if upsample || self.opset < 11 {
            (f32_input(self, 1)?, None)
        } else {
            if ctx.attr("axes").is_some() {
                return Err(ctx.err("the axes attribute is not supported"));
            }
            (f32_input(self, 2)?, self.ints_from(ctx, Some(3), "sizes")?)
        };
        let (size, scale) = match (scales, sizes) {
            (_, Some(sz)) if sz.len() == 4 => {
                let sz = to_usize(&sz, "sizes", ctx)?;
                if sz[0] != shape[0] || sz[1] != shape[1] {
                    return Err(ctx.err(format!(
                        "sizes {sz:?}: only H and W can be resized (from {shape:?})"
                    )));
                }
                let policy = ctx.string("keep_aspect_ratio_policy");
                if policy.as_deref().is_some_and(|p| p != "stretch") {
                    return Err(ctx.err("keep_aspect_ratio_policy other than stretch"));
                }
                (
                    [sz[2], sz[3]],
                    [
                        sz[2] as f32 / shape[2] as f32,
                        sz[3] as f32 / shape[3] as f32,
                    ],
                )
            }
            (Some(sc), _) if sc.len() == 4 => {
                if sc[0] != 1.0 || sc[1] != 1.0 {
                    return Err(ctx.err(format!(
                        "scales {sc:?}: only H and W can be resized (N and C scales must be 1)"
                    )));
                }
                if !(sc[2] > 0.0 && sc[3] > 0.0 && sc[2].is_finite() && sc[3].is_finite()) {
                    return Err(ctx.err(format!("scales {sc:?} must be positive")));
                }
                let out = |d: usize, s: f32| (d as f32 * s).floor() as usize;
                ([out(shape[2], sc[2]), out(shape[3], sc[3])], [sc[2], sc[3]])
            }
            _ => return Err(ctx.err("need 4 scales or 4 sizes (one per NCHW axis)")),
        };
        if size.contains(&0) {
            return Err(ctx.err(format!("the result would be empty ({size:?})")));
        }
        let mode = ctx.string("mode").unwrap_or_else(|| "nearest".into());
        let legacy = upsample || self.opset < 11;
        let coord = if legacy {
            CoordMode::Asymmetric
        } else {
            match ctx
                .string("coordinate_transformation_mode")
                .as_deref()
                .unwrap_or("half_pixel")
            {
                "half_pixel" => CoordMode::HalfPixel,
                "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
                "align_corners" => CoordMode::AlignCorners,
                "asymmetric" => CoordMode::Asymmetric,
                "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
                m => {
                    return Err(ctx.err(format!(
                        "coordinate_transformation_mode `{m}` is not supported"
                    )))
                }
            }
        };
        if ctx.int("antialias", 0) != 0 {
            return Err(ctx.err("antialias=1 is not supported"));
        }
        let mode = match mode.as_str() {
            "nearest" if legacy => {
                // Before opset 11 nearest floors when enlarging and rounds up
                // when shrinking (onnxruntime's "simple" mode).
                let up = scale.iter().all(|&s| s >= 1.0);
                let down = scale.iter().all(|&s| s < 1.0);
                match (up, down) {
                    (true, _) => ResizeMode::Nearest(NearestRound::Floor),
                    (_, true) => ResizeMode::Nearest(NearestRound::Ceil),
                    _ => {
                        return Err(ctx
                            .err("nearest before opset 11 with one axis enlarged and one shrunk"))
                    }
                }
            }
            "nearest" => ResizeMode::Nearest(
                match ctx
                    .string("nearest_mode")
                    .as_deref()
                    .unwrap_or("round_prefer_floor")
                {
                    "round_prefer_floor" => NearestRound::RoundPreferFloor,
                    "round_prefer_ceil" => NearestRound::RoundPreferCeil,
                    "floor" => NearestRound::Floor,
                    "ceil" => NearestRound::Ceil,
                    m => return Err(ctx.err(format!("nearest_mode `{m}` is not supported"))),
                },
            ),
            "linear" | "bilinear" => ResizeMode::Linear,
            m => {
                return Err(ctx.err(format!(
                    "mode `{m}`: only nearest and linear resizing run on the NPU"
                )))
            }
        };
        self.emit(
            ctx,
            Op::Resize {
                x,
                size,
                scale,
                mode,
                coord,
            },
            None,
        )
    }

    /// `x` padded explicitly when `pads` is not symmetric (or `extra_end`
    /// adds to its end); returns the value to convolve or pool and the
    /// symmetric padding left for the window.
    pub(crate) fn padded(
        &mut self,
        ctx: &Ctx,
        x: ValueId,
        pads: Pads,
        value: f32,
    ) -> Result<(ValueId, [usize; 2]), ImportError> {
        if pads.begin == pads.end {
            return Ok((x, pads.begin));
        }
        let op = Op::Pad {
            x,
            begin: vec![0, 0, pads.begin[0], pads.begin[1]],
            end: vec![0, 0, pads.end[0], pads.end[1]],
            value,
            mode: PadMode::Constant,
        };
        Ok((self.temp_op(ctx, op)?, [0, 0]))
    }
}
